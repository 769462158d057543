/**
 * `ppm daemon`: the node agent. It announces this node and its load and
 * tracks its peers (core/discovery), accepts authenticated migrations from
 * them (inbound.ts), migrates processes away on request or by its own
 * balancing decisions (outbound.ts, balancer.ts), relays the output of
 * processes that left, keeps the table of the processes it knows
 * (processes.ts), and answers the CLI on the root-only control socket
 * (control.ts, ops.ts).
 *
 * @module
 */
import { PPM_ABI_VERSION } from "../../ffi/uapi.ts";
import { admit } from "../balance/admission.ts";
import { capacity } from "../balance/load.ts";
import { resolveBalanceConfig } from "../balance/settings.ts";
import { logs, type PpmConfig } from "../config/schema.ts";
import { loadVector, readLoadVector } from "../discovery/local.ts";
import { startDiscovery } from "../discovery/service.ts";
import { armedFaults } from "../fault.ts";
import {
  answerOutcome,
  isOutcomeQuery,
  type MigrationChannel,
  type Offer,
} from "../migrate/protocol.ts";
import { isRedirectRequest, serveRedirects } from "../redirect/peers.ts";
import { deleteRedirect, listRedirects } from "../redirect/table.ts";
import { ensureStub } from "../restore/stub.ts";
import { loadSecret } from "../security/secret.ts";
import { listenPeers } from "../transport/conn.ts";
import { VERSION } from "../version.ts";
import { LoadReader } from "../balance/read.ts";
import { AGENT_NICE, setOwnNice } from "./priority.ts";
import { Balancer } from "./balancer.ts";
import { serveControl } from "./control.ts";
import { DemandMeter, processViews } from "./facts.ts";
import { receive } from "./inbound.ts";
import { probeNode } from "./liveness.ts";
import { makeHandler } from "./ops.ts";
import { connectAgent, findPeer, makeMover } from "./outbound.ts";
import { ArrivedRelays, isRelayResume, ParkedRelays } from "./relays.ts";
import { ensureKeeper } from "../relay/keeper.ts";
import { ROOT } from "./permission.ts";
import { ProcessTable } from "./processes.ts";
import { readBootTime, readProcFacts, readProcStat, startedAtSeconds } from "./procfs.ts";
import { reapChild, sweep } from "./sweep.ts";
import { recover } from "../freeze/journal.ts";
import { checkOffer } from "../migrate/offer_check.ts";
import { sweepWorkDirs } from "../restore/restore.ts";
import { ensureDir, runRoot } from "../paths.ts";
import { notifySystemd } from "../host/systemd.ts";

/** Options of {@link runDaemon} besides the configuration. */
export interface DaemonOptions {
  /** Balance by itself even when the configuration does not say so (`ppm daemon --balance`). */
  balance?: boolean;
  /** Nice value for the agent's threads (default AGENT_NICE; see priority.ts). */
  nice?: number;
}

/** Runs the agent until `signal` aborts. */
export async function runDaemon(
  config: PpmConfig,
  signal: AbortSignal,
  options: DaemonOptions = {},
): Promise<void> {
  const threshold = config.logLevel;
  const log = (lvl: string, s: string) => {
    if (logs(lvl, threshold)) {
      console.error(`${new Date().toISOString()} ppm[${config.nodeName}] ${lvl}: ${s}`);
    }
  };
  const balanceConfig = resolveBalanceConfig(config.balance);
  const settings = balanceConfig.settings;
  const secret = await loadSecret(config.secretFile);
  const nice = options.nice ?? AGENT_NICE;
  const niceFailed = setOwnNice(nice);
  if (niceFailed.length) {
    log("warn", `cannot run at nice ${nice} (${niceFailed[0]}): busy nodes may starve the agent`);
  }
  const faults = [...armedFaults()];
  if (faults.length) log("warn", `fault injection armed (PPM_FAULT): ${faults.join(", ")}`);
  const table = new ProcessTable(config.nodeName);
  const busy = new Set<number>();
  const upstream = new Map<number, MigrationChannel>();
  const leftFor = new Map<string, number[]>();
  const incoming = new Map<Offer, { load: number; memory: number }>();
  let draining = false;
  // Cordoned: accepts no process and sends none away (the balancer only measures).
  let cordoned = false;
  const runDir = await ensureDir(runRoot());
  cleanUpAfterCrash(log);

  // The restore stub is built now, not while a migrating process is frozen.
  ensureStub().catch((e) => log("warn", `cannot build the restore stub: ${(e as Error).message}`));
  ensureKeeper().catch((e) =>
    log("warn", `cannot build the relay keeper: ${(e as Error).message}`)
  );

  // The balancer (and its load tracker) before discovery, which asks for the load at once.
  const boot = await readBootTime();
  const meter = new DemandMeter();
  const loadReader = new LoadReader();
  const balancer: Balancer = new Balancer({
    node: config.nodeName,
    settings,
    enabled: balanceConfig.enabled || options.balance === true,
    now: () => Date.now() / 1000,
    sample: () => Promise.resolve(loadReader.sample(settings.speed)),
    peers: () => discovery.peerViews(),
    processes: (load) =>
      processViews(table.list(), {
        facts: readProcFacts,
        startedHere: (f) => startedAtSeconds(boot, f.startTicks),
        meter,
        schedstats: loadReader.demands,
        busy,
        now: Date.now() / 1000,
        load,
      }),
    move: (pid, to, why) => move({ pid, to, why }),
    draining: () => draining,
    cordoned: () => cordoned && !draining,
    incoming: () => {
      let load = 0, memory = 0;
      for (const x of incoming.values()) [load, memory] = [load + x.load, memory + x.memory];
      return { load, memory };
    },
    log,
  });
  const discovery = await startDiscovery(config, {
    secret: secret.key,
    version: VERSION,
    abi: PPM_ABI_VERSION,
    log: (lvl, msg) => log(lvl, msg),
    load: () => {
      const s = balancer.tracker.sample;
      return s
        ? loadVector(balancer.tracker.announcement(draining || cordoned), s)
        : readLoadVector();
    },
  });
  /**
   * Nodes gone silent whose redirects go unless they are heard again first:
   * a node held up for a moment, or whose agent restarts, still runs the
   * processes that moved there.
   */
  const silent = new Map<string, ReturnType<typeof setTimeout>>();
  const graceMs = config.peerExpiry * config.announceInterval * 1000;
  discovery.on((e) => {
    log(e.type === "update" ? "debug" : "info", `peer ${e.type}: ${e.peer.name}`);
    const name = e.peer.name;
    if (e.type === "join" && silent.has(name)) {
      clearTimeout(silent.get(name));
      silent.delete(name);
      log("info", `${name} is back: its redirects stay`);
    }
    // A node gone silent (not an agent that restarts, or one that says goodbye).
    if (e.type === "leave" && e.reason === "expired" && !silent.has(name)) {
      const addrs = e.peer.addresses;
      const host = e.peer.from.replace(/:\d+$/, "");
      const port = e.peer.migrationPort;
      // Its kernel answering (even with a reset: the agent is down) means the
      // node and the processes that moved there live; check again later.
      const check = async () => {
        const answer = await probeNode(host, port, graceMs);
        if (!silent.has(name)) return;
        if (answer === "silent") {
          silent.delete(name);
          dropRedirectsTo(name, addrs);
          return;
        }
        log("info", `${name} is silent, but its kernel answers (${answer}): its redirects stay`);
        silent.set(name, setTimeout(check, graceMs));
      };
      silent.set(name, setTimeout(check, graceMs));
    }
  });

  /**
   * A node that left takes its flows with it: the entries that send them
   * there go, and so do this node's drops for them, so that their peers get
   * a reset from here rather than silence.
   */
  const dropRedirectsTo = (name: string, addrs: string[]) => {
    try {
      const ids = [
        ...(leftFor.get(name) ?? []),
        ...listRedirects().filter((r) => r.new && addrs.includes(r.new.addr)).map((r) => r.id),
      ];
      leftFor.delete(name);
      let n = 0;
      for (const id of new Set(ids)) n += deleteRedirect(id);
      if (n) log("warn", `${name} left: removed ${n} redirects of flows that had moved there`);
    } catch (e) {
      log("warn", `cannot clean the redirects of ${name}: ${(e as Error).message}`);
    }
  };

  /** This node's address as peers know it: the first one it announces. */
  const nodeAddr = () => discovery.status().self.addresses[0] ?? "";

  // Relays of standard streams that outlive their connection (core/agent/relays.ts).
  const parked = new ParkedRelays(log);
  const relays = new ArrivedRelays({
    connect: (name) =>
      connectAgent(
        { secret: secret.key, node: config.nodeName },
        findPeer(discovery.status().peers, name),
      ),
    upstream,
    log,
    // Listed again, so `ppm ps` shows it and its end is told to the node it came from.
    adopted: (rec) =>
      rec.arrival && table.arrived({
        pid: rec.pid,
        from: rec.from,
        origin: rec.arrival.origin,
        moves: rec.arrival.moves,
        at: rec.arrival.at,
        name: rec.arrival.name,
        startTicks: Number(rec.startTicks),
      }),
  });
  const move = makeMover({
    node: config.nodeName,
    secret: secret.key,
    discovery,
    table,
    leftFor,
    upstream,
    busy,
    parked,
    log,
  });

  const tracker = balancer.tracker;

  const listener = listenPeers({
    port: config.migrationPort,
    secret: secret.key,
    node: config.nodeName,
    onConnection: async (conn) => {
      try {
        const first = await conn.recv(30_000) as { op?: string };
        if (isRedirectRequest(first)) {
          await serveRedirects(conn, first, (s) => log("info", `${s} for ${conn.peer}`));
          conn.close();
          return;
        }
        if (isRelayResume(first)) {
          await parked.resume(conn, first);
          return;
        }
        if (isOutcomeQuery(first)) {
          const underWay = [...incoming.keys()].some((o) => o.pid === first.pid);
          const state = answerOutcome(first, underWay);
          log("info", `${conn.peer} asked whether process ${first.pid} runs here: ${state}`);
          await conn.send({ op: "outcome", state });
          conn.close();
          return;
        }
        if (first?.op !== "offer") {
          conn.close();
          return;
        }
        let offer: Offer;
        try {
          offer = checkOffer(first);
        } catch (e) {
          const reason = (e as { why?: string }).why ?? String(e);
          await conn.send({ op: "offer-reply", ok: false, reason }).catch(() => {});
          log("warn", `refused an offer from ${conn.peer}: ${reason}`);
          conn.close();
          return;
        }
        await receive(conn, offer, {
          runDir,
          nodeAddr,
          table,
          upstream,
          relays,
          stat: readProcStat,
          log,
          admission: (offer) => {
            if (draining) return "draining: this node accepts no processes";
            if (cordoned) return "cordoned: this node accepts no processes";
            if (!tracker.sample) return "";
            const a = admit(tracker.localView(false), offer.estimatedBytes || 0, settings);
            return a.accept ? "" : a.why;
          },
          reserve: (offer) => {
            const s = tracker.sample;
            // One CPU-bound process, until it shows in the measurements.
            const x = { load: s ? 1 / capacity(s.cpus, s.speed) : 1, memory: offer.estimatedBytes };
            incoming.set(offer, x);
            tracker.accepted(x);
            return () => incoming.delete(offer);
          },
        });
      } catch (e) {
        log("warn", `incoming connection failed: ${(e as Error).message}`);
        conn.close();
      }
    },
    onRefused: (r) => log("warn", `refused a connection from ${r.remote}: ${r.reason}`),
  });

  const handle = makeHandler({
    node: config.nodeName,
    agentPid: Deno.pid,
    caller: ROOT,
    table,
    busy,
    move,
    balance: (dryRun) => balancer.round({ dryRun }),
    balanceStatus: () => ({
      enabled: balancer.enabled,
      draining,
      cordoned,
      managedHere: table.managedHere().length,
      migrating: busy.size,
      load: tracker.sample
        ? { local: tracker.localLoad, exported: tracker.exportedLoad }
        : undefined,
    }),
    discovery: () => discovery.status(),
    setDraining: (on) => {
      if (on !== draining) log("info", on ? "draining" : "drain ended");
      draining = on;
    },
    setCordoned: (on) => {
      if (on !== cordoned) log("info", on ? "cordoned" : "cordon ended");
      cordoned = on;
    },
    facts: readProcFacts,
    bootTime: readBootTime,
  });

  // Relays of processes that arrived before this agent started.
  const adopted = relays.adopt();
  if (adopted) log("info", `taking up ${adopted} relays left by the previous agent`);

  // The loops: balancing (measuring at least) and the look at the known processes.
  const loops = new AbortController();
  signal.addEventListener("abort", () => loops.abort(), { once: true });
  const balancing = balancer.run(loops.signal);
  const sweeping = (async () => {
    while (!loops.signal.aborted) {
      await sweep({ table, busy, upstream, stat: readProcStat, reap: reapChild, log })
        .catch((e) => log("warn", `process sweep: ${(e as Error).message}`));
      await new Promise((r) => setTimeout(r, 500));
    }
  })();

  log(
    "info",
    `agent ${config.nodeName} up: migrations on port ${config.migrationPort}, control ${config.controlSocket}, balancing ${
      balancer.enabled ? `on (every ${settings.interval} s)` : "off"
    }`,
  );
  try {
    await serveControl(config.controlSocket, handle, signal, (s) => log("warn", s), () => {
      // systemd (Type=notify): ready once the control socket, the migration port and discovery are up.
      notifySystemd(`READY=1\nSTATUS=agent ${config.nodeName} up\nMAINPID=${Deno.pid}`);
    });
  } finally {
    notifySystemd("STOPPING=1");
    // First: what the relays read goes out before the connections close.
    await relays.stop();
    parked.closeAll();
    for (const t of silent.values()) clearTimeout(t);
    loops.abort();
    await Promise.allSettled([balancing, sweeping]);
    await listener.close().catch(() => {});
    await discovery.stop({ leave: true }).catch(() => {});
  }
}

/**
 * What a ppm that died mid-migration left behind: frozen connections and
 * drop entries (undone, unless the move was committing: then the process
 * stays stopped, in doubt) and restore plans in RAM.
 */
function cleanUpAfterCrash(log: (level: string, s: string) => void): void {
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
