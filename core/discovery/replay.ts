/**
 * Freshness and replay checks per sender. An announcement is accepted only
 * when its timestamp lies within the window around this node's clock and its
 * sequence number is above the last one accepted from the same agent run
 * (node id). The last sequence number of a sender is kept until its packets
 * would be stale anyway, so a captured packet can never be replayed: within
 * the window the sequence number refuses it, after it the timestamp does.
 *
 * @module
 */

/** Options of {@link ReplayGuard}. */
export interface FreshnessOptions {
  /** Packets older than this many milliseconds are stale. Default 30 000. */
  windowMs?: number;
  /** Packets stamped more than this many milliseconds ahead are refused. Default 5 000. */
  futureMs?: number;
  /** Senders remembered at most; the oldest are forgotten first. Default 4096. */
  maxSenders?: number;
}

/** The default freshness window: 30 s. */
export const DEFAULT_WINDOW_MS = 30_000;
/** The default allowed clock skew ahead: 5 s. */
export const DEFAULT_FUTURE_MS = 5_000;

/** The verdict of {@link ReplayGuard.check}. */
export type Freshness = "fresh" | "stale" | "future" | "replay";

interface Last {
  seq: number;
  timestamp: number;
}

/** Remembers the last sequence number accepted from each sender. */
export class ReplayGuard {
  /** The freshness window in milliseconds. */
  readonly windowMs: number;
  /** The allowed skew ahead in milliseconds. */
  readonly futureMs: number;
  readonly #maxSenders: number;
  readonly #last = new Map<string, Last>();

  /** A guard with the given window, skew and capacity. */
  constructor(options: FreshnessOptions = {}) {
    this.windowMs = options.windowMs ?? DEFAULT_WINDOW_MS;
    this.futureMs = options.futureMs ?? DEFAULT_FUTURE_MS;
    this.#maxSenders = options.maxSenders ?? 4096;
  }

  /** Senders remembered. */
  get size(): number {
    return this.#last.size;
  }

  /** Judges a packet of sender `id` without remembering it. */
  check(id: string, seq: number, timestamp: number, now: number): Freshness {
    if (timestamp < now - this.windowMs) return "stale";
    if (timestamp > now + this.futureMs) return "future";
    const last = this.#last.get(id);
    if (last && seq <= last.seq) return "replay";
    return "fresh";
  }

  /** Judges a packet and, when fresh, remembers its sequence number. */
  accept(id: string, seq: number, timestamp: number, now: number): Freshness {
    const verdict = this.check(id, seq, timestamp, now);
    if (verdict !== "fresh") return verdict;
    const newest = Math.max(timestamp, this.#last.get(id)?.timestamp ?? 0);
    this.#last.delete(id); // re-insert: the Map's order is the order of last use
    this.#last.set(id, { seq, timestamp: newest });
    while (this.#last.size > this.#maxSenders) {
      this.#last.delete(this.#last.keys().next().value!);
    }
    return verdict;
  }

  /** Forgets senders whose packets are all stale by now. */
  prune(now: number): void {
    for (const [id, last] of this.#last) {
      if (last.timestamp < now - this.windowMs) this.#last.delete(id);
    }
  }
}
