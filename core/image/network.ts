/**
 * The NETWORK record: the IPv4 sockets a checkpoint carries with
 * `--tcp-established` (established TCP connections with their repair
 * state, listeners with the connections waiting in their accept queue, UDP
 * sockets), to be restored on the node where it was taken, at their own
 * addresses and ports. Each socket is an entry as in SOCKETS
 * (core/image/sockets.ts, checked field by field there).
 *
 * With `--kill`, ppm leaves drop entries in the node's redirect table (the
 * module's netfilter hooks) so that the peers' retransmissions get neither
 * a RST nor an ICMP error until the restore; the record names them by
 * their flow, and the restore finds them in the table by that flow (entry
 * ids do not survive a reboot) and removes them once the process runs.
 * Every drop must be one of the record's sockets' flows: an image cannot
 * make a restore remove any other entry.
 *
 * @module
 */
import { PPM_RDR_MAX, PPM_RDR_MAX_IDLE } from "../../ffi/uapi.ts";
import { arr, bad, int, obj, str } from "./fields.ts";
import {
  ANY_ENDPOINT,
  checkSockets,
  endpoint,
  type Endpoint4,
  type SocketEntry,
} from "./sockets.ts";

/** A drop entry that a checkpoint left in its node's redirect table, by flow. */
export interface DropFlow {
  /** "tcp" or "udp". */
  proto: "tcp" | "udp";
  /** "drop" (every packet of the flow, both ways) or "drop-syn" (new connections to a listener). */
  action: "drop" | "drop-syn";
  /** The socket's own end, as its peers know it (one of the node's addresses, never 0.0.0.0). */
  old: Endpoint4;
  /** The peer's end; 0.0.0.0:0 for a listener's or an unconnected UDP socket's (any peer). */
  peer: Endpoint4;
  /** The entry's idle timeout, seconds (1..PPM_RDR_MAX_IDLE). */
  idleTimeout: number;
}

/** The NETWORK record. */
export interface NetworkRecord {
  /**
   * The boot the checkpoint was taken in (/proc/sys/kernel/random/boot_id):
   * the redirect table of another boot holds none of its drops.
   */
  bootId: string;
  /** The sockets, at their own addresses and ports. */
  sockets: SocketEntry[];
  /** The drop entries left for their flows (with `--kill`; none when the process ran on). */
  drops: DropFlow[];
}

/** Most drops a record names: the module's table holds at most this many entries. */
export const MAX_NETWORK_DROPS = PPM_RDR_MAX;

const same = (a: Endpoint4, b: Endpoint4) => a.addr === b.addr && a.port === b.port;

/** The key of a drop's flow: the module refuses two entries with the same. */
export function dropKey(d: Omit<DropFlow, "idleTimeout">): string {
  return `${d.proto} ${d.action} ${d.old.addr}:${d.old.port} ${d.peer.addr}:${d.peer.port}`;
}

/** Whether drop `d` is one of the flows of socket `s` (see core/redirect/redirect_plan.ts `planDrops`). */
export function dropOfSocket(d: DropFlow, s: SocketEntry): boolean {
  const proto = s.kind === "udp" ? "udp" : "tcp";
  if (d.proto !== proto || d.old.port !== s.local.port) return false;
  if (s.local.addr !== "0.0.0.0" && d.old.addr !== s.local.addr) return false;
  const connected = s.kind === "tcp" || s.kind === "tcp-pending" ||
    (s.kind === "udp" && s.remote !== undefined);
  if (!same(d.peer, connected ? s.remote! : ANY_ENDPOINT)) return false;
  return d.action === "drop" || s.kind === "tcp-listen";
}

function checkDrop(v: unknown, i: number): DropFlow {
  const what = `NETWORK.drops[${i}]`;
  const o = obj(v, what);
  const proto = str(o, "proto", what, 8);
  if (proto !== "tcp" && proto !== "udp") throw bad(what, `proto ${proto} is not tcp or udp`);
  const action = str(o, "action", what, 16);
  if (action !== "drop" && action !== "drop-syn") {
    throw bad(what, `action ${action} is not drop or drop-syn`);
  }
  if (action === "drop-syn" && proto !== "tcp") throw bad(what, "a drop-syn entry is TCP only");
  const old = endpoint(o.old, `${what}.old`, 1);
  if (old.addr === "0.0.0.0") throw bad(`${what}.old`, "addr 0.0.0.0 is not a node's address");
  const peer = endpoint(o.peer, `${what}.peer`);
  if ((peer.addr === "0.0.0.0") !== (peer.port === 0)) {
    throw bad(`${what}.peer`, "a peer is either any (0.0.0.0:0) or an address and a port");
  }
  return {
    proto,
    action,
    old,
    peer,
    idleTimeout: int(o, "idleTimeout", what, 1, PPM_RDR_MAX_IDLE),
  };
}

/**
 * Checks a NETWORK record: its sockets as SOCKETS's, each descriptor once
 * (a connection waiting in a listener's queue shares the listener's), every
 * drop a flow of one of its sockets, no drop twice.
 */
export function checkNetwork(v: unknown): NetworkRecord {
  const o = obj(v, "NETWORK");
  const bootId = str(o, "bootId", "NETWORK", 64);
  if (!/^[0-9a-f-]*$/.test(bootId)) throw bad("NETWORK", "bootId is not a boot id");
  const sockets = checkSockets(o.sockets);
  const fds = new Set<number>();
  for (const s of sockets.filter((x) => x.kind !== "tcp-pending")) {
    if (fds.has(s.fd)) throw bad(`NETWORK socket on fd ${s.fd}`, "the descriptor appears twice");
    fds.add(s.fd);
  }
  const keys = new Set<string>();
  const drops = arr(o.drops, "NETWORK.drops", MAX_NETWORK_DROPS).map((x, i) => {
    const d = checkDrop(x, i);
    const key = dropKey(d);
    if (keys.has(key)) throw bad(`NETWORK.drops[${i}]`, `the flow ${key} appears twice`);
    keys.add(key);
    if (!sockets.some((s) => dropOfSocket(d, s))) {
      throw bad(`NETWORK.drops[${i}]`, `the flow ${key} is none of the record's sockets'`);
    }
    return d;
  });
  return { bootId, sockets, drops };
}
