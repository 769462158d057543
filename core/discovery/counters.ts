/**
 * Counters of what discovery received and sent, by reason for every packet
 * ignored. `ppm peers --json` shows them, and the agent logs each new reason.
 *
 * @module
 */

/** Why a received packet was ignored. */
export const IGNORE_REASONS = [
  /** Larger than MAX_PACKET_BYTES. */
  "oversized",
  /** Not a ppm announcement, or a field fails its check. */
  "malformed",
  /** A packet format version this ppm does not read. */
  "version",
  /** The MAC does not match: another secret, or changed on the way. */
  "forged",
  /** This agent's own announcement, looped back. */
  "self",
  /** Its timestamp is older than the freshness window. */
  "stale",
  /** Its timestamp is ahead of this node's clock by more than the allowed skew. */
  "future",
  /** Its sequence number is not above the last one accepted from that sender. */
  "replay",
  /** Another running agent announces the same node name and started later. */
  "conflict",
] as const;

/** One of {@link IGNORE_REASONS}. */
export type IgnoreReason = typeof IGNORE_REASONS[number];

/** What discovery counted since it started. */
export interface DiscoveryCounters {
  /** Packets received. */
  received: number;
  /** Packets accepted (joins, updates and leaves). */
  accepted: number;
  /** Packets ignored, by reason. */
  ignored: Record<IgnoreReason, number>;
  /** Announcements sent. */
  sent: number;
  /** Announcements that could not be sent. */
  sendErrors: number;
}

/** All counters at zero. */
export function newCounters(): DiscoveryCounters {
  const ignored = Object.fromEntries(IGNORE_REASONS.map((r) => [r, 0])) as Record<
    IgnoreReason,
    number
  >;
  return { received: 0, accepted: 0, ignored, sent: 0, sendErrors: 0 };
}

/** The total of ignored packets. */
export function ignoredTotal(c: DiscoveryCounters): number {
  return IGNORE_REASONS.reduce((n, r) => n + c.ignored[r], 0);
}
