/**
 * The announcer: sends this node's announcement at once and then every
 * interval (with a little jitter, so that nodes started together do not stay
 * in step), and a leaving announcement when stopped cleanly.
 *
 * @module
 */
import type dgram from "node:dgram";
import type { LoadVector, PeerAnnouncement } from "./announcement.ts";
import { type DiscoveryCounters, newCounters } from "./counters.ts";
import { type Logger, noLog } from "./log.ts";
import { closeSocket, openSender, type SenderOptions, sendPacket } from "./socket.ts";
import { sealPacket } from "./wire.ts";

/** What stays the same in every announcement of a run. */
export type NodeIdentity =
  & Pick<
    PeerAnnouncement,
    | "id"
    | "name"
    | "hostname"
    | "addresses"
    | "migrationPort"
    | "version"
    | "abi"
    | "kernel"
    | "cpu"
  >
  & {
    /** When the agent started, ms since the epoch. */
    startedAt: number;
  };

/** Options of {@link Announcer.open}. */
export interface AnnouncerOptions {
  /** The announce key (wire.ts announceKey). */
  key: Uint8Array;
  /** This node. */
  identity: NodeIdentity;
  /** Milliseconds between announcements. */
  intervalMs: number;
  /** The load to announce, asked before every announcement. */
  load: () => LoadVector | Promise<LoadVector>;
  /** Where to send: the group and port (or a unicast address in tests). */
  target: { address: string; port: number };
  /** The sending socket's interface, TTL and loopback. */
  sender: SenderOptions;
  /** Random spread of each interval, as a fraction (default 0.1: ±10 %). */
  jitter?: number;
  /** The clock, ms since the epoch (default Date.now). */
  now?: () => number;
  /** Where to log. */
  log?: Logger;
  /** Counters to add sent packets to (default: its own). */
  counters?: DiscoveryCounters;
}

/** Sends announcements until stopped. */
export class Announcer {
  /** Sent and failed announcements. */
  readonly counters: DiscoveryCounters;
  readonly #sock: dgram.Socket;
  readonly #o: AnnouncerOptions;
  readonly #now: () => number;
  readonly #log: Logger;
  #seq = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running = false;
  #closed = false;
  #inflight: Promise<unknown> = Promise.resolve();

  private constructor(sock: dgram.Socket, options: AnnouncerOptions) {
    this.#sock = sock;
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#log = options.log ?? noLog;
    this.counters = options.counters ?? newCounters();
  }

  /** Opens the sending socket; call {@link start} to begin. */
  static async open(options: AnnouncerOptions): Promise<Announcer> {
    return new Announcer(await openSender(options.sender), options);
  }

  /** The sequence number of the last announcement sent (0 before the first). */
  get seq(): number {
    return this.#seq;
  }

  /** Announces now and then every interval until {@link stop}. */
  start(): void {
    if (this.#running || this.#closed) return;
    this.#running = true;
    this.#inflight = this.announce().catch(() => {});
    this.#schedule();
  }

  #schedule(): void {
    if (!this.#running) return;
    const jitter = this.#o.jitter ?? 0.1;
    const delay = this.#o.intervalMs * (1 + jitter * (2 * Math.random() - 1));
    this.#timer = setTimeout(() => {
      this.#inflight = this.announce().catch(() => {}).then(() => this.#schedule());
    }, delay);
  }

  /**
   * Builds, seals and sends one announcement; returns the packet, or null
   * when it could not be sent (counted in sendErrors and logged).
   */
  async announce(leaving = false): Promise<Uint8Array | null> {
    if (this.#closed) return null;
    let packet: Uint8Array;
    try {
      const load = await this.#o.load();
      const a: PeerAnnouncement = {
        ...this.#o.identity,
        load,
        seq: ++this.#seq,
        timestamp: Math.round(this.#now()),
        interval: Math.round(this.#o.intervalMs),
        leaving,
      };
      packet = sealPacket(a, this.#o.key);
      await sendPacket(this.#sock, packet, this.#o.target.port, this.#o.target.address);
    } catch (e) {
      this.counters.sendErrors++;
      const n = this.counters.sendErrors;
      if (n <= 3 || n % 60 === 0) {
        this.#log(
          "warn",
          `cannot send an announcement (${n} failed so far): ${(e as Error).message}`,
        );
      }
      return null;
    }
    this.counters.sent++;
    return packet;
  }

  /**
   * Stops announcing and closes the socket. With `leave` (default true) the
   * peers are told at once, by two leaving announcements (in case one is lost).
   */
  async stop(options: { leave?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    this.#running = false;
    clearTimeout(this.#timer);
    await this.#inflight;
    clearTimeout(this.#timer);
    if (options.leave ?? true) {
      await this.announce(true);
      await new Promise((r) => setTimeout(r, 10));
      await this.announce(true);
    }
    this.#closed = true;
    await closeSocket(this.#sock);
  }
}
