/**
 * Rebuilding a migrated process's sockets on this node, in ppm's own
 * process: established connections in TCP repair mode (their sequence
 * numbers, queues, options and window as they were, without a SYN and
 * without sending anything until repair mode ends), listeners and UDP
 * sockets bound to the same ports. The restore stub then takes them into
 * the process at their descriptor numbers (pidfd_getfd).
 *
 * A socket keeps its port; its address becomes this node's (the redirects
 * make peers' packets for the old address reach it, and its answers carry
 * the old address again), or stays its own when a checkpoint's sockets
 * come back on the node where they were taken (core/restore/network.ts).
 * A connection whose other end is the process itself is rebuilt with both
 * ends, over loopback when it moved ({@link endsHere}); nothing redirects it.
 *
 * @module
 */
import {
  AF,
  bind4,
  closeSocket,
  connect4,
  type Inet4,
  IPPROTO,
  listenSocket,
  sendAll,
  setsockoptBytes,
  setsockoptInt,
  SO,
  SOCK,
  socket,
  SOL_SOCKET,
  TCP,
  TCP_QUEUE,
  TCPOPT,
} from "../../ffi/socket.ts";
import { withDevice } from "../../ffi/device.ts";
import { ErrnoError } from "../../ffi/libc.ts";
import type { SocketEntry, SocketOptions, TcpRepairState } from "../image/sockets.ts";
import { EXIT, PpmError } from "../errors.ts";
import { innerConnections } from "../redirect/redirect_plan.ts";

/** A socket rebuilt here, held by ppm until the process has it. */
export interface RebuiltSocket {
  /** Its descriptor number in the process. */
  fd: number;
  /** ppm's descriptor. */
  copy: number;
  /** File status flags to give it. */
  flags: number;
  /** Its image entry. */
  entry: SocketEntry;
  /** Its own end here. */
  local: Inet4;
}

/**
 * The address a socket of the image binds to here: `nodeAddr` for one
 * bound to a specific address elsewhere; its own for a wildcard or
 * loopback one, and for every one when `nodeAddr` is null (the node where
 * it was checkpointed).
 */
export function localHere(e: SocketEntry, nodeAddr: string | null): Inet4 {
  if (nodeAddr === null) return { ...e.local };
  const wildcard = e.local.addr === "0.0.0.0";
  const loopback = e.local.addr.startsWith("127.");
  return { addr: wildcard || loopback ? e.local.addr : nodeAddr, port: e.local.port };
}

function applyOptions(fd: number, o: SocketOptions, tcp: boolean): void {
  // The kernel doubles what setsockopt asks for and getsockopt reports the doubled value.
  if (o.sndbuf) setsockoptInt(fd, SOL_SOCKET, SO.SNDBUF, Math.floor(o.sndbuf / 2));
  if (o.rcvbuf) setsockoptInt(fd, SOL_SOCKET, SO.RCVBUF, Math.floor(o.rcvbuf / 2));
  setsockoptInt(fd, SOL_SOCKET, SO.KEEPALIVE, o.keepalive ? 1 : 0);
  if (!tcp) return;
  setsockoptInt(fd, IPPROTO.TCP, TCP.NODELAY, o.nodelay ? 1 : 0);
  if (o.keepidle) setsockoptInt(fd, IPPROTO.TCP, TCP.KEEPIDLE, o.keepidle);
  if (o.keepintvl) setsockoptInt(fd, IPPROTO.TCP, TCP.KEEPINTVL, o.keepintvl);
  if (o.keepcnt) setsockoptInt(fd, IPPROTO.TCP, TCP.KEEPCNT, o.keepcnt);
}

function u32pairs(pairs: [number, number][]): Uint8Array {
  const b = new Uint8Array(pairs.length * 8);
  const v = new DataView(b.buffer);
  pairs.forEach(([code, val], i) => {
    v.setUint32(i * 8, code, true);
    v.setUint32(i * 8 + 4, val >>> 0, true);
  });
  return b;
}

/**
 * Rebuilds an established connection in repair mode on `fd` (a new TCP
 * socket already in repair mode and bound): the state TCP repair accepts,
 * in the order it accepts it.
 */
export function restoreTcpRepair(fd: number, t: TcpRepairState, remote: Inet4): void {
  const opt = (o: number, v: number) => setsockoptInt(fd, IPPROTO.TCP, o, v);
  opt(TCP.REPAIR_QUEUE, TCP_QUEUE.SEND);
  opt(TCP.QUEUE_SEQ, t.sendSeq | 0);
  opt(TCP.REPAIR_QUEUE, TCP_QUEUE.RECV);
  opt(TCP.QUEUE_SEQ, t.recvSeq | 0);
  connect4(fd, remote);
  const pairs: [number, number][] = [[TCPOPT.MSS, t.mss]];
  if (t.sndWscale >= 0) pairs.push([TCPOPT.WINDOW, t.sndWscale | (t.rcvWscale << 16)]);
  if (t.sack) pairs.push([TCPOPT.SACK_PERM, 0]);
  if (t.timestamps) pairs.push([TCPOPT.TIMESTAMP, 0]);
  setsockoptBytes(fd, IPPROTO.TCP, TCP.REPAIR_OPTIONS, u32pairs(pairs));
  if (t.timestamps) opt(TCP.TIMESTAMP, t.tsval | 0);
  opt(TCP.REPAIR_QUEUE, TCP_QUEUE.RECV);
  if (t.recvQueue.length) sendAll(fd, t.recvQueue);
  // Every byte of the send queue counts as sent: what the peer never got,
  // TCP retransmits once the connection runs (nothing goes out before the
  // redirects are in place).
  opt(TCP.REPAIR_QUEUE, TCP_QUEUE.SEND);
  if (t.sendQueue.length) sendAll(fd, t.sendQueue);
  opt(TCP.REPAIR_QUEUE, TCP_QUEUE.NONE);
  const w = t.window;
  const wb = new Uint8Array(20);
  const wv = new DataView(wb.buffer);
  [w.sndWl1, w.sndWnd, w.maxWindow, w.rcvWnd, w.rcvWup].forEach((x, i) =>
    wv.setUint32(i * 4, x >>> 0, true)
  );
  setsockoptBytes(fd, IPPROTO.TCP, TCP.REPAIR_WINDOW, wb);
}

/** Where a connection of the process to itself lives on another node (see {@link endsHere}). */
export const INNER_ADDR = "127.0.0.1";

/**
 * Each socket's ends here. A connection whose other end is the process
 * itself (innerConnections) moves with both ends; on another node both
 * take the loopback address, keeping their ports: at the node's address,
 * the redirects of a listener that moved with the process (same port, any
 * peer) would rewrite the pair's packets.
 */
function endsHere(
  entries: SocketEntry[],
  nodeAddr: string | null,
): Map<SocketEntry, { local: Inet4; remote?: Inet4 }> {
  const inner = innerConnections(entries);
  const here = (e: SocketEntry): Inet4 =>
    inner.has(e) && nodeAddr !== null
      ? { addr: INNER_ADDR, port: e.local.port }
      : localHere(e, nodeAddr);
  const byEnd = new Map([...inner].map((e) => [`${e.local.addr}:${e.local.port}`, e]));
  const out = new Map<SocketEntry, { local: Inet4; remote?: Inet4 }>();
  for (const e of entries) {
    const partner = e.remote && inner.has(e)
      ? byEnd.get(`${e.remote.addr}:${e.remote.port}`)
      : undefined;
    out.set(e, { local: here(e), remote: partner ? here(partner) : e.remote });
  }
  return out;
}

function rebuildOne(e: SocketEntry, ends: { local: Inet4; remote?: Inet4 }): RebuiltSocket {
  const { local, remote } = ends;
  const tcp = e.kind !== "udp";
  const conn = e.kind === "tcp" || e.kind === "tcp-pending";
  const fd = socket(AF.INET, tcp ? SOCK.STREAM : SOCK.DGRAM, tcp ? IPPROTO.TCP : IPPROTO.UDP);
  try {
    if (conn) setsockoptInt(fd, IPPROTO.TCP, TCP.REPAIR, 1);
    // Connections and their listener share a port: reuse while binding, then as it was.
    setsockoptInt(fd, SOL_SOCKET, SO.REUSEADDR, 1);
    applyOptions(fd, e.options, tcp);
    bind4(fd, local);
    if (conn) restoreTcpRepair(fd, e.tcp!, remote!);
    if (e.kind === "tcp-listen") listenSocket(fd, e.backlog ?? 128);
    if (e.kind === "udp" && remote) connect4(fd, remote);
    if (!e.options.reuseaddr && e.kind !== "tcp") setsockoptInt(fd, SOL_SOCKET, SO.REUSEADDR, 0);
    return { fd: e.fd, copy: fd, flags: e.flags, entry: e, local };
  } catch (err) {
    closeSocket(fd);
    const why = err instanceof ErrnoError ? err.message : (err as Error).message;
    throw new PpmError(
      `cannot rebuild socket ${e.fd} (${e.kind} ${local.addr}:${local.port})`,
      why,
      err instanceof ErrnoError && err.code === "EADDRINUSE"
        ? `port ${local.port} is in use on this node`
        : "",
      EXIT.FAILURE,
      { cause: err },
    );
  }
}

const ORDER: Record<SocketEntry["kind"], number> = {
  "tcp": 0,
  "tcp-pending": 1,
  "tcp-listen": 2,
  "udp": 3,
};

/**
 * Rebuilds every socket of the image; connections first, so their
 * listener can bind its port after them. Connections that waited in a
 * listener's accept queue go back into the rebuilt listener's queue (they
 * leave repair mode silently for that; nothing reaches them before the
 * redirects are in place). Returns the sockets the process takes; on
 * failure nothing is left open. `nodeAddr` null: at their own addresses
 * (see {@link localHere}).
 */
export function rebuildSockets(entries: SocketEntry[], nodeAddr: string | null): RebuiltSocket[] {
  const order = [...entries].sort((a, b) => ORDER[a.kind] - ORDER[b.kind]);
  const ends = endsHere(entries, nodeAddr);
  const out: RebuiltSocket[] = [];
  const pending: RebuiltSocket[] = [];
  try {
    for (const e of order) {
      (e.kind === "tcp-pending" ? pending : out).push(rebuildOne(e, ends.get(e)!));
    }
    for (const p of pending) {
      const listener = out.find((l) => l.entry.kind === "tcp-listen" && l.fd === p.fd);
      if (!listener) throw new Error(`no listener on fd ${p.fd} for a waiting connection`);
      setsockoptInt(p.copy, IPPROTO.TCP, TCP.REPAIR, -1); // off, without a window probe
      withDevice((d) => d.queueAccept(listener.copy, p.copy));
    }
  } catch (err) {
    dropSockets(out);
    throw err instanceof PpmError
      ? err
      : new PpmError("cannot rebuild the sockets", (err as Error).message, "", EXIT.FAILURE, {
        cause: err,
      });
  } finally {
    dropSockets(pending);
  }
  return out;
}

/** Ends repair mode on the rebuilt connections: they start talking (call once the redirects are in). */
export function endRepair(list: RebuiltSocket[]): void {
  for (const s of list) {
    if (s.entry.kind === "tcp") setsockoptInt(s.copy, IPPROTO.TCP, TCP.REPAIR, 0);
  }
}

/** Closes ppm's descriptors (connections still in repair mode close silently). */
export function dropSockets(list: RebuiltSocket[]): void {
  for (const s of list) closeSocket(s.copy);
}

/** Throws when a port the image needs is taken here (asked before anything is frozen). */
export function checkPortsFree(
  wanted: { kind: SocketEntry["kind"]; local: Inet4 }[],
  nodeAddr: string,
): void {
  for (const w of wanted) {
    if (w.kind === "tcp") continue; // a connection's 4-tuple is new here
    const tcp = w.kind === "tcp-listen";
    const fd = socket(AF.INET, tcp ? SOCK.STREAM : SOCK.DGRAM, tcp ? IPPROTO.TCP : IPPROTO.UDP);
    const local = w.local.addr === "0.0.0.0" ? w.local : { addr: nodeAddr, port: w.local.port };
    try {
      bind4(fd, local);
    } catch (e) {
      throw new PpmError(
        "refused",
        `${tcp ? "TCP" : "UDP"} port ${w.local.port} is in use on this node` +
          (e instanceof ErrnoError && e.code !== "EADDRINUSE" ? ` (${e.message})` : ""),
        "free the port there, or migrate elsewhere",
        EXIT.BUSY,
        { cause: e },
      );
    } finally {
      closeSocket(fd);
    }
  }
}
