/**
 * A process's sockets: which ones can move (IPv4 TCP connections and
 * listeners, IPv4 UDP) and why the others cannot, and the dump of their
 * state while the process is frozen, through copies of its descriptors
 * (pidfd_getfd) and TCP repair mode.
 *
 * @module
 */
import { close, ErrnoError, pidfdGetfd, pidfdOpen } from "../../ffi/libc.ts";
import {
  AF,
  getsockoptBytes,
  getsockoptInt,
  type Inet4,
  ioctlInt,
  IPPROTO,
  MSG,
  peerName,
  recvBytes,
  setsockoptInt,
  SIOC,
  SO,
  SOCK,
  sockName,
  SOL_SOCKET,
  TCP,
  TCP_QUEUE,
} from "../../ffi/socket.ts";
import type { SocketEntry, SocketOptions, TcpRepairState } from "../image/sockets.ts";
import { KnownEnds } from "../redirect/known.ts";

/** TCP states as TCP_INFO reports them. */
const TCP_STATES = [
  "",
  "ESTABLISHED",
  "SYN_SENT",
  "SYN_RECV",
  "FIN_WAIT1",
  "FIN_WAIT2",
  "TIME_WAIT",
  "CLOSE",
  "CLOSE_WAIT",
  "LAST_ACK",
  "LISTEN",
  "CLOSING",
];

/** What a socket descriptor of the process is. */
export interface SocketInfo {
  /** Its number in the process. */
  fd: number;
  /** "tcp", "tcp-listen" or "udp". */
  kind: SocketEntry["kind"];
  /** Its own end. */
  local: Inet4;
  /** The other end, when connected. */
  remote?: Inet4;
  /** Listener: connections waiting in its accept queue. */
  acceptQueue?: number;
  /** Listener: its backlog. */
  backlog?: number;
}

/** A copy of one of the process's socket descriptors, owned by ppm. */
export interface HeldSocket extends SocketInfo {
  /** ppm's copy of the descriptor. */
  copy: number;
}

const isInet4 = (a: Inet4 | { family: number } | null): a is Inet4 => !!a && "addr" in a;

/**
 * Takes a copy of each descriptor in `fds` of `pid` (the caller must be allowed to ptrace it).
 * With `skipClosed`, those the process closed since they were listed (EBADF) are left out.
 */
export function copyFds(
  pid: number,
  fds: number[],
  { skipClosed = false } = {},
): Map<number, number> {
  const out = new Map<number, number>();
  if (!fds.length) return out;
  const pidfd = pidfdOpen(pid);
  try {
    for (const fd of fds) {
      try {
        out.set(fd, pidfdGetfd(pidfd, fd));
      } catch (e) {
        // A running process closed it since it was listed: nothing of it to move.
        if (!(skipClosed && e instanceof ErrnoError && e.code === "EBADF")) throw e;
      }
    }
  } catch (e) {
    for (const c of out.values()) close(c);
    throw e;
  } finally {
    close(pidfd);
  }
  return out;
}

/** This node's IPv4 addresses (a connection to one of them has its other end here). */
export function ownAddresses(): Set<string> {
  try {
    return new Set(
      Deno.networkInterfaces().filter((i) => i.family === "IPv4").map((i) => i.address),
    );
  } catch {
    return new Set();
  }
}

/**
 * What socket descriptor `fd` (ppm's copy: `copy`) is, or why it cannot
 * move: a reason a user can act on. `own` is this node's addresses; a caller
 * that describes many sockets reads them once. `flows` is the process's
 * connections ({@link connectionFlows}): a connection to a peer on this node
 * moves when that peer is the process's own other end (both ends move and are
 * rebuilt together), as when a program connects to its own listener.
 * `known` tells the ends peers know of a process that arrived here.
 */
export function describeSocket(
  fd: number,
  copy: number,
  own: ReadonlySet<string> = ownAddresses(),
  flows: ReadonlySet<string> = new Set(),
  known?: KnownEnds,
): SocketInfo | { reason: string } {
  const domain = getsockoptInt(copy, SOL_SOCKET, SO.DOMAIN);
  const type = getsockoptInt(copy, SOL_SOCKET, SO.TYPE);
  const proto = getsockoptInt(copy, SOL_SOCKET, SO.PROTOCOL);
  if (domain === AF.UNIX) {
    return { reason: `fd ${fd}: a unix socket (its peer does not move with the process)` };
  }
  if (domain === AF.INET6) {
    return { reason: `fd ${fd}: an IPv6 socket (only IPv4 sockets move so far)` };
  }
  if (domain !== AF.INET) return { reason: `fd ${fd}: a socket of address family ${domain}` };
  const local = sockName(copy);
  if (!isInet4(local)) return { reason: `fd ${fd}: an IPv4 socket without an IPv4 address` };
  const remote = peerName(copy);
  const where = `${local.addr}:${local.port}`;
  if (type === SOCK.DGRAM && proto === IPPROTO.UDP) {
    if (local.port === 0) return { reason: `fd ${fd}: a UDP socket that is not bound` };
    return { fd, kind: "udp", local, remote: isInet4(remote) ? remote : undefined };
  }
  if (type !== SOCK.STREAM || proto !== IPPROTO.TCP) {
    return { reason: `fd ${fd}: a socket of type ${type}, protocol ${proto}` };
  }
  const info = getsockoptBytes(copy, IPPROTO.TCP, TCP.INFO, 104);
  const state = TCP_STATES[info[0]] ?? `state ${info[0]}`;
  const dv = new DataView(info.buffer, info.byteOffset, info.length);
  if (state === "LISTEN") {
    // For a listener, tcpi_unacked is its accept queue and tcpi_sacked its backlog.
    return {
      fd,
      kind: "tcp-listen",
      local,
      acceptQueue: dv.getUint32(24, true),
      backlog: dv.getUint32(28, true),
    };
  }
  if (state === "ESTABLISHED" && isInet4(remote)) {
    if (flows.has(flowKey(remote, local))) return { fd, kind: "tcp", local, remote };
    if (remote.addr.startsWith("127.") || local.addr.startsWith("127.")) {
      return {
        reason:
          `fd ${fd}: a TCP connection over loopback (${where} to ${remote.addr}:${remote.port}); ` +
          "its peer on this node does not move",
      };
    }
    // A peer on this node, reached through the node's own address: its packets never leave the
    // node, and the process's answers from another node would come back with one of the node's
    // own addresses as their source, dropped as martians. Unless the process arrived here: its
    // peers know it by the address of the node where it was first (core/redirect/known.ts).
    if (own.has(remote.addr)) {
      const k = known?.of("tcp", local, remote);
      if (k && !own.has(k.addr)) return { fd, kind: "tcp", local, remote };
      return {
        reason: `fd ${fd}: a TCP connection to a process on this node, through its own address ` +
          `${remote.addr} (${where} to ${remote.addr}:${remote.port}); its peer does not move`,
      };
    }
    return { fd, kind: "tcp", local, remote };
  }
  if (state === "CLOSE" && local.port === 0) {
    return { reason: `fd ${fd}: a TCP socket that is neither connected nor listening` };
  }
  return { reason: `fd ${fd}: a TCP connection in state ${state} (${where})` };
}

const flowKey = (from: Inet4, to: Inet4) => `${from.addr}:${from.port}>${to.addr}:${to.port}`;

/**
 * The flows ("local>remote") of the IPv4 TCP sockets among `copies` (ppm's
 * copies of one process's descriptors) that have a peer: a connection whose
 * reverse flow is in the set has its other end in the same process.
 */
export function connectionFlows(copies: Iterable<number>): Set<string> {
  const out = new Set<string>();
  for (const copy of copies) {
    try {
      if (getsockoptInt(copy, SOL_SOCKET, SO.DOMAIN) !== AF.INET) continue;
      if (getsockoptInt(copy, SOL_SOCKET, SO.TYPE) !== SOCK.STREAM) continue;
      const local = sockName(copy), remote = peerName(copy);
      if (isInet4(local) && isInet4(remote)) out.add(flowKey(local, remote));
    } catch { /* not connected, or not a socket: no flow */ }
  }
  return out;
}

/**
 * The descriptors among `fds` of `pid` that are IPv4 TCP connections over
 * loopback whose other end is not the process's own: their peer is another
 * process on this node, and a migration relays them (core/relay/fds.ts)
 * rather than moving them. Empty when they cannot be looked at.
 */
export function loopbackPeers(pid: number, fds: number[]): Set<number> {
  const out = new Set<number>();
  if (!fds.length) return out;
  let copies: Map<number, number>;
  try {
    copies = copyFds(pid, fds);
  } catch {
    return out; // describeSocket gives the reasons later
  }
  try {
    const flows = connectionFlows(copies.values());
    for (const [fd, copy] of copies) {
      try {
        if (getsockoptInt(copy, SOL_SOCKET, SO.DOMAIN) !== AF.INET) continue;
        if (getsockoptInt(copy, SOL_SOCKET, SO.TYPE) !== SOCK.STREAM) continue;
        const info = getsockoptBytes(copy, IPPROTO.TCP, TCP.INFO, 104);
        if (TCP_STATES[info[0]] !== "ESTABLISHED") continue;
        const local = sockName(copy), remote = peerName(copy);
        if (!isInet4(local) || !isInet4(remote) || !remote.addr.startsWith("127.")) continue;
        if (!flows.has(flowKey(remote, local))) out.add(fd);
      } catch { /* not a connected socket */ }
    }
  } finally {
    for (const c of copies.values()) close(c);
  }
  return out;
}

/**
 * What describing one process's sockets needs besides each socket, read
 * once: this node's addresses, the process's connections (`copies`: ppm's
 * copies of its socket descriptors) and the ends peers know.
 */
export function socketContext(copies: Iterable<number>): {
  own: Set<string>;
  flows: Set<string>;
  known: KnownEnds;
} {
  const own = ownAddresses();
  return { own, flows: connectionFlows(copies), known: KnownEnds.read(own) };
}

/** The sockets of `pid` among `fds` (descriptor numbers whose link is socket:[...]). */
export function inspectSockets(
  pid: number,
  fds: number[],
): { sockets: SocketInfo[]; reasons: string[] } {
  const sockets: SocketInfo[] = [];
  const reasons: string[] = [];
  if (!fds.length) return { sockets, reasons };
  let copies: Map<number, number>;
  try {
    // The process may run meanwhile (an offer's check): a socket it closed since is not there.
    copies = copyFds(pid, fds, { skipClosed: true });
  } catch (e) {
    const why = e instanceof ErrnoError ? e.code : (e as Error).message;
    return { sockets, reasons: fds.map((fd) => `fd ${fd}: a socket ppm may not inspect (${why})`) };
  }
  try {
    const { own, flows, known } = socketContext(copies.values());
    for (const [fd, copy] of copies) {
      const d = describeSocket(fd, copy, own, flows, known);
      if ("reason" in d) reasons.push(d.reason);
      else sockets.push(d);
    }
  } finally {
    for (const c of copies.values()) close(c);
  }
  return { sockets, reasons };
}

/** A socket that can move, told for people: "a TCP connection 10.0.0.1:7000 to 10.0.0.9:5000". */
export function describeMovable(s: SocketInfo): string {
  const end = (e: Inet4) => `${e.addr}:${e.port}`;
  if (s.kind === "tcp-listen") return `a TCP listener on ${end(s.local)}`;
  if (s.kind === "udp") {
    return `a UDP socket on ${end(s.local)}${s.remote ? ` connected to ${end(s.remote)}` : ""}`;
  }
  return `a TCP connection ${end(s.local)} to ${s.remote ? end(s.remote) : "?"}`;
}

/**
 * Why the sockets `fds` of `pid` keep it from being checkpointed: those
 * that cannot move at all, with their reason, and, unless `carried` (a
 * migration, or a checkpoint with `--tcp-established`), the IPv4 TCP and
 * UDP sockets too, saying what would carry them.
 */
export function socketReasons(
  pid: number,
  fds: { fd: number }[],
  carried: boolean,
): string[] {
  const { sockets, reasons } = inspectSockets(pid, fds.map((s) => s.fd));
  if (carried) return reasons;
  return [
    ...reasons,
    ...sockets.map((s) =>
      `fd ${s.fd}: ${describeMovable(s)}; an image carries it only with --tcp-established ` +
      "(restored on this node), and ppm migrate moves it to another"
    ),
  ].sort((a, b) => fdOf(a) - fdOf(b));
}

const fdOf = (reason: string) => Number(/^fd (\d+)/.exec(reason)?.[1] ?? 0);

function readOptions(copy: number, tcp: boolean): SocketOptions {
  const int = (level: number, opt: number) => getsockoptInt(copy, level, opt);
  return {
    reuseaddr: int(SOL_SOCKET, SO.REUSEADDR) !== 0,
    keepalive: int(SOL_SOCKET, SO.KEEPALIVE) !== 0,
    sndbuf: int(SOL_SOCKET, SO.SNDBUF),
    rcvbuf: int(SOL_SOCKET, SO.RCVBUF),
    nodelay: tcp ? int(IPPROTO.TCP, TCP.NODELAY) !== 0 : false,
    keepidle: tcp ? int(IPPROTO.TCP, TCP.KEEPIDLE) : 0,
    keepintvl: tcp ? int(IPPROTO.TCP, TCP.KEEPINTVL) : 0,
    keepcnt: tcp ? int(IPPROTO.TCP, TCP.KEEPCNT) : 0,
  };
}

/** Reads `len` bytes of the selected queue of a socket in repair mode (MSG_PEEK). */
function peekQueue(copy: number, len: number): Uint8Array {
  if (len === 0) return new Uint8Array(0);
  const got = recvBytes(copy, len, MSG.PEEK | MSG.DONTWAIT);
  if (got.length !== len) {
    throw new Error(`the queue holds ${got.length} bytes, not ${len}`);
  }
  return got.slice();
}

/**
 * Dumps an established connection, which must already be in repair mode
 * (so nothing is sent or answered for it while ppm reads it).
 */
export function dumpTcpRepair(copy: number): TcpRepairState {
  const info = getsockoptBytes(copy, IPPROTO.TCP, TCP.INFO, 104);
  const opts = info[5];
  const sndW = info[6] & 0x0f, rcvW = info[6] >> 4;
  setsockoptInt(copy, IPPROTO.TCP, TCP.REPAIR_QUEUE, TCP_QUEUE.RECV);
  const recvNext = getsockoptInt(copy, IPPROTO.TCP, TCP.QUEUE_SEQ) >>> 0;
  const inq = ioctlInt(copy, SIOC.INQ);
  const recvQueue = peekQueue(copy, inq);
  setsockoptInt(copy, IPPROTO.TCP, TCP.REPAIR_QUEUE, TCP_QUEUE.SEND);
  const writeSeq = getsockoptInt(copy, IPPROTO.TCP, TCP.QUEUE_SEQ) >>> 0;
  const outq = ioctlInt(copy, SIOC.OUTQ);
  const notSent = ioctlInt(copy, SIOC.OUTQNSD);
  const sendQueue = peekQueue(copy, outq);
  setsockoptInt(copy, IPPROTO.TCP, TCP.REPAIR_QUEUE, TCP_QUEUE.NONE);
  const w = getsockoptBytes(copy, IPPROTO.TCP, TCP.REPAIR_WINDOW, 20);
  const wv = new DataView(w.buffer, w.byteOffset, 20);
  return {
    sendSeq: (writeSeq - outq) >>> 0,
    sendQueue,
    notSent,
    recvSeq: (recvNext - inq) >>> 0,
    recvQueue,
    mss: getsockoptInt(copy, IPPROTO.TCP, TCP.MAXSEG),
    sndWscale: opts & 4 ? sndW : -1,
    rcvWscale: opts & 4 ? rcvW : -1,
    sack: (opts & 2) !== 0,
    timestamps: (opts & 1) !== 0,
    tsval: getsockoptInt(copy, IPPROTO.TCP, TCP.TIMESTAMP) >>> 0,
    window: {
      sndWl1: wv.getUint32(0, true),
      sndWnd: wv.getUint32(4, true),
      maxWindow: wv.getUint32(8, true),
      rcvWnd: wv.getUint32(12, true),
      rcvWup: wv.getUint32(16, true),
    },
  };
}

/** Puts an established connection into repair mode (or takes it out). */
export function setRepair(copy: number, on: boolean): void {
  setsockoptInt(copy, IPPROTO.TCP, TCP.REPAIR, on ? 1 : 0);
}

/** The image entry of a held socket (established ones must be in repair mode). */
export function dumpSocket(s: HeldSocket, flags: number): SocketEntry {
  const e: SocketEntry = {
    fd: s.fd,
    flags,
    kind: s.kind,
    local: s.local,
    options: readOptions(s.copy, s.kind !== "udp"),
  };
  if (s.remote) e.remote = s.remote;
  if (s.kind === "tcp-listen") e.backlog = s.backlog ?? 128;
  if (s.kind === "tcp" || s.kind === "tcp-pending") e.tcp = dumpTcpRepair(s.copy);
  return e;
}
