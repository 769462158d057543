/**
 * Judging the peers at the start of a round: which may receive work, what
 * load they are expected to carry once this node's recent migrations show,
 * and the anti-flood estimate of how many other nodes will send them work.
 *
 * @module
 */
import { capacity } from "./load.ts";
import type { BalanceSettings } from "./settings.ts";
import type { PeerView, SentMigration } from "./types.ts";

/** The verdict of a peer that may receive work. */
export const TARGET = "target";

/** A peer as judged for one round; `expected`, `memAvailable` and `verdict` change as it goes. */
export interface PeerAssessment {
  /** Its last announcement. */
  view: PeerView;
  /** Age of the announcement in seconds (0 when it is from the future). */
  age: number;
  /** Load sent by this node that the announcement does not show yet. */
  pendingLoad: number;
  /** Memory sent that the announcement does not show yet. */
  pendingMemory: number;
  /** Announced load + pendingLoad. */
  expected: number;
  /** Announced available memory − pendingMemory. */
  memAvailable: number;
  /** Bytes per second to it. */
  bandwidth: number;
  /** Its capacity (CPUs × speed). */
  capacity: number;
  /** {@link TARGET}, or why it gets no work, in words. */
  verdict: string;
  /** {@link TARGET}, or the short reason ("stale", "draining", ...) for counting. */
  reason: string;
}

/**
 * Judges `peers` for node `self` at `now`. A migration shows in a peer's
 * announcement only when the announcement was measured after it was decided,
 * so sends at or after the announcement's time count as pending.
 */
export function assessPeers(
  self: string,
  peers: readonly PeerView[],
  sent: readonly SentMigration[],
  settings: BalanceSettings,
  now: number,
): PeerAssessment[] {
  const newest = new Map<string, PeerView>();
  for (const p of peers) {
    const seen = newest.get(p.id);
    if (!seen || p.at > seen.at) newest.set(p.id, p);
  }
  const out: PeerAssessment[] = [];
  for (const view of newest.values()) {
    let pendingLoad = 0;
    let pendingMemory = 0;
    for (const s of sent) {
      if (s.to === view.id && s.at >= view.at) {
        pendingLoad += s.load;
        pendingMemory += s.memory;
      }
    }
    const age = Math.max(0, now - view.at);
    const a: PeerAssessment = {
      view,
      age,
      pendingLoad,
      pendingMemory,
      expected: view.load + pendingLoad,
      memAvailable: view.memAvailable - pendingMemory,
      bandwidth: view.bandwidth && view.bandwidth > 0 ? view.bandwidth : settings.defaultBandwidth,
      capacity: capacity(view.cpus, view.speed),
      verdict: TARGET,
      reason: TARGET,
    };
    [a.reason, a.verdict] = peerVerdict(self, a, settings);
    out.push(a);
  }
  return out.sort((x, y) => x.expected - y.expected || (x.view.id < y.view.id ? -1 : 1));
}

function peerVerdict(self: string, a: PeerAssessment, s: BalanceSettings): [string, string] {
  if (a.view.id === self) return ["self", "self"];
  if (a.age > s.staleAfter) {
    return ["stale", `stale: announced ${fix(a.age)} s ago > ${s.staleAfter} s`];
  }
  if (a.view.drain) return ["draining", "draining: accepts no processes"];
  if (a.memAvailable < s.memoryComfort * a.view.memTotal) {
    return [
      "low memory",
      `low memory: ${pct(a.memAvailable, a.view.memTotal)} available < ${
        fix(s.memoryComfort * 100)
      } %`,
    ];
  }
  if (a.pendingLoad > 0 && a.pendingLoad >= s.maxPendingLoad) {
    return ["awaiting confirmation", awaiting(a.pendingLoad)];
  }
  return [TARGET, TARGET];
}

/** The verdict of a peer that has not yet announced what this node sent it. */
export function awaiting(pendingLoad: number): string {
  return `awaiting confirmation: sent ${fix(pendingLoad)} load its announcement does not show`;
}

/** The anti-flood estimate for one target. */
export interface Damping {
  /** Mean load of the target and every known node that would send it work. */
  mean: number;
  /** Known nodes (this one included) that would send it work. */
  senders: number;
  /** Reference CPUs of work the target can take before it reaches the mean. */
  room: number;
  /** The chance this node sends it work this round: room / senders, within [0, 1]. */
  probability: number;
}

/**
 * How much of the target's room this node should take. Every fresh node whose
 * load exceeds the target's by the margin (for one reference process) would
 * send it work in the same round; together with the target they should settle
 * at their mean load. The target's room to that mean is shared among the
 * senders: each sends with probability room / senders. Without this, every
 * busy node that learns of an idle one sends to it at once.
 */
export function damping(
  target: PeerAssessment,
  assessed: readonly PeerAssessment[],
  localLoad: number,
  localCapacity: number,
  settings: BalanceSettings,
): Damping {
  const threshold = target.expected + settings.margin / target.capacity;
  let work = target.expected * target.capacity + localLoad * localCapacity;
  let cap = target.capacity + localCapacity;
  let senders = 1;
  for (const a of assessed) {
    if (a === target || a.view.id === target.view.id || a.age > settings.staleAfter) continue;
    if (a.reason === "self") continue;
    if (a.expected > threshold) {
      senders++;
      work += a.expected * a.capacity;
      cap += a.capacity;
    }
  }
  const mean = work / cap;
  const room = Math.max(0, (mean - target.expected) * target.capacity);
  return { mean, senders, room, probability: Math.min(1, room / senders) };
}

/** A number with two decimals, for records. */
export function fix(n: number): string {
  return Number.isFinite(n) ? n.toFixed(2) : String(n);
}

function pct(part: number, whole: number): string {
  return whole > 0 ? `${fix((part / whole) * 100)} %` : "unknown";
}
