/**
 * The state of a frozen process's kernel objects (found by survey.ts), as
 * FILES entries: each read from /proc/PID/fdinfo and from ppm's copy of the
 * descriptor (pidfd_getfd), so that the process, should it run on here,
 * finds everything as it left it: eventfd counter and mode, timerfd clock,
 * time left, interval and unread ticks, signalfd mask, epoll watch list,
 * a pipe's unread bytes (tee), a socketpair's queued messages (MSG_PEEK),
 * a memfd's name, contents and seals, a /dev/shm file's contents.
 *
 * @module
 */
import { close } from "../../../ffi/libc.ts";
import { F, fcntl, timerfdGettime } from "../../../ffi/fds.ts";
import type { FdEntry, TimeState } from "../../image/fds.ts";
import { copyFds } from "../sockets.ts";
import {
  parseEpollInfo,
  parseEventfdInfo,
  parseSignalfdInfo,
  parseTimerfdInfo,
} from "../fdinfo.ts";
import { fileContents } from "./content.ts";
import { probeSemaphore } from "./eventfd.ts";
import { pipeContents, pipeFill } from "./pipe.ts";
import { describeKind, type ObjectFd } from "./survey.ts";
import { peekQueue, type Sender, unixOptions } from "./unix.ts";

/** Most bytes of contents (pipes, queues, memfd, /dev/shm) one image carries. */
export const MAX_CONTENT = 12 << 20;

const O_DIRECT = 0o40000;

/** What {@link dumpObjects} read. */
export interface DumpedObjects {
  /** The FILES entries, by descriptor number. */
  entries: FdEntry[];
  /** Why some cannot move after all (found only by reading them). */
  reasons: string[];
}

const time = (ns: bigint): TimeState => ({
  sec: ns / 1_000_000_000n,
  nsec: Number(ns % 1_000_000_000n),
});

/** What reading one object needs. */
interface Reading {
  /** The process. */
  pid: number;
  /** Every object of it (pipes look at their other descriptions). */
  objs: ObjectFd[];
  /** The one being read. */
  o: ObjectFd;
  /** ppm's copy of it. */
  copy: number;
  /** Its entry, to fill in. */
  e: FdEntry;
  /** Who the restored process will be when it sends. */
  sender: Sender;
  /** Notes why it cannot move. */
  why(reason: string): void;
  /** Takes `bytes` from the contents budget; false (and a reason) when they do not fit. */
  spend(bytes: number): boolean;
}

/** Its current fdinfo text. */
const fdinfo = (r: Reading) => Deno.readTextFileSync(`/proc/${r.pid}/fdinfo/${r.o.fd}`);

function readEventfd(r: Reading): void {
  const st = parseEventfdInfo(fdinfo(r));
  if (!st) return r.why("its counter cannot be read");
  const semaphore = st.semaphore ?? probeSemaphore(r.copy, st.count);
  if (parseEventfdInfo(fdinfo(r))?.count !== st.count) {
    return r.why("its counter changed while it was read");
  }
  r.e.eventfd = { count: st.count, semaphore };
}

function readTimerfd(r: Reading): void {
  // Counts a periodic timer's missed expirations into its ticks first (see timerfdGettime).
  const set = timerfdGettime(r.copy);
  const st = parseTimerfdInfo(fdinfo(r));
  if (!st) return r.why("its state cannot be read");
  r.e.timerfd = {
    clock: st.clock,
    ticks: st.ticks,
    settimeFlags: st.settimeFlags,
    value: time(set.valueNs),
    interval: time(set.intervalNs),
  };
}

function readSignalfd(r: Reading): void {
  const mask = parseSignalfdInfo(fdinfo(r));
  if (mask === undefined) r.why("its mask cannot be read");
  else r.e.signalfd = { mask };
}

function readEpoll(r: Reading): void {
  const items = parseEpollInfo(fdinfo(r));
  if (!items) r.why("its watched descriptors cannot be read");
  else r.e.epoll = { items: items.map(({ fd, events, data }) => ({ fd, events, data })) };
}

/** A pipe's contents go with the first of its descriptions that can read them. */
function readPipe(r: Reading): void {
  const { o, objs } = r;
  if (o.kind === "fifo" && o.id) r.e.id = o.id;
  const same = objs.filter((x) => x.object === o.object);
  const reader = same.find((x) => x.dupOf === undefined && (x.flags & 3) !== 1);
  if (reader !== o) return;
  if (!r.spend(pipeFill(r.copy).queued)) return;
  r.e.pipe = pipeContents(r.copy, same.some((x) => x.flags & O_DIRECT));
}

function readUnix(r: Reading): void {
  const d = r.o.diag!;
  if (!r.spend(d.rqueue)) return;
  const q = peekQueue(r.copy, d.type, r.sender, (d.shutdown & 1) !== 0);
  if ("reason" in q) return r.why(q.reason);
  const bytes = q.queue.reduce((a, m) => a + m.length, 0);
  if (bytes > d.rqueue && !r.spend(bytes - d.rqueue)) return;
  r.e.unix = {
    type: d.type,
    end: d.ino < d.peer ? 0 : 1,
    shutdown: d.shutdown & 3,
    queue: q.queue,
    uncredited: q.uncredited,
    options: unixOptions(r.copy),
  };
}

/** A memfd, or a /dev/shm file (whose contents go with its first descriptor). */
function readFile(r: Reading): void {
  const { o, e } = r;
  const st = Deno.statSync(`/proc/${r.pid}/fd/${o.fd}`);
  e.pos = o.pos;
  if (o.id) e.id = o.id;
  const first = r.objs.find((x) =>
    x.kind === o.kind && x.id?.ino === o.id?.ino && x.id?.dev === o.id?.dev
  );
  if (o.kind === "shm" && first !== o) return;
  let seals = 0;
  try {
    seals = fcntl(r.copy, F.GET_SEALS);
  } catch {
    if (o.kind === "memfd") return r.why("it is not a memfd (F_GET_SEALS fails)");
  }
  if (!r.spend(st.size)) return;
  const data = fileContents(r.copy, st.size);
  if (o.kind === "shm") e.shm = { size: st.size, data };
  else {
    e.memfd = {
      name: o.target.slice("/memfd:".length, -" (deleted)".length),
      size: st.size,
      data,
      seals,
      mode: (st.mode ?? 0) & 0o7777,
    };
  }
}

const READERS: Record<ObjectFd["kind"], (r: Reading) => void> = {
  eventfd: readEventfd,
  timerfd: readTimerfd,
  signalfd: readSignalfd,
  epoll: readEpoll,
  pipe: readPipe,
  fifo: readPipe,
  unix: readUnix,
  memfd: readFile,
  shm: readFile,
};

/**
 * Reads the state of every object of `objs` (in descriptor order) of the
 * frozen process `pid`, whose messages would be sent again as `sender`.
 */
export function dumpObjects(pid: number, objs: ObjectFd[], sender: Sender): DumpedObjects {
  const entries: FdEntry[] = [];
  const reasons: string[] = [];
  const copies = copyFds(pid, objs.filter((o) => o.dupOf === undefined).map((o) => o.fd));
  let budget = MAX_CONTENT;
  try {
    for (const o of objs) {
      const e: FdEntry = { fd: o.fd, kind: o.kind, path: o.target, flags: o.flags, pos: 0n };
      if (o.dupOf !== undefined) {
        entries.push({ ...e, dupOf: o.dupOf });
        continue;
      }
      if (o.object !== undefined) e.object = o.object;
      READERS[o.kind]({
        pid,
        objs,
        o,
        copy: copies.get(o.fd)!,
        e,
        sender,
        why: (r) => reasons.push(`fd ${o.fd}: ${describeKind(o.kind)}: ${r}`),
        spend: (bytes) => {
          if (bytes <= budget) {
            budget -= bytes;
            return true;
          }
          reasons.push(
            `fd ${o.fd}: ${describeKind(o.kind)} (${o.target}) holds ${bytes} bytes; ` +
              `an image carries at most ${MAX_CONTENT >> 20} MiB of descriptor contents`,
          );
          return false;
        },
      });
      entries.push(e);
    }
  } finally {
    for (const c of copies.values()) close(c);
  }
  return { entries, reasons };
}
