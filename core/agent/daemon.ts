/**
 * `ppm daemon`: the node agent. It announces this node and its load and
 * tracks its peers (core/discovery), accepts authenticated migrations from
 * them (inbound.ts), migrates processes away on request or by its own
 * balancing decisions (outbound.ts, balancer.ts), relays the output of
 * processes that left, keeps their deputies (deputies.ts) and passes the
 * signals those get on (signals.ts), keeps the table of the processes it
 * knows (processes.ts), and answers the CLI on the root-only control socket
 * (control.ts, ops.ts).
 *
 * @module
 */
import { PPM_ABI_VERSION } from "../../ffi/uapi.ts";
import { admit } from "../balance/admission.ts";
import { capacity } from "../balance/load.ts";
import { type BalanceSettings, resolveBalanceConfig } from "../balance/settings.ts";
import { logs, type PpmConfig } from "../config/schema.ts";
import { loadVector, readLoadVector } from "../discovery/local.ts";
import { type Discovery, startDiscovery } from "../discovery/service.ts";
import { armedFaults } from "../fault.ts";
import type { Offer, RelayResume, RelayResumed } from "../migrate/messages.ts";
import { ensureDeputy, ensureHomeStub } from "../deputy/binary.ts";
import { resolvePrecopyConfig } from "../migrate/precopy.ts";
import { DeputyLink } from "../deputy/link.ts";
import { startTicks } from "../host/proc_stat.ts";
import type { PeerConnection } from "../transport/peer.ts";
import { ensureStub } from "../restore/stub.ts";
import { loadSecret } from "../security/secret.ts";
import type { MigrationChannel } from "../transport/channel.ts";
import { VERSION } from "../version.ts";
import { PpmError } from "../errors.ts";
import { LoadReader } from "../balance/read.ts";
import { AGENT_NICE, setOwnNice } from "./priority.ts";
import { Balancer, type BalancerDeps } from "./balancer.ts";
import { serveControl } from "./control.ts";
import { DemandMeter, processViews } from "./facts.ts";
import { makeHandler } from "./ops.ts";
import { Deputies } from "./deputies.ts";
import {
  connectAgent,
  findPeer,
  followTakenUp,
  makeMover,
  type MoveFn,
  type MoverDeps,
} from "./outbound.ts";
import { killIfHere, serveSignals, SignalRoutes, type SignalTargets } from "./signals.ts";
import type { InboundDeps } from "./inbound.ts";
import { servePeerPort } from "./peer_port.ts";
import { watchSilentPeers } from "./silence.ts";
import { ArrivedRelays, ParkedRelays } from "./relays.ts";
import { ensureKeeper } from "../relay/keeper.ts";
import { pagestreamUnusable } from "../transport/pagestream.ts";
import { ROOT } from "./permission.ts";
import { ProcessTable } from "./processes.ts";
import { readBootTime, readProcFacts, readProcStat, startedAtSeconds } from "./procfs.ts";
import { reapChild, sweep } from "./sweep.ts";
import { recover } from "../freeze/journal.ts";
import { sweepWorkDirs } from "../restore/restore.ts";
import { deputySocketPath, ensureDir, runRoot } from "../paths.ts";
import { notifySystemd } from "../host/systemd.ts";

/** Options of {@link runDaemon} besides the configuration. */
export interface DaemonOptions {
  /** Balance by itself even when the configuration does not say so (`ppm daemon --balance`). */
  balance?: boolean;
  /** Nice value for the agent's threads (default AGENT_NICE; see priority.ts). */
  nice?: number;
}

/** Logs a line at a level: error, warn, info or debug. */
type Log = (level: string, s: string) => void;

/** The agent's log: timestamped lines on stderr (the journal under systemd), up to `logLevel`. */
function agentLog(config: PpmConfig): Log {
  return (lvl, s) => {
    if (logs(lvl, config.logLevel)) {
      console.error(`${new Date().toISOString()} ppm[${config.nodeName}] ${lvl}: ${s}`);
    }
  };
}

/** What the agent knows and decides, shared by its parts. */
interface AgentState {
  /** The processes it knows. */
  table: ProcessTable;
  /** PIDs being migrated away now. */
  busy: Set<number>;
  /** Connections to the nodes arrived processes came from, by PID. */
  upstream: Map<number, MigrationChannel>;
  /** Redirect entries left here by processes that moved away, by their new node. */
  leftFor: Map<string, number[]>;
  /** Offers taken and not yet arrived, with the load and memory they will bring. */
  incoming: Map<Offer, { load: number; memory: number }>;
  /** Draining: accepts no process, sends every managed one away. */
  draining: boolean;
  /** Cordoned: accepts no process and sends none away (the balancer only measures). */
  cordoned: boolean;
}

/** Runs the agent until `signal` aborts. */
export async function runDaemon(
  config: PpmConfig,
  signal: AbortSignal,
  options: DaemonOptions = {},
): Promise<void> {
  const log = agentLog(config);
  const secret = await loadSecret(config.secretFile);
  const runDir = await prepareNode(options, log);
  const st = newState(config.nodeName);
  const net = await startNetwork(config, options, secret.key, st, log);
  const dep = startDeputies(config, st, log);
  const mig = startMigrations(config, secret.key, runDir, st, net, dep, log);
  const handle = controlHandler(
    config.nodeName,
    st,
    net.balancer,
    net.discovery,
    mig.move,
    log,
    dep.deputies,
  );
  // Relays of processes that arrived before this agent started.
  const adopted = mig.relays.adopt();
  if (adopted) log("info", `taking up ${adopted} relays left by the previous agent`);
  const loops = runLoops(signal, net.balancer, st, log);
  try {
    await serveUntilStopped(config, net, handle, signal, log);
  } finally {
    await shutDown(net, dep, mig, loops);
  }
}

/** The agent's state, empty. */
function newState(node: string): AgentState {
  return {
    table: new ProcessTable(node),
    busy: new Set(),
    upstream: new Map(),
    leftFor: new Map(),
    incoming: new Map(),
    draining: false,
    cordoned: false,
  };
}

/** The balancer, discovery and the watch of silent peers. */
interface Network {
  balancer: Balancer;
  settings: BalanceSettings;
  discovery: Discovery;
  silence: { stop(): void };
  /** Sets the move function the balancer calls (made later, with the migrations). */
  setMove(move: MoveFn): void;
}

/**
 * The balancer (and its load tracker) before discovery, which asks for the
 * load at once; then discovery, and the watch of peers that fell silent.
 */
async function startNetwork(
  config: PpmConfig,
  options: DaemonOptions,
  secret: Uint8Array,
  st: AgentState,
  log: Log,
): Promise<Network> {
  const balanceConfig = resolveBalanceConfig(config.balance);
  const settings = balanceConfig.settings;
  let move: MoveFn | undefined;
  const balancer = await makeBalancer(config.nodeName, st, {
    settings,
    enabled: balanceConfig.enabled || options.balance === true,
    peers: () => discovery.peerViews(),
    move: (pid, to, why) => move!({ pid, to, why }),
    log,
  });
  const discovery = await startDiscovery(config, {
    secret,
    version: VERSION,
    abi: PPM_ABI_VERSION,
    log: (lvl, msg) => log(lvl, msg),
    load: () => {
      const s = balancer.tracker.sample;
      return s
        ? loadVector(balancer.tracker.announcement(st.draining || st.cordoned), s)
        : readLoadVector();
    },
  });
  const silence = watchSilentPeers({
    discovery,
    leftFor: st.leftFor,
    graceMs: config.peerExpiry * config.announceInterval * 1000,
    log,
  });
  return { balancer, settings, discovery, silence, setMove: (m) => move = m };
}

/** The deputies of the processes that leave, and the ways their signals take (deputies.ts). */
interface DeputyParts {
  routes: SignalRoutes;
  deputies: Deputies;
  link: DeputyLink | undefined;
  /** Reads a connection an arrived process came in on for its signals. */
  readSignals: (conn: MigrationChannel, pid: number) => void;
}

function startDeputies(config: PpmConfig, st: AgentState, log: Log): DeputyParts {
  const routes = new SignalRoutes(log);
  const deputies = new Deputies({
    node: config.nodeName,
    agentPid: Deno.pid,
    routes,
    log,
    binary: () => ensureDeputy(),
    homeStub: () => ensureHomeStub(),
    socket: deputySocketPath(),
  });
  const link = openDeputyLink(deputies, log);
  const signals: SignalTargets = { here: killIfHere((pid) => arrivedHere(st, pid)), routes, log };
  const readSignals = (conn: MigrationChannel, pid: number) => {
    serveSignals(conn, pid, signals);
  };
  return { routes, deputies, link, readSignals };
}

/** Migrations out and in, and the relays that outlive their connections (relays.ts). */
interface MigrationParts {
  parked: ParkedRelays;
  relays: ArrivedRelays;
  move: MoveFn;
  listener: { close(): Promise<void> };
}

function startMigrations(
  config: PpmConfig,
  secret: Uint8Array,
  runDir: string,
  st: AgentState,
  net: Network,
  dep: DeputyParts,
  log: Log,
): MigrationParts {
  const { discovery } = net;
  const { deputies, routes, readSignals } = dep;
  const parked = new ParkedRelays(log);
  const relays = arrivedRelays(config.nodeName, secret, discovery, st, log, readSignals);
  const mover: MoverDeps = {
    node: config.nodeName,
    secret,
    discovery,
    ...st,
    parked,
    deputies,
    routes,
    log,
    precopy: resolvePrecopyConfig(config.precopy),
  };
  const move = makeMover(mover);
  net.setMove(move);
  const listener = servePeerPort({
    port: config.migrationPort,
    secret,
    node: config.nodeName,
    parked,
    incoming: st.incoming,
    log,
    takeUpDeputy: (conn, ask) => takeUpDeputy(mover, deputies, conn, ask),
    inbound: {
      runDir,
      // This node's address as peers know it: the first one it announces.
      nodeAddr: () => discovery.status().self.addresses[0] ?? "",
      table: st.table,
      upstream: st.upstream,
      relays,
      stat: readProcStat,
      log,
      signals: readSignals,
      homecoming: (pid, origin) => deputies.homecoming(pid, origin),
      ...admission(st, net.balancer.tracker, net.settings),
    },
  });
  return { parked, relays, move, listener };
}

/** Serves the control socket until `signal` aborts; says it is up (and tells systemd). */
async function serveUntilStopped(
  config: PpmConfig,
  { balancer, settings }: Network,
  handle: ReturnType<typeof controlHandler>,
  signal: AbortSignal,
  log: Log,
): Promise<void> {
  log(
    "info",
    `agent ${config.nodeName} up: migrations on port ${config.migrationPort}, control ${config.controlSocket}, balancing ${
      balancer.enabled ? `on (every ${settings.interval} s)` : "off"
    }`,
  );
  await serveControl(config.controlSocket, handle, signal, (s) => log("warn", s), () => {
    // systemd (Type=notify): ready once the control socket, the migration port and discovery are up.
    notifySystemd(`READY=1\nSTATUS=agent ${config.nodeName} up\nMAINPID=${Deno.pid}`);
  });
}

/** Stops it all, in order. */
async function shutDown(
  net: Network,
  dep: DeputyParts,
  mig: MigrationParts,
  loops: { stop(): Promise<void> },
): Promise<void> {
  notifySystemd("STOPPING=1");
  // First: what the relays read goes out before the connections close.
  await mig.relays.stop();
  mig.parked.closeAll();
  // The deputies connect again to the next agent (their records stay, and it tells them).
  dep.deputies.attach(undefined, "the agent is stopping");
  await dep.link?.close().catch(() => {});
  net.silence.stop();
  await loops.stop();
  await mig.listener.close().catch(() => {});
  await net.discovery.stop({ leave: true }).catch(() => {});
}

/**
 * Before anything else: the agent's nice value, a warning for armed fault
 * points, the runtime directory, what a ppm that stopped mid-migration left,
 * and the helper binaries built now (never while a process is frozen).
 * Returns the runtime directory.
 */
async function prepareNode(options: DaemonOptions, log: Log): Promise<string> {
  const nice = options.nice ?? AGENT_NICE;
  const niceFailed = setOwnNice(nice);
  if (niceFailed.length) {
    log("warn", `cannot run at nice ${nice} (${niceFailed[0]}): busy nodes may starve the agent`);
  }
  const faults = [...armedFaults()];
  if (faults.length) log("warn", `fault injection armed (PPM_FAULT): ${faults.join(", ")}`);
  const runDir = await ensureDir(runRoot());
  cleanUpAfterCrash(log);
  ensureStub().catch((e) => log("warn", `cannot build the restore stub: ${(e as Error).message}`));
  ensureKeeper().catch((e) =>
    log("warn", `cannot build the relay keeper: ${(e as Error).message}`)
  );
  pagestreamUnusable().then((why) =>
    why && log("warn", `no page stream (pages go in the image stream, slower): ${why}`)
  );
  ensureDeputy().catch((e) =>
    log(
      "warn",
      `cannot install the deputy (processes that leave are ended, not stood in for): ${
        (e as Error).message
      }`,
    )
  );
  return runDir;
}

/**
 * The link the deputies of this node talk to (core/deputy/link.ts), given
 * to `deputies`, which expect at once the deputies a previous agent left
 * (before the link takes any connection: one from a deputy not expected yet
 * is closed, and the signals it sent on it are lost); undefined when it
 * cannot listen (then no deputies are made: a process that leaves is ended,
 * as without one, with a warning).
 */
function openDeputyLink(deputies: Deputies, log: Log): DeputyLink | undefined {
  try {
    const link = DeputyLink.listen(deputySocketPath(), deputies.events);
    deputies.attach(link);
    // In the same turn as the listen: their relays come back from where they went.
    const adopted = deputies.adopt();
    if (adopted) log("info", `taking up ${adopted} deputies left by the previous agent`);
    return link;
  } catch (e) {
    const why = e instanceof PpmError ? `${e.what}: ${e.why}` : (e as Error).message;
    log("warn", `no deputies on this node: ${why}`);
    deputies.attach(undefined, why);
    return undefined;
  }
}

/** Whether `pid` is a process that arrived here and still runs as itself (not a later one). */
function arrivedHere(st: AgentState, pid: number): boolean {
  const e = st.table.running(pid);
  if (e?.direction !== "arrived") return false;
  return e.startTicks === undefined || startTicks(pid) === String(e.startTicks);
}

/**
 * A `relay-resume` no relay waits for here: the relay of a process whose
 * deputy is here, asked for by the node it went to (this agent started
 * after it left), taken up from the deputy's own streams, and followed as
 * after a move. False when no deputy here matches.
 */
async function takeUpDeputy(
  d: MoverDeps,
  deputies: Deputies,
  conn: PeerConnection,
  ask: RelayResume,
): Promise<boolean> {
  const relay = deputies.relayFor(ask, conn.peer);
  if (!relay) return false;
  try {
    await conn.send({ op: "relay-resumed", ok: true, has: relay.received } satisfies RelayResumed);
  } catch {
    relay.close();
    conn.close();
    return true;
  }
  d.log("info", `${conn.peer} took up the relay of process ${ask.pid}, whose deputy is here`);
  followTakenUp(d, conn, conn.peer, ask.pid, relay, ask.has);
  return true;
}

/** The balancer over this agent's processes (it runs once {@link runLoops} starts it). */
async function makeBalancer(
  node: string,
  st: AgentState,
  d: Pick<BalancerDeps, "settings" | "enabled" | "peers" | "move" | "log">,
): Promise<Balancer> {
  const boot = await readBootTime();
  const meter = new DemandMeter();
  const loadReader = new LoadReader();
  return new Balancer({
    ...d,
    node,
    now: () => Date.now() / 1000,
    sample: () => Promise.resolve(loadReader.sample(d.settings.speed)),
    processes: (load) =>
      processViews(st.table.list(), {
        facts: readProcFacts,
        startedHere: (f) => startedAtSeconds(boot, f.startTicks),
        meter,
        schedstats: loadReader.demands,
        busy: st.busy,
        now: Date.now() / 1000,
        load,
      }),
    draining: () => st.draining,
    cordoned: () => st.cordoned && !st.draining,
    incoming: () => {
      let load = 0, memory = 0;
      for (const x of st.incoming.values()) [load, memory] = [load + x.load, memory + x.memory];
      return { load, memory };
    },
  });
}

/** The relays of arrived processes; those it adopts are listed in the table again. */
function arrivedRelays(
  node: string,
  secret: Uint8Array,
  discovery: Discovery,
  st: AgentState,
  log: Log,
  attached: (ch: MigrationChannel, pid: number) => void,
): ArrivedRelays {
  return new ArrivedRelays({
    connect: (name) => connectAgent({ secret, node }, findPeer(discovery.status().peers, name)),
    upstream: st.upstream,
    log,
    attached: (pid, ch) => attached(ch, pid),
    // Listed again, so `ppm ps` shows it and its end is told to the node it came from.
    adopted: (rec) =>
      rec.arrival && st.table.arrived({
        pid: rec.pid,
        from: rec.from,
        origin: rec.arrival.origin,
        moves: rec.arrival.moves,
        at: rec.arrival.at,
        name: rec.arrival.name,
        startTicks: Number(rec.startTicks),
      }),
  });
}

/**
 * Whether this node takes an offer (not draining or cordoned, memory to
 * spare), and the reservation of the load it brings until it arrives.
 */
function admission(
  st: AgentState,
  tracker: Balancer["tracker"],
  settings: BalanceSettings,
): Pick<InboundDeps, "admission" | "reserve"> {
  return {
    admission: (offer) => {
      if (st.draining) return "draining: this node accepts no processes";
      if (st.cordoned) return "cordoned: this node accepts no processes";
      if (!tracker.sample) return "";
      const a = admit(tracker.localView(false), offer.estimatedBytes || 0, settings);
      return a.accept ? "" : a.why;
    },
    reserve: (offer) => {
      const s = tracker.sample;
      // One CPU-bound process, until it shows in the measurements.
      const x = { load: s ? 1 / capacity(s.cpus, s.speed) : 1, memory: offer.estimatedBytes };
      st.incoming.set(offer, x);
      tracker.accepted(x);
      return () => st.incoming.delete(offer);
    },
  };
}

/** What the control socket's requests do (ops.ts) on this agent. */
function controlHandler(
  node: string,
  st: AgentState,
  balancer: Balancer,
  discovery: Discovery,
  move: MoveFn,
  log: Log,
  deputies: Deputies,
) {
  const tracker = balancer.tracker;
  return makeHandler({
    node,
    agentPid: Deno.pid,
    caller: ROOT,
    table: st.table,
    busy: st.busy,
    move,
    balance: (dryRun) => balancer.round({ dryRun }),
    balanceStatus: () => ({
      enabled: balancer.enabled,
      draining: st.draining,
      cordoned: st.cordoned,
      managedHere: st.table.managedHere().length,
      migrating: st.busy.size,
      load: tracker.sample
        ? { local: tracker.localLoad, exported: tracker.exportedLoad }
        : undefined,
    }),
    discovery: () => discovery.status(),
    setDraining: (on) => {
      if (on !== st.draining) log("info", on ? "draining" : "drain ended");
      st.draining = on;
    },
    setCordoned: (on) => {
      if (on !== st.cordoned) log("info", on ? "cordoned" : "cordon ended");
      st.cordoned = on;
    },
    facts: readProcFacts,
    bootTime: readBootTime,
    deputyRows: () => deputies.rows((pid) => st.table.departed(pid)),
    deputyOf: (pid) => deputies.runsOn(pid),
  });
}

/** The loops: balancing (measuring at least) and the look at the known processes (sweep.ts). */
function runLoops(
  signal: AbortSignal,
  balancer: Balancer,
  st: AgentState,
  log: Log,
): { stop(): Promise<void> } {
  const loops = new AbortController();
  signal.addEventListener("abort", () => loops.abort(), { once: true });
  const balancing = balancer.run(loops.signal);
  const sweeping = (async () => {
    while (!loops.signal.aborted) {
      await sweep({ ...st, stat: readProcStat, reap: reapChild, log })
        .catch((e) => log("warn", `process sweep: ${(e as Error).message}`));
      await new Promise((r) => setTimeout(r, 500));
    }
  })();
  return {
    async stop() {
      loops.abort();
      await Promise.allSettled([balancing, sweeping]);
    },
  };
}

/**
 * What a ppm that died mid-migration left behind: frozen connections and
 * drop entries (undone, unless the move was committing: then the process
 * stays stopped, in doubt) and restore plans in RAM.
 */
function cleanUpAfterCrash(log: Log): void {
  for (const r of recover()) {
    if (r.inDoubt) {
      log(
        "warn",
        `process ${r.pid} was being handed over when ppm stopped: it stays stopped and frozen here; if it runs at its destination end it here (kill -9 ${r.pid}), else resume it (kill -CONT ${r.pid}); see docs/security.md`,
      );
    } else {
      log(
        "warn",
        `undid an interrupted freeze of process ${r.pid}: ${r.drops} drop entries removed, ${r.unrepaired} connections out of repair mode${
          r.alive ? "" : " (the process is gone)"
        }`,
      );
    }
  }
  for (const d of sweepWorkDirs()) log("info", `removed ${d}, left by a ppm that stopped`);
}
