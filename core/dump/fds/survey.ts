/**
 * Which of a process's kernel objects can move, before anything is read
 * from them: eventfd, timerfd, signalfd, epoll, pipes and FIFOs with both
 * ends in the process, unix socketpairs with both ends in it, memfd and
 * files in /dev/shm. Descriptors that share one open file (dup) are told
 * apart with kcmp; an object that another process holds too, a pipe whose
 * other end is elsewhere, an epoll watching a descriptor the process no
 * longer has under that number, are reasons. Nothing here changes the
 * process, so `ppm checkpoint --check` runs it on a running one.
 *
 * @module
 */
import type { FileId } from "../../image/schema.ts";
import { type UnixDiag, unixDiag } from "../../../ffi/sock_diag.ts";
import type { ObjectKind, SocketFd } from "../files.ts";
import { groupDescriptions } from "./descriptions.ts";
import { checkEpolls, edgeWatched } from "./epoll.ts";
import { eventfdReasons } from "./eventfd.ts";
import { heldElsewhere } from "./shared.ts";
import { MAX_RELAYED } from "../../image/fds.ts";
import { loopbackPeers } from "../sockets.ts";

/** Open flags that matter here. */
const O_ASYNC = 0o20000;
const SOCK_STREAM = 1;

/** A descriptor of the process that opens a kernel object ppm carries. */
export interface ObjectFd {
  /** Its number. */
  fd: number;
  /** What it opens; "unix" for a socketpair end. */
  kind: ObjectKind | "unix";
  /** Its link text in /proc/PID/fd. */
  target: string;
  /** Its open flags (O_CLOEXEC for close-on-exec). */
  flags: number;
  /** Its position. */
  pos: bigint;
  /** Its fdinfo text. */
  info: string;
  /** What the file is (stat through /proc), when it could be read. */
  id?: FileId;
  /** Another descriptor of the same open file description (a dup), the lowest. */
  dupOf?: number;
  /** Pipes, FIFOs and socketpairs: which one (the same on every descriptor of one). */
  object?: number;
  /** A socketpair end: what sock_diag says of it. */
  diag?: UnixDiag;
}

/** A descriptor whose other end another process holds, relayed by a migration (core/relay/fds.ts). */
export interface RelayedFd {
  /** Its number (3 or more). */
  fd: number;
  /** What it is. */
  end: "pipe-read" | "pipe-write" | "unix-stream" | "tcp-stream";
  /** Its link text in /proc/PID/fd. */
  target: string;
  /** Its open flags. */
  flags: number;
  /** A unix stream socket: what sock_diag says of it. */
  diag?: UnixDiag;
}

/** What {@link surveyObjects} found. */
export interface Survey {
  /** The descriptors whose objects move. */
  objects: ObjectFd[];
  /** Sockets that are not socketpairs of the process's own (core/dump/sockets.ts decides). */
  sockets: SocketFd[];
  /** Why some cannot move. */
  reasons: string[];
  /** With `relay`: the descriptors a migration relays. */
  relayed: RelayedFd[];
}

/** The inode a socket or pipe link text names ("socket:[123]"). */
export function linkIno(target: string): number | undefined {
  const m = /^(?:socket|pipe):\[(\d{1,20})\]$/.exec(target);
  return m ? Number(m[1]) : undefined;
}

/** What a kind is, for reasons. */
export function describeKind(kind: ObjectFd["kind"]): string {
  return {
    eventfd: "an eventfd",
    timerfd: "a timerfd",
    signalfd: "a signalfd",
    epoll: "an epoll instance",
    pipe: "a pipe",
    fifo: "a FIFO",
    memfd: "a memfd",
    shm: "a /dev/shm file",
    unix: "a unix socketpair",
  }[kind];
}

/**
 * The socketpairs among `sockets` whose two ends `pid` holds, as objects;
 * the other sockets are returned as they came.
 */
function socketpairs(
  sockets: (SocketFd & { target: string; info: string })[],
  relay: boolean,
): { pairs: ObjectFd[]; rest: SocketFd[]; relayed: RelayedFd[] } {
  const inos = sockets.map((s) => linkIno(s.target)).filter((x) => x !== undefined);
  let diags = new Map<number, UnixDiag>();
  try {
    diags = unixDiag([...new Set(inos)]);
  } catch { /* no sock_diag: every socket stays for sockets.ts to judge */ }
  const held = new Set(inos);
  const pairs: ObjectFd[] = [];
  const rest: SocketFd[] = [];
  const relayed: RelayedFd[] = [];
  for (const s of sockets) {
    const d = diags.get(linkIno(s.target) ?? -1);
    const peer = d ? diags.get(d.peer) : undefined;
    if (d && peer && peer.peer === d.ino && held.has(d.peer) && !d.name && !peer.name) {
      pairs.push({
        fd: s.fd,
        kind: "unix",
        target: s.target,
        flags: s.flags,
        pos: 0n,
        info: s.info,
        diag: d,
      });
    } else if (
      relay && d && s.fd > 2 && d.type === SOCK_STREAM && d.peer !== 0 && !held.has(d.peer)
    ) {
      // Connected, its peer another process's: a migration relays it.
      relayed.push({ fd: s.fd, end: "unix-stream", target: s.target, flags: s.flags, diag: d });
    } else rest.push({ fd: s.fd, flags: s.flags });
  }
  return { pairs, rest, relayed };
}

/** Reasons for a memfd opened a second time (not a dup: another open file of it). */
function secondOpens(objs: ObjectFd[]): string[] {
  const reasons: string[] = [];
  const own = objs.filter((o) => o.kind === "memfd" && o.dupOf === undefined);
  for (const o of own) {
    const first = own.find((x) => x.id?.ino === o.id?.ino && x.id?.dev === o.id?.dev);
    if (first && first !== o) {
      reasons.push(
        `fd ${o.fd}: ${o.target} opened a second time (as fd ${first.fd} too, not a dup); ` +
          "ppm carries one open file per memfd",
      );
    }
  }
  return reasons;
}

/** Numbers pipes, FIFOs and socketpairs; returns the reasons for pipes without both ends. */
function numberObjects(objs: ObjectFd[], relayed?: RelayedFd[]): string[] {
  const reasons: string[] = [];
  const key = (o: ObjectFd) =>
    o.kind === "unix"
      ? String(Math.min(o.diag!.ino, o.diag!.peer))
      : `${o.id?.dev ?? ""}:${o.id?.ino ?? linkIno(o.target) ?? o.target}`;
  const groups = new Map<string, ObjectFd[]>();
  for (const o of objs) {
    if (o.kind !== "pipe" && o.kind !== "fifo" && o.kind !== "unix") continue;
    groups.set(key(o), [...groups.get(key(o)) ?? [], o]);
  }
  let n = 0;
  for (const g of groups.values()) {
    const own = g.filter((o) => o.dupOf === undefined);
    const reads = own.some((o) => (o.flags & 3) !== 1);
    const writes = own.some((o) => (o.flags & 3) !== 0);
    if (g[0].kind !== "unix" && (!reads || !writes)) {
      const o = g[0];
      if (relayed && g.length === 1 && o.fd > 2 && (o.flags & 3) !== 2) {
        // One end, once, its other end another process's: a migration relays it.
        const end = (o.flags & 3) === 0 ? "pipe-read" : "pipe-write";
        relayed.push({ fd: o.fd, end, target: o.target, flags: o.flags });
        continue;
      }
      for (const o of g) {
        const what = `${describeKind(o.kind)} (${o.target})`;
        reasons.push(
          `fd ${o.fd}: ${what} whose other end the process does not hold ` +
            (relayed
              ? "(a migration relays one end held once, at 3 or above; a copy of it is not relayed)"
              : "(only pipes with both ends in the process move, and stdin, stdout and stderr)"),
        );
      }
      continue;
    }
    for (const o of g) o.object = n;
    n++;
  }
  return reasons;
}

/** Why the relayed descriptors cannot all be: too many, signal-driven, or held by another process too. */
function relayReasons(pid: number, relayed: RelayedFd[]): string[] {
  const reasons: string[] = [];
  if (relayed.length > MAX_RELAYED) {
    reasons.push(
      `${relayed.length} pipes or unix sockets whose other ends other processes hold; ` +
        `a migration relays at most ${MAX_RELAYED}`,
    );
  }
  for (const r of relayed) {
    if ((r.end === "unix-stream" || r.end === "tcp-stream") && r.flags & O_ASYNC) {
      reasons.push(
        `fd ${r.fd}: signal-driven I/O (O_ASYNC) on a relayed descriptor is not carried`,
      );
    }
  }
  const probe: ObjectFd[] = relayed.map((r) => ({
    fd: r.fd,
    // A socket is its inode: another process holding it holds the same end.
    kind: r.end === "unix-stream" || r.end === "tcp-stream" ? "unix" : "pipe",
    target: r.target,
    flags: r.flags,
    pos: 0n,
    info: "",
  }));
  // The same end (kcmp), not merely the same pipe: the peer holds the pipe's other end.
  const byFile = new Set(relayed.filter((r) => r.end.startsWith("pipe")).map((r) => r.fd));
  for (const [fd, other] of heldElsewhere(pid, probe, byFile)) {
    reasons.push(
      `fd ${fd}: ${fdTarget(relayed, fd)} whose end process ${other} holds too ` +
        "(a relay carries an end one process holds; close it in the other process after the fork)",
    );
  }
  return reasons;
}

const fdTarget = (relayed: RelayedFd[], fd: number) => relayed.find((r) => r.fd === fd)!.target;

/**
 * Surveys the descriptors `candidates` of `pid` (kernel objects, as
 * classified by files.ts) and its `sockets`: which move, and why the
 * others cannot. Returns the objects that may move; a reason keeps the
 * whole process from moving, so the objects then do not matter.
 */
export function surveyObjects(
  pid: number,
  candidates: ObjectFd[],
  sockets: (SocketFd & { target: string; info: string })[],
  relay = false,
): Survey {
  const reasons: string[] = [];
  const { pairs, rest, relayed } = socketpairs(sockets, relay);
  if (relay) {
    // TCP connections over loopback to another process here: relayed like unix sockets.
    const tcp = loopbackPeers(pid, rest.filter((s) => s.fd > 2).map((s) => s.fd));
    for (const s of rest.filter((x) => tcp.has(x.fd))) {
      const target = sockets.find((x) => x.fd === s.fd)!.target;
      relayed.push({ fd: s.fd, end: "tcp-stream", target, flags: s.flags });
    }
    rest.splice(0, rest.length, ...rest.filter((x) => !tcp.has(x.fd)));
  }
  const objects = [...candidates, ...pairs].sort((a, b) => a.fd - b.fd);
  for (const o of objects) {
    if (o.flags & O_ASYNC) {
      reasons.push(
        `fd ${o.fd}: signal-driven I/O (O_ASYNC) on ${describeKind(o.kind)} is not carried`,
      );
    }
  }
  reasons.push(...groupDescriptions(pid, objects));
  reasons.push(...secondOpens(objects));
  reasons.push(...numberObjects(objects, relay ? relayed : undefined));
  reasons.push(...checkEpolls(pid, objects));
  reasons.push(...eventfdReasons(objects, edgeWatched(objects)));
  const relayedFds = new Set(relayed.map((r) => r.fd));
  const carried = objects.filter((o) => !relayedFds.has(o.fd));
  // The sockets left for core/dump/sockets.ts are looked at in the same scan: an IP socket
  // another process holds too (one inherited and never closed) would be taken from it.
  const restFds = new Set(rest.map((r) => r.fd));
  const others: ObjectFd[] = sockets.filter((x) => restFds.has(x.fd)).map((x) => ({
    fd: x.fd,
    kind: "unix",
    target: x.target,
    flags: x.flags,
    pos: 0n,
    info: "",
  }));
  for (const [fd, other] of heldElsewhere(pid, [...carried, ...others])) {
    if (restFds.has(fd)) {
      reasons.push(
        `fd ${fd}: a socket (${others.find((x) => x.fd === fd)!.target}) that process ${other} ` +
          "holds too; moving it would take it from that process (it was inherited: close it " +
          "in one of them, or open it close-on-exec)",
      );
      continue;
    }
    const o = objects.find((x) => x.fd === fd)!;
    reasons.push(
      `fd ${fd}: ${describeKind(o.kind)} (${o.target}) that process ${other} holds too; ` +
        "it would no longer be shared after a move",
    );
  }
  // Relayed descriptors are not carried as objects: their state stays at the source.
  reasons.push(...relayReasons(pid, relayed));
  return {
    objects: carried,
    sockets: rest,
    reasons,
    relayed: relayed.sort((a, b) => a.fd - b.fd),
  };
}
