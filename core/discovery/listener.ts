/**
 * The listener: receives announcements, feeds them to the discovery state
 * (checks, counters, peer table) and expires silent peers on a timer; table
 * changes go out as events to callbacks and async iterators.
 *
 * @module
 */
import type dgram from "node:dgram";
import type { IgnoreReason } from "./counters.ts";
import { EventHub, type EventStream } from "./events.ts";
import { type Logger, noLog } from "./log.ts";
import type { FreshnessOptions } from "./replay.ts";
import { closeSocket, openReceiver } from "./socket.ts";
import { DiscoveryState, type Received } from "./state.ts";
import type { PeerEvent, PeerSnapshot } from "./table.ts";

/** A tick this late (ms) means this agent could not listen meanwhile. */
const STALL_MS = 500;

/** Options of {@link Listener.open}. */
export interface ListenerOptions extends FreshnessOptions {
  /** The announce key (wire.ts announceKey). */
  key: Uint8Array;
  /** This agent's id. */
  selfId: string;
  /** This node's name. */
  selfName?: string;
  /** Missed intervals after which a peer expires. */
  expiry: number;
  /** UDP port. */
  port: number;
  /** Group to join, or null for unicast only (tests on loopback). */
  group: string | null;
  /** IPv4 address of the interface to join on; null lets the kernel choose. */
  interfaceAddress: string | null;
  /** Address to bind (default 0.0.0.0). */
  bind?: string;
  /** Milliseconds between expiry checks (default 100). */
  tickMs?: number;
  /** The clock, ms since the epoch (default Date.now). */
  now?: () => number;
  /** Where to log. */
  log?: Logger;
  /** Called for every packet with what became of it. */
  onReceived?: (r: Received, from: string) => void;
}

/** Seconds between two warnings for the same reason. */
const WARN_EVERY_MS = 60_000;

/** Receives announcements into a peer table until closed. */
export class Listener {
  /** The checks, the counters and the peer table. */
  readonly state: DiscoveryState;
  readonly #events = new EventHub<PeerEvent>();
  readonly #now: () => number;
  readonly #log: Logger;
  readonly #onReceived?: (r: Received, from: string) => void;
  readonly #warned = new Map<IgnoreReason, number>();
  #sock?: dgram.Socket;
  #timer?: ReturnType<typeof setInterval>;

  private constructor(options: ListenerOptions) {
    this.state = new DiscoveryState(options);
    this.#now = options.now ?? Date.now;
    this.#log = options.log ?? noLog;
    this.#onReceived = options.onReceived;
  }

  /** Opens the socket, joins the group and starts expiring peers. */
  static async open(options: ListenerOptions): Promise<Listener> {
    const l = new Listener(options);
    l.#sock = await openReceiver(
      options,
      (packet, from) => l.#receive(packet, from),
      (e) => l.#log("error", `discovery socket: ${e.message}`),
    );
    const tick = options.tickMs ?? 100;
    let last = l.#now();
    l.#timer = setInterval(() => {
      const now = l.#now();
      // A late tick means this agent was held up, and the announcements that
      // came meanwhile wait unread in the socket: that time is not the peers'
      // silence, or a busy node would expire every peer at once.
      const late = now - last - tick;
      last = now;
      if (late > STALL_MS) {
        l.state.table.excuse(late);
        l.#log(
          late > 1000 ? "warn" : "debug",
          `discovery: this agent was held up ${late} ms; its peers' silence then is excused`,
        );
      }
      l.#dispatch(l.state.tick(now));
    }, tick);
    return l;
  }

  /** Calls `callback` for every join, update and leave; returns the unsubscribe function. */
  on(callback: (event: PeerEvent) => void): () => void {
    return this.#events.on(callback);
  }

  /** The events from now on, until closed or `signal` aborts. */
  stream(signal?: AbortSignal): EventStream<PeerEvent> {
    return this.#events.stream(signal);
  }

  /** The UDP port it listens on (the one given, or the kernel's choice for 0). */
  get port(): number {
    return this.#sock?.address().port ?? 0;
  }

  /** The peers now. */
  snapshot(): PeerSnapshot[] {
    return this.state.table.snapshot(this.#now());
  }

  /** Handles one packet received from `from`. */
  #receive(packet: Uint8Array, from: string): void {
    let r: Received;
    try {
      r = this.state.receive(packet, from, this.#now());
    } catch (e) {
      this.#log("error", `discovery: a packet from ${from} failed: ${(e as Error).stack ?? e}`);
      return;
    }
    if (r.verdict !== "accepted") this.#report(r, from);
    this.#onReceived?.(r, from);
    this.#dispatch(r.events);
  }

  #report(r: Received, from: string): void {
    const reason = r.verdict as IgnoreReason;
    if (reason === "self") return;
    const now = this.#now();
    const last = this.#warned.get(reason);
    const n = this.state.counters.ignored[reason];
    if (last === undefined || now - last >= WARN_EVERY_MS) {
      this.#warned.set(reason, now);
      this.#log("warn", `ignored a ${reason} announcement from ${from} (${n} so far): ${r.detail}`);
    } else {
      this.#log("debug", `ignored a ${reason} announcement from ${from}: ${r.detail}`);
    }
  }

  #dispatch(events: PeerEvent[]): void {
    for (const e of events) {
      const p = e.peer;
      if (e.type === "join") this.#log("info", `peer ${p.name} joined (${p.from}, id ${p.id})`);
      if (e.type === "leave") this.#log("info", `peer ${p.name} left (${e.reason}, id ${p.id})`);
      this.#events.emit(e);
    }
  }

  /** Stops receiving, ends the event streams and closes the socket. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#events.close();
    if (this.#sock) await closeSocket(this.#sock);
    this.#sock = undefined;
  }
}
