/**
 * Discovery as the node agent runs it: from the configuration and the
 * cluster secret to a listener and an announcer sharing one set of
 * counters, with the status `ppm peers --json` shows.
 *
 * @module
 */
import type { PeerView } from "../balance/types.ts";
import type { PpmConfig } from "../config/schema.ts";
import type { LoadVector } from "./announcement.ts";
import { Announcer, type NodeIdentity } from "./announcer.ts";
import type { DiscoveryCounters } from "./counters.ts";
import type { EventStream } from "./events.ts";
import { Listener } from "./listener.ts";
import {
  announcedAddresses,
  cpuFeatures,
  interfaceAddress,
  type Interfaces,
  newNodeId,
  readLoadVector,
  readRoutes,
  type RouteEntry,
} from "./local.ts";
import type { Logger } from "./log.ts";
import type { FreshnessOptions } from "./replay.ts";
import type { Received } from "./state.ts";
import type { PeerEvent, PeerSnapshot } from "./table.ts";
import { announceKey } from "./wire.ts";

/** The settings discovery uses. */
export type DiscoveryConfig = Pick<
  PpmConfig,
  | "group"
  | "port"
  | "interface"
  | "ttl"
  | "advertise"
  | "nodeName"
  | "migrationPort"
  | "announceInterval"
  | "peerExpiry"
>;

/** What discovery needs besides the configuration. */
export interface DiscoveryDeps {
  /** The cluster secret (security/secret.ts loadSecret().key). */
  secret: Uint8Array;
  /** ppm's version. */
  version: string;
  /** The module ABI version. */
  abi: number;
  /** The load to announce (default: the instant load read from /proc). */
  load?: () => LoadVector | Promise<LoadVector>;
  /** Where to log. */
  log?: Logger;
  /** The clock, ms since the epoch (default Date.now). */
  now?: () => number;
  /** The interfaces (default Deno.networkInterfaces()). */
  interfaces?: Interfaces;
  /** The IPv4 routes (default /proc/net/route), for choosing an interface when none is set. */
  routes?: RouteEntry[];
  /** The hostname (default Deno.hostname()). */
  hostname?: string;
  /** The kernel release (default Deno.osRelease()). */
  kernel?: string;
  /** /proc/cpuinfo text (default read). */
  cpuinfo?: string;
  /** Freshness window and allowed skew. */
  freshness?: FreshnessOptions;
  /** Loop announcements back to other agents on this node (default true). */
  loopback?: boolean;
  /** Milliseconds between expiry checks (default 100). */
  tickMs?: number;
  /** Called for every received packet. */
  onReceived?: (r: Received, from: string) => void;
}

/** What `ppm peers --json` shows. Plain JSON. */
export interface DiscoveryStatus {
  /** This node. */
  self: NodeIdentity & { group: string; port: number; interface: string | null };
  /** The peers, by name. */
  peers: PeerSnapshot[];
  /** Counters since the start. */
  counters: DiscoveryCounters;
}

/** A running discovery: announcer and listener. */
export class Discovery {
  /** This node as announced. */
  readonly identity: NodeIdentity;
  /** The listener (peer table, counters). */
  readonly listener: Listener;
  /** The announcer. */
  readonly announcer: Announcer;
  readonly #where: { group: string; port: number; interface: string | null };

  /**
   * Ties a started listener and announcer together; see {@link startDiscovery}.
   *
   * @param identity this node
   * @param listener the listener
   * @param announcer the announcer, sharing the listener's counters
   * @param where group, port and interface address, for the status
   */
  constructor(
    identity: NodeIdentity,
    listener: Listener,
    announcer: Announcer,
    where: { group: string; port: number; interface: string | null },
  ) {
    this.identity = identity;
    this.listener = listener;
    this.announcer = announcer;
    this.#where = where;
  }

  /** The status for `ppm peers`. */
  status(): DiscoveryStatus {
    return {
      self: { ...this.identity, ...this.#where },
      peers: this.listener.snapshot(),
      counters: structuredClone(this.listener.state.counters),
    };
  }

  /** The peers as the balancing policy takes them. */
  peerViews(): PeerView[] {
    return this.listener.state.table.peerViews(this.identity.abi);
  }

  /** Calls `callback` for every join, update and leave. */
  on(callback: (event: PeerEvent) => void): () => void {
    return this.listener.on(callback);
  }

  /** The events from now on. */
  stream(signal?: AbortSignal): EventStream<PeerEvent> {
    return this.listener.stream(signal);
  }

  /** Stops announcing (telling the peers, unless `leave` is false) and listening. */
  async stop(options: { leave?: boolean } = {}): Promise<void> {
    await this.announcer.stop(options);
    await this.listener.close();
  }
}

/**
 * Starts discovery: resolves the interface, opens the listener (joining the
 * group), then the announcer, which announces at once. Throws a PpmError
 * when the interface does not exist or a socket cannot be opened.
 */
export async function startDiscovery(
  config: DiscoveryConfig,
  deps: DiscoveryDeps,
): Promise<Discovery> {
  const interfaces = deps.interfaces ?? Deno.networkInterfaces();
  const ifaceAddress = interfaceAddress(config.interface, interfaces, deps.routes ?? readRoutes);
  const cpuinfo = deps.cpuinfo ?? await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const now = deps.now ?? Date.now;
  const identity: NodeIdentity = {
    id: newNodeId(),
    name: config.nodeName,
    hostname: (deps.hostname ?? Deno.hostname()).replace(/[^\x21-\x7e]/g, "_").slice(0, 64) ||
      "unknown",
    addresses: announcedAddresses(config.advertise, ifaceAddress, interfaces),
    migrationPort: config.migrationPort,
    version: deps.version,
    abi: deps.abi,
    kernel: deps.kernel ?? Deno.osRelease(),
    cpu: cpuFeatures(cpuinfo),
    startedAt: Math.round(now()),
  };
  const key = announceKey(deps.secret);
  const listener = await Listener.open({
    ...deps.freshness,
    key,
    selfId: identity.id,
    selfName: identity.name,
    expiry: config.peerExpiry,
    port: config.port,
    group: config.group,
    interfaceAddress: ifaceAddress,
    tickMs: deps.tickMs,
    now,
    log: deps.log,
    onReceived: deps.onReceived,
  });
  let announcer: Announcer;
  try {
    announcer = await Announcer.open({
      key,
      identity,
      intervalMs: config.announceInterval * 1000,
      load: deps.load ?? (() => readLoadVector()),
      target: { address: config.group, port: config.port },
      sender: { interfaceAddress: ifaceAddress, ttl: config.ttl, loopback: deps.loopback ?? true },
      now,
      log: deps.log,
      counters: listener.state.counters,
    });
  } catch (e) {
    await listener.close();
    throw e;
  }
  announcer.start();
  return new Discovery(identity, listener, announcer, {
    group: config.group,
    port: config.port,
    interface: ifaceAddress,
  });
}
