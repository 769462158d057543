/**
 * Sending a process to a peer: the one path that `ppm migrate`, the
 * balancer and `ppm drain` share. It connects to the peer's agent, runs
 * core/migrate/source.ts, records the move in the process table, tells the
 * destination what it must know about the process (the handover: managed or
 * not, its name and start time, why it moved), and keeps the connection for
 * the output relay and for the news of how the process ended.
 *
 * @module
 */
import type { Discovery } from "../discovery/service.ts";
import type { PeerSnapshot } from "../discovery/table.ts";
import { EXIT, PpmError } from "../errors.ts";
import type { MigrationChannel } from "../transport/channel.ts";
import {
  migrateOut,
  type MigratePhase,
  type MigrateProgress,
  type NetworkSide,
} from "../migrate/source.ts";
import { asMessage, type MessageOf } from "../migrate/messages.ts";
import { PeerRedirects } from "../redirect/peers.ts";
import type { KeptRelay, RelayEnd } from "../relay/kept.ts";
import type { StreamOffsets } from "../relay/replay.ts";
import type { ParkedRelays } from "./relays.ts";
import { connectPeer } from "../transport/conn.ts";
import type { PeerConnection } from "../transport/peer.ts";
import { toExitStatus } from "./exits.ts";
import type { MoveReason, ProcessTable } from "./processes.ts";

/**
 * Milliseconds a finished relay waits for the news of the exit before its
 * connection closes. The news comes moments after the output ends, but along
 * a chain of moves on busy nodes (all of a job's processes ending at once
 * under TCG) 10 s proved too short: a `ppm run` lost its exit status.
 */
export const EXIT_GRACE_MS = 60_000;

/** A migration request, from the control socket or the balancer. */
export interface MoveRequest {
  /** The process here. */
  pid: number;
  /** The peer: its name, hostname or address. */
  to: string;
  /** Bound of each step (see MigrateOutOptions.stepTimeoutMs). */
  timeoutMs?: number;
  /** Bound of the whole migration up to the commit (see MigrateOutOptions.deadlineMs). */
  deadlineMs?: number;
  /** Why it moves (kept in the record `ppm ps` shows). */
  why: MoveReason;
  /** Send code and library pages too (the optimized total copy off; for comparison). */
  copyAll?: boolean;
  /** Called as the image goes out. */
  onProgress?: (p: MigrateProgress) => void;
  /** Called as each step of the migration begins. */
  onPhase?: (phase: MigratePhase) => void;
}

/** The result of a move, as `ppm migrate --json` prints it. */
export interface MoveResult {
  /** PID at the destination. */
  pid: number;
  /** The destination's name. */
  to: string;
  /** Image bytes sent. */
  bytes: number;
  /** Per-phase times, µs. */
  timesUs: Record<string, number>;
  /** Everything else migrateOut returned. */
  [k: string]: unknown;
}

/** Moves a process; the function the control socket and the balancer call. */
export type MoveFn = (req: MoveRequest) => Promise<MoveResult>;

/** What {@link makeMover} needs from the agent. */
export interface MoverDeps {
  /** This node's name. */
  node: string;
  /** The cluster secret's key. */
  secret: Uint8Array;
  /** Discovery: the peers and this node's address. */
  discovery: Pick<Discovery, "status">;
  /** The process table. */
  table: ProcessTable;
  /** Redirect entries left here by processes that moved away, by their new node. */
  leftFor: Map<string, number[]>;
  /** Connections to the nodes arrived processes came from, by PID (to pass exits on). */
  upstream: Map<number, MigrationChannel>;
  /** PIDs being migrated right now. */
  busy: Set<number>;
  /** Relays whose connection broke, waiting for their destination (none: they end). */
  parked?: ParkedRelays;
  /** Logs a line. */
  log: (level: string, s: string) => void;
}

/** The peer named `to` (name, hostname or address); throws a PpmError when unknown or stale. */
export function findPeer(peers: PeerSnapshot[], to: string): PeerSnapshot {
  const p = peers.find((x) => x.name === to || x.hostname === to || x.addresses.includes(to));
  if (!p) {
    throw new PpmError(
      `no peer ${to}`,
      `known peers: ${peers.map((x) => x.name).join(", ") || "none"}`,
      "check `ppm peers`; the destination's agent must run with the same cluster secret",
      EXIT.MISSING,
    );
  }
  if (p.state !== "alive") {
    throw new PpmError(`peer ${to} is ${p.state}`, "its announcements stopped", "", EXIT.FAILURE);
  }
  return p;
}

const hostOf = (p: PeerSnapshot) => p.from.replace(/:\d+$/, "");

/** The comm of `pid`, for the record ("" when it is gone). */
async function commOf(pid: number): Promise<string> {
  return (await Deno.readTextFile(`/proc/${pid}/comm`).catch(() => "")).trim();
}

/** An authenticated connection to the agent of peer `p` (its name proven in the handshake). */
export function connectAgent(
  d: Pick<MoverDeps, "secret" | "node">,
  p: PeerSnapshot,
): Promise<PeerConnection> {
  return connectPeer({
    host: hostOf(p),
    port: p.migrationPort,
    secret: d.secret,
    node: d.node,
    expectNode: p.name,
  });
}

/** Builds the move function of an agent. */
export function makeMover(d: MoverDeps): MoveFn {
  return async (req) => {
    if (d.busy.has(req.pid)) {
      throw new PpmError(
        `process ${req.pid} is being migrated already`,
        "another migration of it is under way",
        "wait for it to finish (ppm ps)",
        EXIT.BUSY,
      );
    }
    const peer = findPeer(d.discovery.status().peers, req.to);
    d.busy.add(req.pid);
    try {
      return await moveTo(d, peer, req);
    } finally {
      d.busy.delete(req.pid);
    }
  };
}

/** The redirects a move sets up on the peers, each reached through its agent. */
function peerRedirects(d: MoverDeps): PeerRedirects {
  return new PeerRedirects(async (addr) => {
    const at = d.discovery.status().peers.find((x) => x.addresses.includes(addr));
    if (!at) throw new PpmError("cannot redirect", `no peer has the address ${addr}`);
    return await connectAgent(d, at);
  }, (s) => d.log("info", s));
}

/** What migrateOut needs of the network: this node's address, the cluster's, the redirects. */
function networkSide(d: MoverDeps, redirects: PeerRedirects): NetworkSide {
  const nodeAddr = d.discovery.status().self.addresses[0] ?? "";
  return {
    nodeAddr,
    clusterAddrs: d.discovery.status().peers.filter((x) => x.state === "alive").flatMap((x) =>
      x.addresses
    ),
    prepare: (addrs) => redirects.prepare(addrs),
    addAt: (addr, entries) => redirects.add(addr, entries),
  };
}

/** Asks the agent of `peerName` how process `pid` (`comm`) fared there, on a new connection. */
async function askOutcome(
  d: MoverDeps,
  peerName: string,
  pid: number,
  comm: string,
): Promise<"running" | "absent" | "pending" | undefined> {
  // Found again: a restarted agent there may listen on another port.
  const q = await connectAgent(d, findPeer(d.discovery.status().peers, peerName));
  try {
    await q.send({ op: "outcome?", pid, comm } satisfies MessageOf<"outcome?">);
    return asMessage(await q.recv(5_000), "outcome")?.state;
  } finally {
    q.close();
  }
}

/** Moves process `req.pid` to `peer`: migrateOut, then the record, the handover and the follow-up. */
async function moveTo(d: MoverDeps, peer: PeerSnapshot, req: MoveRequest): Promise<MoveResult> {
  const conn = await connectAgent(d, peer);
  const prior = d.table.running(req.pid);
  const redirects = peerRedirects(d);
  const network = networkSide(d, redirects);
  const name = prior?.name ?? await commOf(req.pid);
  let relay: KeptRelay | undefined;
  try {
    const r = await migrateOut(req.pid, conn, {
      node: d.node,
      origin: prior?.origin,
      moves: prior?.moves ?? 0,
      stepTimeoutMs: req.timeoutMs,
      deadlineMs: req.deadlineMs,
      copyAll: req.copyAll,
      network,
      log: (s) => d.log("info", s),
      onProgress: req.onProgress,
      onPhase: req.onPhase,
      onRelay: (r) => relay = r,
      askOutcome: (pid, comm) => askOutcome(d, peer.name, pid, comm),
    });
    const handover = d.table.left(req.pid, peer.name, r.pid, req.why, name);
    d.leftFor.set(peer.name, [...(d.leftFor.get(peer.name) ?? []), ...r.redirectIds]);
    // The connection this visit came in on goes with this departure: the process may come
    // back here later, in on another connection, and the news of its end then passes here
    // twice, once for each visit, each time towards the node that visit came from.
    const up = d.upstream.get(req.pid);
    d.upstream.delete(req.pid);
    follow(d, conn, peer.name, req.pid, r.pid, relay, up);
    await conn.send(handover).catch((e) =>
      d.log("warn", `cannot tell ${peer.name} about process ${r.pid}: ${(e as Error).message}`)
    );
    d.log(
      "info",
      `process ${req.pid} moved to ${peer.name} (pid ${r.pid}, ${r.bytes} bytes; ${
        req.why.kind === "balance" ? `balance: ${req.why.mode}` : req.why.by
      })`,
    );
    return { ...r, to: peer.name };
  } catch (e) {
    conn.close();
    d.log("warn", `process ${req.pid} did not move to ${peer.name}: ${(e as Error).message}`);
    throw e;
  } finally {
    await redirects.close();
  }
}

/**
 * Takes the news of the exit of `pidThere` from the destination, records it
 * for `pidHere` and passes it on `up` (towards where the process came from).
 * Resolves when the news came, or the connection ended without it.
 */
function watchExit(
  d: MoverDeps,
  conn: MigrationChannel,
  pidHere: number,
  pidThere: number,
  up: MigrationChannel | undefined,
): Promise<void> {
  let exitSeen!: () => void;
  const exited = new Promise<void>((r) => exitSeen = r);
  (async () => {
    for (;;) {
      const msg = asMessage(await conn.recv(Infinity), "exited");
      if (msg?.pid !== pidThere) continue;
      d.table.exitedElsewhere(pidHere, toExitStatus(msg));
      up?.send({ ...msg, pid: pidHere }).catch(() => {});
      exitSeen();
      return;
    }
  })().catch(() => exitSeen());
  return exited;
}

/**
 * After a move: relays the process's standard streams, takes the news of
 * its exit from the destination (and passes it on towards where the
 * process came from), and closes the connection once the relay ended and
 * the news came, or {@link EXIT_GRACE_MS} after the relay. When the
 * connection breaks first, the relay waits (parked) for the destination's
 * agent to take it up on a new connection, which is then followed alike.
 */
function follow(
  d: MoverDeps,
  conn: MigrationChannel,
  to: string,
  pidHere: number,
  pidThere: number,
  relay: KeptRelay | undefined,
  up: MigrationChannel | undefined,
  peerHas?: StreamOffsets,
) {
  const exited = watchExit(d, conn, pidHere, pidThere, up);
  const run: Promise<RelayEnd> = relay ? relay.run(conn, peerHas) : Promise.resolve("ended");
  run.then(async (end) => {
    if (end === "broken" && relay && d.parked) {
      conn.close();
      d.log(
        "info",
        `relay of process ${pidHere} to ${to} broke; it waits for ${to} to reconnect`,
      );
      d.parked.park(
        relay,
        to,
        (c, has) => follow(d, c, to, pidHere, pidThere, relay, up, has),
        () => d.table.relayEnded(pidHere),
      );
      return;
    }
    relay?.close();
    d.table.relayEnded(pidHere);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      exited,
      new Promise<void>((r) => timer = setTimeout(r, EXIT_GRACE_MS)),
    ]);
    clearTimeout(timer);
    conn.close();
  });
}
