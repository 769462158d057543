/**
 * Which redirect entries a socket migration needs on which node (pure: no
 * I/O). A process moves from node A (old address) to node B (new
 * address); each of its sockets keeps its port.
 *
 * - During the freeze, A drops the flows' packets (no RST, no ICMP): TCP's
 *   retransmission covers the gap.
 * - A connection whose peer P runs ppm: P's node rewrites its own packets
 *   (PEER entry). A still drops what arrives late for the flow.
 * - A connection whose peer is outside the cluster: A forwards the flow to
 *   B (FORWARD entry), and B answers with A's address (ANSWER entry).
 * - A connection whose peer is on B itself (it dialed A's address): B sends
 *   the peer's packets for A's end to the process, locally (a PEER entry next
 *   to its ANSWER). Routed out to A and forwarded back, they would arrive
 *   with one of B's own addresses as their source, and be dropped as
 *   martians. (A peer on A is refused before the freeze, core/dump/sockets.ts,
 *   unless it is the process itself: see {@link innerConnections}.)
 * - A listener or a UDP socket (any peer): FORWARD on A, ANSWER on B, and a
 *   PEER entry on every node of the cluster but A (B too, for its own
 *   clients), so that clients still dialing A reach B wherever they are (the
 *   thesis's SYN-CHANGE).
 *
 * @module
 */
import type { Redirect } from "../../ffi/redirect.ts";
import { PPM_RDR_MAX_IDLE } from "../../ffi/uapi.ts";
import type { Endpoint4, SocketEntry } from "../image/sockets.ts";

/** Seconds without a packet after which a drop entry goes (the freeze never lasts that long). */
export const DROP_IDLE_S = 300;
/** Seconds without a packet after which a listener's or UDP socket's entries go. */
export const ANY_PEER_IDLE_S = 86400;
/**
 * Seconds without a packet after which the drops a checkpoint with `--kill`
 * leaves go: the longest the module allows (PPM_RDR_MAX_IDLE, a day). A
 * peer that retransmits keeps its flow's drop (a dropped packet counts),
 * so it waits for the restore as long as its own TCP keeps trying.
 */
export const CHECKPOINT_DROP_IDLE_S = PPM_RDR_MAX_IDLE;

const ANY: Endpoint4 = { addr: "0.0.0.0", port: 0 };

/** What one socket of the process is, as far as redirects go. */
export interface FlowSocket {
  /** "tcp" (a connection; "tcp-pending" one not accepted yet), "tcp-listen" or "udp". */
  kind: SocketEntry["kind"];
  /** Its end on the old node (address 0.0.0.0 for a wildcard bind). */
  local: Endpoint4;
  /** The other end, when connected. */
  remote?: Endpoint4;
  /** The end peers know, when it is not `local` (core/redirect/known.ts). */
  known?: Endpoint4;
}

/** The entries of one migration, per node. */
export interface RedirectPlan {
  /** On the old node during the freeze (and for late packets after it). */
  drops: Redirect[];
  /** On the old node once the process runs on the new one. */
  forwards: Redirect[];
  /** On the new node, before the process runs. */
  answers: Redirect[];
  /** On other nodes of the cluster, by their address. */
  peers: Map<string, Redirect[]>;
}

function proto(s: FlowSocket): "tcp" | "udp" {
  return s.kind === "udp" ? "udp" : "tcp";
}

/** The endpoint peers know for socket `s` of the old node `oldAddr`. */
function oldEnd(s: FlowSocket, oldAddr: string): Endpoint4 {
  return { addr: s.local.addr === "0.0.0.0" ? oldAddr : s.local.addr, port: s.local.port };
}

/** True when socket `s` cannot be reached from other nodes (loopback): it needs no redirect. */
function nodeLocal(s: FlowSocket): boolean {
  return s.local.addr.startsWith("127.");
}

const isConnection = (s: FlowSocket) => s.kind === "tcp" || s.kind === "tcp-pending";
const endKey = (e: Endpoint4) => `${e.addr}:${e.port}`;

/**
 * The connections of `sockets` whose other end is among them too (a
 * process connected to itself, as MPI libraries connect to their own
 * listener): both ends move and are rebuilt together, nothing outside the
 * process sees their packets, and they need no redirect, drop or lock.
 */
export function innerConnections<T extends FlowSocket>(sockets: readonly T[]): Set<T> {
  const flows = new Set(
    sockets.filter((s) => isConnection(s) && s.remote).map((s) =>
      `${endKey(s.local)}>${endKey(s.remote!)}`
    ),
  );
  return new Set(
    sockets.filter((s) =>
      isConnection(s) && s.remote && flows.has(`${endKey(s.remote)}>${endKey(s.local)}`)
    ),
  );
}

/**
 * The plan for moving `sockets` from `oldAddr` to `newAddr`, given the
 * addresses of the cluster's other nodes (those that run ppm).
 */
export function planRedirects(
  sockets: FlowSocket[],
  oldAddr: string,
  newAddr: string,
  clusterAddrs: Iterable<string>,
): RedirectPlan {
  const cluster = new Set(clusterAddrs);
  cluster.delete(oldAddr);
  cluster.delete(newAddr);
  const plan: RedirectPlan = { drops: [], forwards: [], answers: [], peers: new Map() };
  const toPeer = (addr: string, r: Redirect) => {
    const list = plan.peers.get(addr) ?? [];
    list.push(r);
    plan.peers.set(addr, list);
  };
  // Entries for the node at `addr`: this one (the old node) adds its own once the process runs
  // on the new one, the new one before the process runs there, others when asked.
  const at = (addr: string, r: Redirect) => {
    if (addr === oldAddr) plan.forwards.push(r);
    else if (addr === newAddr) plan.answers.push(r);
    else toPeer(addr, r);
  };
  const inner = innerConnections(sockets);
  for (const s of sockets) {
    if (nodeLocal(s) || inner.has(s)) continue;
    const p = proto(s);
    const here = oldEnd(s, oldAddr);
    // The end peers know: its own, or for a process that moved before, the one it had first.
    const old = s.known ?? here;
    const home = old.addr;
    const now: Endpoint4 = { addr: newAddr, port: s.local.port };
    const connected = s.kind === "tcp" || s.kind === "tcp-pending" ||
      (s.kind === "udp" && s.remote !== undefined);
    const peer = connected ? s.remote! : ANY;
    // A connection's entries end with its RST or FINs; 0 is the module's longest idle time
    // (PPM_RDR_MAX_IDLE, a day), for connections whose peer vanished without either.
    const idle = connected && p === "tcp" ? 0 : ANY_PEER_IDLE_S;
    const entry = (action: "peer" | "forward" | "answer", peer: Endpoint4): Redirect => ({
      proto: p,
      action,
      old,
      new: now,
      peer,
      idleTimeout: idle,
    });
    plan.drops.push({ proto: p, action: "drop", old: here, peer, idleTimeout: DROP_IDLE_S });
    plan.answers.push(entry("answer", peer));
    // A peer on B: B sends the peer's packets to the process there, not out to A. A peer on
    // another node of the cluster: that node rewrites them. A peer on this node (the process
    // arrived here from its first node, whose address the peer knows): this node does.
    if (connected && (peer.addr === newAddr || peer.addr === oldAddr || cluster.has(peer.addr))) {
      at(peer.addr, entry("peer", peer));
      continue;
    }
    // Other peers send to `home`: that node forwards (when it runs ppm).
    if (home === oldAddr || home === newAddr || cluster.has(home)) at(home, entry("forward", peer));
    if (!connected) {
      for (const addr of cluster) if (addr !== home) at(addr, entry("peer", ANY));
      if (home !== oldAddr) at(oldAddr, entry("peer", ANY));
      // B's own clients that dial A reach it locally too.
      at(newAddr, entry("peer", ANY));
    }
  }
  return plan;
}

/**
 * The drops that freeze `sockets` on the node whose addresses peers know:
 * every packet of each flow, both ways (`action` "drop"), or only the new
 * connections to a listener ("drop-syn"), for `idleTimeout` seconds without
 * a packet. A socket bound to a wildcard address gets one per address of
 * `addrs` (a migration gives the one its peers know, a checkpoint every
 * address of the node); loopback-bound ones get none (nothing from outside
 * reaches them). Each flow once: the module refuses an identical entry.
 * With `keepAlive`, a TCP connection's drop answers its peer's keepalive
 * probes meanwhile (while a live process is frozen, not for an image that
 * may never be restored).
 */
export function planDrops(
  sockets: FlowSocket[],
  addrs: readonly string[],
  idleTimeout = DROP_IDLE_S,
  action: "drop" | "drop-syn" = "drop",
  keepAlive = false,
): Redirect[] {
  const out: Redirect[] = [];
  const seen = new Set<string>();
  const inner = innerConnections(sockets);
  for (const s of sockets) {
    if (nodeLocal(s) || inner.has(s)) continue;
    const connected = s.kind === "tcp" || s.kind === "tcp-pending" ||
      (s.kind === "udp" && s.remote !== undefined);
    const peer = connected ? s.remote! : ANY;
    const olds = s.local.addr === "0.0.0.0" ? addrs : [s.local.addr];
    for (const addr of olds) {
      const r: Redirect = {
        proto: proto(s),
        action,
        old: { addr, port: s.local.port },
        peer,
        idleTimeout,
        ...(keepAlive && action === "drop" && (s.kind === "tcp" || s.kind === "tcp-pending")
          ? { keepAlive: true }
          : {}),
      };
      const key = `${r.proto} ${addr}:${s.local.port} ${peer.addr}:${peer.port}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(r);
    }
  }
  return out;
}

/**
 * The new node's lock while the process is restored there: its rebuilt
 * connections are in TCP repair mode, but their retransmission timers run
 * (repair mode stops sends, not retransmissions), and a retransmission
 * leaving with the new address before the peers know it would draw a RST.
 * So the new node drops its connections' packets both ways until the
 * commit, as CRIU's network lock does. Once the peers' packets come here,
 * the drops answer their keepalive probes for the rebuilt sockets.
 */
export function planLocks(sockets: FlowSocket[], newAddr: string): Redirect[] {
  const inner = innerConnections(sockets);
  return sockets.filter((s) => isConnection(s) && s.remote && !nodeLocal(s) && !inner.has(s))
    .map((s) => ({
      proto: "tcp" as const,
      action: "drop" as const,
      old: { addr: newAddr, port: s.local.port },
      peer: s.remote!,
      idleTimeout: DROP_IDLE_S,
      keepAlive: true,
    }));
}
