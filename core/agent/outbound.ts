/**
 * Sending a process to a peer: the one path that `ppm migrate`, the
 * balancer and `ppm drain` share. It connects to the peer's agent, runs
 * core/migrate/source.ts, records the move in the process table, tells the
 * destination what it must know about the process (the handover: managed or
 * not, its name and start time, why it moved), and keeps the connection for
 * the output relay, for the news of how the process ended (and where it
 * moved on to), and for the signals its deputy here gets (deputies.ts,
 * signals.ts).
 *
 * @module
 */
import type { Discovery } from "../discovery/service.ts";
import type { PeerSnapshot } from "../discovery/table.ts";
import { EXIT, PpmError } from "../errors.ts";
import type { MigrationChannel } from "../transport/channel.ts";
import {
  migrateOut,
  type MigrateOutOptions,
  type MigratePhase,
  type MigrateProgress,
  type NetworkSide,
} from "../migrate/source.ts";
import { asMessage, type MessageOf, type MovedMessage } from "../migrate/messages.ts";
import { PeerRedirects } from "../redirect/peers.ts";
import type { KeptRelay, RelayEnd } from "../relay/kept.ts";
import type { PrecopySettings } from "../migrate/precopy.ts";
import type { FdRelaySet } from "../relay/fds.ts";
import type { StreamOffsets } from "../relay/replay.ts";
import type { ParkedRelays } from "./relays.ts";
import { connectPeer } from "../transport/conn.ts";
import type { PeerConnection } from "../transport/peer.ts";
import type { Deputies } from "./deputies.ts";
import { toExitStatus } from "./exits.ts";
import type { MoveReason, ProcessTable } from "./processes.ts";
import type { SignalRoutes } from "./signals.ts";

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
  /** Pre-copy settings that differ from the defaults (core/migrate/precopy.ts). */
  precopy?: MigrateOutOptions["precopy"];
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
  /** The deputies of processes that leave (none: a process that leaves is ended here). */
  deputies?: Deputies;
  /** The ways to the processes that left, for the signals their deputies get. */
  routes?: SignalRoutes;
  /** Logs a line. */
  log: (level: string, s: string) => void;
  /** {@link EXIT_GRACE_MS}, shorter in tests. */
  exitGraceMs?: number;
  /** The configuration's pre-copy settings (a request's own override them). */
  precopy?: PrecopySettings;
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
    if (d.deputies?.has(req.pid)) {
      const where = d.deputies.runsOn(req.pid);
      throw new PpmError(
        `process ${req.pid} is a deputy`,
        `it stands in here for process ${req.pid}, which runs on ${where}`,
        `move the process itself: ppm migrate ${req.pid} --to NODE, on ${where}`,
        EXIT.USAGE,
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
    releaseAt: (addr, locks) => redirects.release(addr, locks),
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
  const prior = d.table.running(req.pid);
  // Decided (and the deputy program installed) before anything is frozen.
  const plan = await d.deputies?.plan(req.pid, prior);
  const conn = await connectAgent(d, peer);
  const redirects = peerRedirects(d);
  const network = networkSide(d, redirects);
  const name = prior?.name ?? await commOf(req.pid);
  let relay: KeptRelay | undefined;
  let fds: FdRelaySet | undefined;
  try {
    const r = await migrateOut(req.pid, conn, {
      node: d.node,
      origin: prior?.origin,
      moves: prior?.moves ?? 0,
      stepTimeoutMs: req.timeoutMs,
      deadlineMs: req.deadlineMs,
      copyAll: req.copyAll,
      precopy: { ...d.precopy, ...req.precopy },
      network,
      log: (s) => d.log("info", s),
      onProgress: req.onProgress,
      onPhase: req.onPhase,
      onRelay: (r) => relay = r,
      onFdRelays: (f) => fds = f,
      askOutcome: (pid, comm) => askOutcome(d, peer.name, pid, comm),
      deputy: plan?.become ? { become: plan.become, closeFd: plan.closeFd } : undefined,
    });
    const warnings = [...(plan?.warning ? [plan.warning] : []), ...(r.warnings ?? [])];
    for (const w of warnings) d.log("warn", w);
    const handover = d.table.left(req.pid, peer.name, r.pid, req.why, name);
    d.leftFor.set(peer.name, [...(d.leftFor.get(peer.name) ?? []), ...r.redirectIds]);
    // The connection this visit came in on goes with this departure: the process may come
    // back here later, in on another connection, and the news of its end then passes here
    // twice, once for each visit, each time towards the node that visit came from.
    const up = d.upstream.get(req.pid);
    d.upstream.delete(req.pid);
    follow(d, conn, peer.name, req.pid, r.pid, { relay, fds }, up);
    const told = conn.send(handover).catch((e) =>
      d.log("warn", `cannot tell ${peer.name} about process ${r.pid}: ${(e as Error).message}`)
    );
    // Signals go after the handover, which is queued first (the destination reads it first);
    // the way opens now, before the news of an end can come back and close it.
    if (r.deputy) d.deputies?.departed(req.pid, peer.name, relay?.token ?? "");
    d.routes?.open(req.pid, conn);
    await told;
    // Where it runs now, back towards its home node (and its deputy, if it has one).
    up?.send({ op: "moved", pid: req.pid, node: peer.name } satisfies MovedMessage)
      .catch(() => {});
    d.log(
      "info",
      `process ${req.pid} moved to ${peer.name} (pid ${r.pid}, ${r.bytes} bytes; ${
        req.why.kind === "balance" ? `balance: ${req.why.mode}` : req.why.by
      })${r.deputy ? `; its deputy stands in here as PID ${r.deputy.pid}` : ""}`,
    );
    return { ...r, ...(warnings.length ? { warnings } : {}), to: peer.name };
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
 * for `pidHere`, ends its deputy here the same way (once `outputDone`, its
 * output relay's run, settled or a bound passed), and passes it on `up`
 * (towards where the process came from); the news that it moved on is
 * recorded for its deputy and passed on alike. Resolves to true when the
 * news of the exit came, to false when the connection ended without it.
 * Exported for tests.
 */
export function watchExit(
  d: Pick<MoverDeps, "table" | "deputies" | "routes">,
  conn: MigrationChannel,
  pidHere: number,
  pidThere: number,
  up: MigrationChannel | undefined,
  outputDone: Promise<unknown> = Promise.resolve(),
): Promise<boolean> {
  let exitSeen!: (news: boolean) => void;
  const exited = new Promise<boolean>((r) => exitSeen = r);
  (async () => {
    for (;;) {
      const msg = asMessage(await conn.recv(Infinity), "exited", "moved");
      if (msg?.pid !== pidThere) continue;
      if (msg.op === "moved") {
        d.deputies?.moved(pidHere, msg.node);
        up?.send({ ...msg, pid: pidHere }).catch(() => {});
        continue;
      }
      d.table.exitedElsewhere(pidHere, toExitStatus(msg));
      d.routes?.close(pidHere);
      up?.send({ ...msg, pid: pidHere }).catch(() => {});
      d.deputies?.exited(pidHere, msg, outputDone);
      exitSeen(true);
      return;
    }
  })().catch(() => exitSeen(false));
  return exited;
}

/** Settles with `p`, or after `ms` (whichever comes first). */
async function atMost(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([p, new Promise<void>((r) => timer = setTimeout(r, ms))]);
  clearTimeout(timer);
}

/**
 * Settles once the relays of the process's descriptors (`fds`) ended: they
 * run as long as the process and its peer here use them, however long
 * that is; once the news of its end came (`exited`), they are stopped
 * (nothing more is read for it) and waited for at most {@link EXIT_GRACE_MS}
 * (what it wrote comes in until its ends there close).
 */
async function fdRelaysEnd(
  d: Pick<MoverDeps, "log" | "exitGraceMs">,
  fds: FdRelaySet | undefined,
  exited: Promise<boolean>,
  pid: number,
): Promise<void> {
  if (!fds?.size) return;
  let over = false;
  const done = fds.done.then(() => over = true);
  const news = new Promise<void>((r) => exited.then((n) => n && r()));
  await Promise.race([done, news.then(() => atMost(done, d.exitGraceMs ?? EXIT_GRACE_MS))]);
  if (!over) {
    d.log("warn", `process ${pid} ended, but its descriptor relays did not: they are cut`);
  }
}

/** What a move relays on its connection: the standard streams, and descriptors (fds.ts). */
export interface MoveRelays {
  relay?: KeptRelay;
  fds?: FdRelaySet;
}

/**
 * After a move: relays the process's standard streams, takes the news of
 * its exit from the destination (and passes it on towards where the
 * process came from), and closes the connection once the relay ended and
 * the news came, or {@link EXIT_GRACE_MS} after the relay (never while its
 * deputy here waits for the news), and never while its descriptor relays
 * run ({@link fdRelaysEnd}). When the connection breaks first, the relay
 * waits (parked) for the destination's agent to take it up on a new
 * connection, which is then followed alike, and is the way its signals go
 * (the descriptor relays end with the connection). Exported for tests.
 */
export function follow(
  d: MoverDeps,
  conn: MigrationChannel,
  to: string,
  pidHere: number,
  pidThere: number,
  { relay, fds }: MoveRelays,
  up: MigrationChannel | undefined,
  peerHas?: StreamOffsets,
) {
  const run: Promise<RelayEnd> = relay ? relay.run(conn, peerHas) : Promise.resolve("ended");
  // Its deputy is told the end once what it wrote is out: its output, and its relayed bytes.
  const exited = watchExit(d, conn, pidHere, pidThere, up, Promise.all([run, fds?.done]));
  exited.then((news) => news && fds?.stop());
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
        (c, has) => {
          follow(d, c, to, pidHere, pidThere, { relay }, up, has);
          d.routes?.open(pidHere, c);
        },
        () => {
          d.table.relayEnded(pidHere);
          if (d.deputies?.has(pidHere)) lostWay(d, to, pidHere);
        },
      );
      return;
    }
    relay?.close();
    d.table.relayEnded(pidHere);
    if (d.deputies?.has(pidHere)) {
      // Its deputy here waits for the news, however long the process runs.
      if (!(await exited) && d.deputies.has(pidHere)) lostWay(d, to, pidHere);
    } else {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        exited,
        new Promise<void>((r) => timer = setTimeout(r, d.exitGraceMs ?? EXIT_GRACE_MS)),
      ]);
      clearTimeout(timer);
    }
    await fdRelaysEnd(d, fds, exited, pidHere);
    // Closed for good: no way to the process along it, none to hold signals for.
    d.routes?.close(pidHere, conn);
    conn.close();
  });
}

/** The way to process `pid`, whose deputy is here, is lost for good: said, with what to do. */
function lostWay(d: MoverDeps, to: string, pid: number): void {
  d.log(
    "warn",
    `the connection to ${to}, the way to process ${pid}, ended before the news of its end: ` +
      `its deputy here waits on; if process ${pid} no longer runs (ppm ps on ${to}), end the ` +
      `deputy: kill -KILL ${pid}`,
  );
}

/**
 * Follows the relay of the process of a deputy here that this agent took
 * up after it started (core/agent/deputies.ts `relayFor`), on the
 * connection from `to` that asked for it: as after a move.
 */
export function followTakenUp(
  d: MoverDeps,
  conn: MigrationChannel,
  to: string,
  pid: number,
  relay: KeptRelay,
  peerHas: StreamOffsets,
): void {
  follow(d, conn, to, pid, pid, { relay }, undefined, peerHas);
  d.routes?.open(pid, conn);
}
