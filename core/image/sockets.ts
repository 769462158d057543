/**
 * The SOCKETS record: the IPv4 sockets of a migrated process. An
 * established TCP connection carries its TCP repair state (sequence
 * numbers, queued bytes both ways, options, window); a listener its
 * backlog; a UDP socket its ends. Read back and checked field by field.
 *
 * @module
 */
import { arr, bad, bytes, int, obj, str } from "./fields.ts";

/** An IPv4 endpoint. */
export interface Endpoint4 {
  /** Dotted quad. */
  addr: string;
  /** Port. */
  port: number;
}

/** Socket options carried over. */
export interface SocketOptions {
  /** SO_REUSEADDR. */
  reuseaddr: boolean;
  /** SO_KEEPALIVE. */
  keepalive: boolean;
  /** SO_SNDBUF as getsockopt reports it. */
  sndbuf: number;
  /** SO_RCVBUF as getsockopt reports it. */
  rcvbuf: number;
  /** TCP_NODELAY (TCP only). */
  nodelay: boolean;
  /** TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT (TCP only; 0 for UDP). */
  keepidle: number;
  /** TCP_KEEPINTVL. */
  keepintvl: number;
  /** TCP_KEEPCNT. */
  keepcnt: number;
}

/** The state TCP repair mode reads and writes. */
export interface TcpRepairState {
  /** Sequence number of the first byte of the send queue (snd_una). */
  sendSeq: number;
  /** Sent-but-unacknowledged bytes, then not-yet-sent ones. */
  sendQueue: Uint8Array;
  /** How many of the send queue's bytes were never sent. */
  notSent: number;
  /** Sequence number of the first byte of the receive queue. */
  recvSeq: number;
  /** Received bytes the process has not read yet. */
  recvQueue: Uint8Array;
  /** MSS. */
  mss: number;
  /** Send and receive window scale; -1 when not negotiated. */
  sndWscale: number;
  /** Receive window scale; -1 when not negotiated. */
  rcvWscale: number;
  /** SACK negotiated. */
  sack: boolean;
  /** Timestamps negotiated. */
  timestamps: boolean;
  /** TCP_TIMESTAMP: the connection's timestamp clock now. */
  tsval: number;
  /** TCP_REPAIR_WINDOW. */
  window: { sndWl1: number; sndWnd: number; maxWindow: number; rcvWnd: number; rcvWup: number };
}

/** One socket of the process. */
export interface SocketEntry {
  /** Descriptor number. */
  fd: number;
  /** File status flags (O_NONBLOCK, O_CLOEXEC, ...). */
  flags: number;
  /**
   * "tcp" (established), "tcp-listen", "udp", or "tcp-pending": a
   * connection that waited in the accept queue of the listener at `fd`.
   */
  kind: "tcp" | "tcp-listen" | "udp" | "tcp-pending";
  /** Its own end. */
  local: Endpoint4;
  /** The other end (TCP; UDP when connected). */
  remote?: Endpoint4;
  /**
   * The end its peers know, when it is not `local`: a socket that moved
   * before keeps the address of the node where it was first (the redirects
   * of that move say so), and every later move redirects from there.
   */
  known?: Endpoint4;
  /** Listener: backlog. */
  backlog?: number;
  /** Options. */
  options: SocketOptions;
  /** Established TCP: the repair state. */
  tcp?: TcpRepairState;
}

/** Largest queue carried per direction (the kernel's buffers are smaller). */
export const MAX_QUEUE_BYTES = 64 * 1024 * 1024;

const U32 = 2 ** 32 - 1;

/** Smallest MSS the kernel sends with (TCP_MIN_SND_MSS). */
export const MIN_MSS = 48;

/** Largest window TCP can announce: 65535 scaled by the largest window scale, 14. */
export const MAX_WINDOW = 65535 * 2 ** 14;

/** The wildcard endpoint 0.0.0.0:0 (any peer, or a socket bound to every address). */
export const ANY_ENDPOINT: Endpoint4 = { addr: "0.0.0.0", port: 0 };

/**
 * An IPv4 endpoint `v`, checked: a dotted quad (each part 0..255, no
 * leading zeros) and a port in `minPort`..65535.
 */
export function endpoint(v: unknown, what: string, minPort = 0): Endpoint4 {
  const o = obj(v, what);
  const addr = str(o, "addr", what, 15);
  if (
    !/^(0|[1-9]\d{0,2})(\.(0|[1-9]\d{0,2})){3}$/.test(addr) ||
    addr.split(".").some((p) => Number(p) > 255)
  ) {
    throw bad(what, `addr ${addr} is not an IPv4 address`);
  }
  return { addr, port: int(o, "port", what, minPort, 65535) };
}

/** A peer's end: an address other than 0.0.0.0 and a port other than 0. */
function remoteEnd(v: unknown, what: string): Endpoint4 {
  const e = endpoint(v, what, 1);
  if (e.addr === "0.0.0.0") throw bad(what, "addr 0.0.0.0 is not a peer's address");
  return e;
}

function bool(o: Record<string, unknown>, k: string, what: string): boolean {
  if (typeof o[k] !== "boolean") throw bad(what, `${k} is not a boolean`);
  return o[k] as boolean;
}

function options(v: unknown, what: string): SocketOptions {
  const o = obj(v, what);
  return {
    reuseaddr: bool(o, "reuseaddr", what),
    keepalive: bool(o, "keepalive", what),
    sndbuf: int(o, "sndbuf", what, 0, 1 << 30),
    rcvbuf: int(o, "rcvbuf", what, 0, 1 << 30),
    nodelay: bool(o, "nodelay", what),
    keepidle: int(o, "keepidle", what, 0, 32767),
    keepintvl: int(o, "keepintvl", what, 0, 32767),
    keepcnt: int(o, "keepcnt", what, 0, 127),
  };
}

function repair(v: unknown, what: string): TcpRepairState {
  const o = obj(v, what);
  const w = obj(o.window, `${what} window`);
  const sendQueue = bytes(o, "sendQueue", what, 0, MAX_QUEUE_BYTES);
  const t: TcpRepairState = {
    sendSeq: int(o, "sendSeq", what, 0, U32),
    sendQueue,
    notSent: int(o, "notSent", what, 0, sendQueue.length),
    recvSeq: int(o, "recvSeq", what, 0, U32),
    recvQueue: bytes(o, "recvQueue", what, 0, MAX_QUEUE_BYTES),
    mss: int(o, "mss", what, MIN_MSS, 65535),
    sndWscale: int(o, "sndWscale", what, -1, 14),
    rcvWscale: int(o, "rcvWscale", what, -1, 14),
    sack: bool(o, "sack", what),
    timestamps: bool(o, "timestamps", what),
    tsval: int(o, "tsval", what, 0, U32),
    window: {
      sndWl1: int(w, "sndWl1", `${what} window`, 0, U32),
      sndWnd: int(w, "sndWnd", `${what} window`, 0, MAX_WINDOW),
      maxWindow: int(w, "maxWindow", `${what} window`, 0, MAX_WINDOW),
      rcvWnd: int(w, "rcvWnd", `${what} window`, 0, MAX_WINDOW),
      rcvWup: int(w, "rcvWup", `${what} window`, 0, U32),
    },
  };
  // Window scaling is negotiated both ways or not at all.
  if ((t.sndWscale < 0) !== (t.rcvWscale < 0)) {
    throw bad(what, `sndWscale ${t.sndWscale} and rcvWscale ${t.rcvWscale} disagree`);
  }
  return t;
}

/** Checks a SOCKETS record. */
export function checkSockets(v: unknown): SocketEntry[] {
  const list = arr(v, "SOCKETS", 4096).map((x, i) => {
    const o = obj(x, `socket ${i}`);
    const what = `socket ${i}`;
    const kind = str(o, "kind", what, 16);
    if (kind !== "tcp" && kind !== "tcp-listen" && kind !== "udp" && kind !== "tcp-pending") {
      throw bad(what, `unknown kind ${kind}`);
    }
    const e: SocketEntry = {
      fd: int(o, "fd", what, 0, 1 << 20),
      flags: int(o, "flags", what),
      kind,
      local: endpoint(o.local, `${what} local end`, 1),
      options: options(o.options, `${what} options`),
    };
    if (o.remote !== undefined) e.remote = remoteEnd(o.remote, `${what} remote end`);
    if (o.known !== undefined) {
      e.known = endpoint(o.known, `${what} known end`, 1);
      if (e.known.addr === "0.0.0.0") throw bad(what, "a known end without an address");
      if (e.known.port !== e.local.port) {
        throw bad(what, `a known end on port ${e.known.port}, its own on ${e.local.port}`);
      }
    }
    if (kind === "tcp" || kind === "tcp-pending") {
      if (!e.remote) throw bad(what, "a TCP connection without a remote end");
      if (e.local.addr === "0.0.0.0") throw bad(what, "a TCP connection without a local address");
      e.tcp = repair(o.tcp, `${what} TCP state`);
    }
    if (kind === "tcp-listen") {
      if (e.remote) throw bad(what, "a listener with a remote end");
      e.backlog = int(o, "backlog", what, 0, 65535);
    }
    return e;
  });
  for (const p of list.filter((e) => e.kind === "tcp-pending")) {
    const l = list.find((l) => l.kind === "tcp-listen" && l.fd === p.fd);
    if (!l) throw bad(`socket on fd ${p.fd}`, "a pending connection without its listener");
    if (l.local.port !== p.local.port) {
      throw bad(
        `socket on fd ${p.fd}`,
        `a pending connection on port ${p.local.port}, its listener on ${l.local.port}`,
      );
    }
  }
  return list;
}
