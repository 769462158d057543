/**
 * `ppm daemon`: the node agent. It announces this node and tracks its
 * peers (core/discovery), accepts authenticated migrations from them
 * (core/transport, core/migrate/destination.ts), migrates processes away
 * on request (core/migrate/source.ts), relays the output of processes that
 * left, and answers the CLI on the root-only control socket.
 *
 * @module
 */
import { PPM_ABI_VERSION } from "../../ffi/uapi.ts";
import type { PpmConfig } from "../config/schema.ts";
import { startDiscovery } from "../discovery/service.ts";
import { EXIT, PpmError } from "../errors.ts";
import { armedFaults } from "../fault.ts";
import { type Arrival, migrateIn } from "../migrate/destination.ts";
import type { Offer } from "../migrate/protocol.ts";
import { migrateOut, type NetworkSide } from "../migrate/source.ts";
import { isRedirectRequest, PeerRedirects, serveRedirects } from "../redirect/peers.ts";
import { deleteRedirect, listRedirects } from "../redirect/table.ts";
import { ensureStub } from "../restore/stub.ts";
import { loadSecret } from "../security/secret.ts";
import { connectPeer, listenPeers } from "../transport/conn.ts";
import { VERSION } from "../version.ts";
import { type ControlRequest, type Emit, serveControl } from "./control.ts";

/** A process this node knows moved: arrived here or left from here. */
export interface MovedProcess {
  /** Where it started: node and PID. */
  origin: { node: string; pid: number };
  /** Where it runs now: node and PID. */
  current: { node: string; pid: number };
  /** Moves so far. */
  moves: number;
  /** When it last moved (ISO). */
  movedAt: string;
  /** "arrived" (runs here) or "left" (runs elsewhere; its output is relayed here). */
  direction: "arrived" | "left";
}

const LEVELS = ["error", "warn", "info", "debug"];

/** Runs the agent until `signal` aborts. */
export async function runDaemon(config: PpmConfig, signal: AbortSignal): Promise<void> {
  const level = LEVELS.indexOf(config.logLevel);
  const log = (lvl: string, s: string) => {
    if (LEVELS.indexOf(lvl) <= level) {
      console.error(`${new Date().toISOString()} ppm[${config.nodeName}] ${lvl}: ${s}`);
    }
  };
  const secret = await loadSecret(config.secretFile);
  const faults = [...armedFaults()];
  if (faults.length) log("warn", `fault injection armed (PPM_FAULT): ${faults.join(", ")}`);
  const moved: MovedProcess[] = [];
  const runDir = "/run/ppm";
  await Deno.mkdir(runDir, { recursive: true, mode: 0o700 });

  // The restore stub is built now, not while a migrating process is frozen.
  ensureStub().catch((e) => log("warn", `cannot build the restore stub: ${(e as Error).message}`));

  const discovery = await startDiscovery(config, {
    secret: secret.key,
    version: VERSION,
    abi: PPM_ABI_VERSION,
    log: (lvl, msg) => log(lvl, msg),
  });
  /** Redirect entries left here by processes that moved away, by their new node. */
  const leftFor = new Map<string, number[]>();
  discovery.on((e) => {
    log(e.type === "update" ? "debug" : "info", `peer ${e.type}: ${e.peer.name}`);
    // A node gone silent (not an agent that restarts, or one that says goodbye).
    if (e.type === "leave" && e.reason === "expired") {
      dropRedirectsTo(e.peer.name, e.peer.addresses);
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

  const listener = listenPeers({
    port: config.migrationPort,
    secret: secret.key,
    node: config.nodeName,
    onConnection: async (conn) => {
      let arrival: Arrival | undefined;
      try {
        const first = await conn.recv(30_000) as { op?: string };
        if (isRedirectRequest(first)) {
          await serveRedirects(conn, first, (s) => log("info", `${s} for ${conn.peer}`));
          conn.close();
          return;
        }
        arrival = await migrateIn(conn, {
          runDir,
          log: (s) => log("info", s),
          network: { nodeAddr: nodeAddr() },
          offer: first as Offer,
        });
      } catch (e) {
        log("warn", `incoming migration failed: ${(e as Error).message}`);
      }
      if (!arrival) {
        conn.close();
        return;
      }
      // A process that left from here and came back is one entry again.
      for (let i = moved.length - 1; i >= 0; i--) {
        const m = moved[i];
        if (m.origin.node === arrival.origin.node && m.origin.pid === arrival.origin.pid) {
          moved.splice(i, 1);
        }
      }
      moved.push({
        origin: arrival.origin,
        current: { node: config.nodeName, pid: arrival.pid },
        moves: arrival.moves,
        movedAt: arrival.at,
        direction: "arrived",
      });
      // The connection now carries the process's output back; it closes when the process ends.
    },
    onRefused: (r) => log("warn", `refused a connection from ${r.remote}: ${r.reason}`),
  });

  const findPeer = (to: string) => {
    const peers = discovery.status().peers;
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
  };

  const handle = async (req: ControlRequest, emit: Emit): Promise<unknown> => {
    switch (req.op) {
      case "status":
        return { node: config.nodeName, ...discovery.status().self };
      case "peers":
        return discovery.status();
      case "ps":
        return moved;
      case "migrate": {
        const peer = findPeer(req.to);
        const host = peer.from.replace(/:\d+$/, "");
        const conn = await connectPeer({
          host,
          port: peer.migrationPort,
          secret: secret.key,
          node: config.nodeName,
          expectNode: peer.name,
        });
        const prior = moved.find((m) => m.direction === "arrived" && m.current.pid === req.pid);
        const peers = new PeerRedirects(async (addr) => {
          const at = discovery.status().peers.find((x) => x.addresses.includes(addr));
          if (!at) throw new PpmError("cannot redirect", `no peer has the address ${addr}`);
          return await connectPeer({
            host: at.from.replace(/:\d+$/, ""),
            port: at.migrationPort,
            secret: secret.key,
            node: config.nodeName,
            expectNode: at.name,
          });
        }, (s) => log("info", s));
        const network: NetworkSide = {
          nodeAddr: nodeAddr(),
          clusterAddrs: discovery.status().peers.filter((x) => x.state === "alive").flatMap((x) =>
            x.addresses
          ),
          prepare: (addrs) => peers.prepare(addrs),
          addAt: (addr, entries) => peers.add(addr, entries),
        };
        let lastEmitted = 0;
        try {
          const r = await migrateOut(req.pid, conn, {
            node: config.nodeName,
            origin: prior?.origin,
            moves: prior?.moves ?? 0,
            stepTimeoutMs: req.timeoutMs,
            network,
            log: (s) => log("info", s),
            onProgress: (p) => {
              if (p.sent - lastEmitted < 1 << 20) return;
              lastEmitted = p.sent;
              emit({ progress: p });
            },
            onRelay: (done) => done.finally(() => conn.close()),
          });
          if (prior) moved.splice(moved.indexOf(prior), 1);
          moved.push({
            origin: prior?.origin ?? { node: config.nodeName, pid: req.pid },
            current: { node: peer.name, pid: r.pid },
            moves: (prior?.moves ?? 0) + 1,
            movedAt: new Date().toISOString(),
            direction: "left",
          });
          leftFor.set(peer.name, [...(leftFor.get(peer.name) ?? []), ...r.redirectIds]);
          log("info", `process ${req.pid} moved to ${peer.name} (pid ${r.pid}, ${r.bytes} bytes)`);
          return { ...r, to: peer.name };
        } catch (e) {
          conn.close();
          log("warn", `process ${req.pid} did not move to ${peer.name}: ${(e as Error).message}`);
          throw e;
        } finally {
          await peers.close();
        }
      }
    }
  };

  log(
    "info",
    `agent ${config.nodeName} up: migrations on port ${config.migrationPort}, control ${config.controlSocket}`,
  );
  try {
    await serveControl(config.controlSocket, handle, signal, (s) => log("warn", s));
  } finally {
    await listener.close().catch(() => {});
    await discovery.stop({ leave: true }).catch(() => {});
  }
}
