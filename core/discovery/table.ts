/**
 * The peer table: the nodes this node has heard from, built from accepted
 * announcements. A peer joins with its first announcement, is updated by
 * each next one, and leaves when it says so, when it has missed `expiry` of
 * its intervals, or when the same node name restarts with a new id. No
 * clock is read here: every method takes the time (milliseconds).
 *
 * @module
 */
import type { PeerView } from "../balance/types.ts";
import type { CpuFeatures, LoadVector, PeerAnnouncement } from "./announcement.ts";

/** "alive" while announcements arrive; "stale" after more than 1.5 intervals without one. */
export type PeerState = "alive" | "stale";

/** Why a peer left the table. */
export type LeaveReason = "left" | "expired" | "replaced";

/** A peer as `ppm peers` shows it. Plain JSON. */
export interface PeerSnapshot {
  /** Its agent run's id. */
  id: string;
  /** Its node name. */
  name: string;
  /** Its hostname. */
  hostname: string;
  /** Addresses it announced. */
  addresses: string[];
  /** Where its last announcement came from ("10.88.0.2:41234"). */
  from: string;
  /** Its migration port. */
  migrationPort: number;
  /** Its ppm version. */
  version: string;
  /** Its module ABI version. */
  abi: number;
  /** Its kernel release. */
  kernel: string;
  /** Its CPU features. */
  cpu: CpuFeatures;
  /** Its last announced load. */
  load: LoadVector;
  /** alive or stale. */
  state: PeerState;
  /** Seconds since its last announcement arrived. */
  age: number;
  /** Sequence number of its last announcement. */
  seq: number;
  /** Its announce interval, in milliseconds. */
  interval: number;
  /** When its agent started (its clock, ms since the epoch). */
  startedAt: number;
  /** When this node first heard it (ms since the epoch). */
  firstSeen: number;
  /** When its last announcement arrived (ms since the epoch). */
  lastSeen: number;
}

/** A change in the table. */
export type PeerEvent =
  | { type: "join"; peer: PeerSnapshot }
  | { type: "update"; peer: PeerSnapshot }
  | { type: "leave"; peer: PeerSnapshot; reason: LeaveReason };

/** What {@link PeerTable.observe} did with an announcement. */
export interface Observed {
  /** The changes, in order (a replaced peer's leave comes before the new one's join). */
  events: PeerEvent[];
  /** True when refused: another agent with the same name started later and is still here. */
  conflict: boolean;
}

interface Entry {
  a: PeerAnnouncement;
  from: string;
  firstSeen: number;
  lastSeen: number;
}

/** Missed intervals after which a peer is "stale" in snapshots. */
export const STALE_INTERVALS = 1.5;

/** The peers heard from, keyed by id. */
export class PeerTable {
  /** Missed intervals after which a peer expires. */
  readonly expiry: number;
  readonly #peers = new Map<string, Entry>();

  /** @param expiry missed intervals after which a peer expires (config peerExpiry) */
  constructor(expiry: number) {
    this.expiry = expiry;
  }

  /** Peers in the table. */
  get size(): number {
    return this.#peers.size;
  }

  /** True when peer `id` is in the table. */
  has(id: string): boolean {
    return this.#peers.has(id);
  }

  /**
   * Applies an accepted announcement received from `from` at `now`. A
   * leaving one removes its peer. A new id under a known name replaces the
   * older run (the node restarted); an older run's announcements are then
   * refused as a conflict, as are those of a second node using the name.
   */
  observe(a: PeerAnnouncement, from: string, now: number): Observed {
    const events: PeerEvent[] = [];
    if (a.leaving) {
      const e = this.#peers.get(a.id);
      if (e) {
        this.#peers.delete(a.id);
        events.push({ type: "leave", peer: snap(e, now), reason: "left" });
      }
      return { events, conflict: false };
    }
    for (const [id, e] of this.#peers) {
      if (id === a.id || e.a.name !== a.name) continue;
      if (newerRun(e.a, a)) return { events, conflict: true };
      this.#peers.delete(id);
      events.push({ type: "leave", peer: snap(e, now), reason: "replaced" });
    }
    const old = this.#peers.get(a.id);
    const e: Entry = { a, from, firstSeen: old?.firstSeen ?? now, lastSeen: now };
    this.#peers.set(a.id, e);
    events.push({ type: old ? "update" : "join", peer: snap(e, now) });
    return { events, conflict: false };
  }

  /** Removes the peers that missed `expiry` intervals by `now`. */
  expire(now: number): PeerEvent[] {
    const events: PeerEvent[] = [];
    for (const [id, e] of this.#peers) {
      if (now - e.lastSeen > this.expiry * e.a.interval) {
        this.#peers.delete(id);
        events.push({ type: "leave", peer: snap(e, now), reason: "expired" });
      }
    }
    return events;
  }

  /**
   * Does not count the last `ms` milliseconds against any peer: this node
   * could not listen then (its own event loop was held up), so a silence in
   * that time is not the peers'.
   */
  excuse(ms: number): void {
    if (!(ms > 0)) return;
    for (const e of this.#peers.values()) e.lastSeen += ms;
  }

  /** Every peer at `now`, by name. */
  snapshot(now: number): PeerSnapshot[] {
    return [...this.#peers.values()].map((e) => snap(e, now)).sort((x, y) =>
      x.name < y.name ? -1 : x.name > y.name ? 1 : 0
    );
  }

  /**
   * The peers as the balancing policy takes them (core/balance): the node
   * name as id, `at` from the load vector.
   */
  peerViews(abi?: number): PeerView[] {
    return [...this.#peers.values()]
      // A peer of another module ABI can neither take nor send a process (an upgrade rolling
      // through the cluster): the balancer does not see it.
      .filter((e) => abi === undefined || e.a.abi === abi)
      .map((e) => ({ ...toBalance(e.a.load), id: e.a.name }));
  }
}

/** True when `x` is a later run than `y` (later start; the larger id on a tie). */
function newerRun(x: PeerAnnouncement, y: PeerAnnouncement): boolean {
  return x.startedAt > y.startedAt || (x.startedAt === y.startedAt && x.id > y.id);
}

function toBalance(l: LoadVector): Omit<PeerView, "id"> {
  return {
    load: l.load,
    cpus: l.cpus,
    speed: l.speed,
    memTotal: l.memTotal,
    memAvailable: l.memAvailable,
    drain: l.drain,
    at: l.at,
  };
}

function snap(e: Entry, now: number): PeerSnapshot {
  const a = e.a;
  const idle = now - e.lastSeen;
  return {
    id: a.id,
    name: a.name,
    hostname: a.hostname,
    addresses: a.addresses,
    from: e.from,
    migrationPort: a.migrationPort,
    version: a.version,
    abi: a.abi,
    kernel: a.kernel,
    cpu: a.cpu,
    load: a.load,
    state: idle > STALE_INTERVALS * a.interval ? "stale" : "alive",
    age: Math.max(0, idle) / 1000,
    seq: a.seq,
    interval: a.interval,
    startedAt: a.startedAt,
    firstSeen: e.firstSeen,
    lastSeen: e.lastSeen,
  };
}
