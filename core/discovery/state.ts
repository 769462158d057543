/**
 * The decisions of discovery without any I/O: a received packet goes through
 * the packet checks (wire.ts), the self, freshness and replay checks
 * (replay.ts) and the peer table (table.ts); every packet is counted as
 * accepted or by the reason it was ignored. The time is always an argument.
 *
 * @module
 */
import type { PeerAnnouncement } from "./announcement.ts";
import { type DiscoveryCounters, type IgnoreReason, newCounters } from "./counters.ts";
import { type FreshnessOptions, ReplayGuard } from "./replay.ts";
import { type PeerEvent, PeerTable } from "./table.ts";
import { openPacket } from "./wire.ts";

/** Options of {@link DiscoveryState}. */
export interface DiscoveryStateOptions extends FreshnessOptions {
  /** The announce key (wire.ts announceKey). */
  key: Uint8Array;
  /** This agent's id: its own packets are ignored as "self". */
  selfId: string;
  /** This node's name: other agents announcing it are ignored as "conflict". */
  selfName?: string;
  /** Missed intervals after which a peer expires. */
  expiry: number;
}

/** What became of one received packet. */
export interface Received {
  /** "accepted", or why it was ignored. */
  verdict: "accepted" | IgnoreReason;
  /** More about why, for debug logs. */
  detail: string;
  /** Changes to the peer table. */
  events: PeerEvent[];
  /** The announcement, when it was authentic. */
  announcement?: PeerAnnouncement;
}

/** The peer table with the checks in front of it, and the counters. */
export class DiscoveryState {
  /** What was received, accepted and ignored. */
  readonly counters: DiscoveryCounters = newCounters();
  /** The peers. */
  readonly table: PeerTable;
  /** The freshness and replay checks. */
  readonly replay: ReplayGuard;
  readonly #key: Uint8Array;
  readonly #selfId: string;
  readonly #selfName?: string;

  /** Empty state: no peers, counters at zero. */
  constructor(options: DiscoveryStateOptions) {
    this.#key = options.key;
    this.#selfId = options.selfId;
    this.#selfName = options.selfName;
    this.table = new PeerTable(options.expiry);
    this.replay = new ReplayGuard(options);
  }

  /** Handles a packet received from `from` ("address:port") at `now` (ms since the epoch). */
  receive(packet: Uint8Array, from: string, now: number): Received {
    this.counters.received++;
    const opened = openPacket(packet, this.#key);
    if (!opened.ok) return this.#ignore(opened.reason, opened.detail);
    const a = opened.announcement;
    if (a.id === this.#selfId) return this.#ignore("self", "own announcement", a);
    const fresh = this.replay.accept(a.id, a.seq, a.timestamp, now);
    if (fresh !== "fresh") {
      return this.#ignore(fresh, `${a.name} seq ${a.seq}, ${now - a.timestamp} ms old`, a);
    }
    if (a.name === this.#selfName) {
      return this.#ignore("conflict", `another agent (${a.id}, ${from}) uses this node's name`, a);
    }
    const observed = this.table.observe(a, from, now);
    if (observed.conflict) {
      return this.#ignore("conflict", `a later agent named ${a.name} is running`, a);
    }
    this.counters.accepted++;
    return { verdict: "accepted", detail: "", events: observed.events, announcement: a };
  }

  /** Expires peers and forgets stale replay state; call a few times per interval. */
  tick(now: number): PeerEvent[] {
    this.replay.prune(now);
    return this.table.expire(now);
  }

  #ignore(reason: IgnoreReason, detail: string, announcement?: PeerAnnouncement): Received {
    this.counters.ignored[reason]++;
    return { verdict: reason, detail, events: [], announcement };
  }
}
