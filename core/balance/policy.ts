/**
 * The balancing policy: one decision round of one node. Pure: everything it
 * knows comes in through {@link DecideInput} (the time and the random numbers
 * included) and everything it concludes goes out in the {@link RoundResult}.
 *
 * A round, in order:
 * 1. Judge the peers (`peers.ts`): stale, draining, short of memory, or still
 *    to confirm what this node sent them; the rest are targets.
 * 2. Pick the mode: drain (send every managed process away), memory (free
 *    memory below memoryLow, until above memoryComfort), load (local load above
 *    busyLoad, until below calmLoad), or nothing.
 * 3. Up to the per-interval budget: order the targets by expected load plus
 *    margin × one process's load, shuffle the near-equal ones, and for the
 *    first target that takes a process pick the process with the best benefit
 *    against cost. Update the expected loads and repeat.
 *
 * @module
 */
import { estimateMove, type MoveEstimate } from "./cost.ts";
import { capacity } from "./load.ts";
import {
  assessPeers,
  awaiting,
  type Damping,
  damping,
  fix,
  type PeerAssessment,
  TARGET,
} from "./peers.ts";
import { shuffle } from "./rng.ts";
import type { BalanceSettings } from "./settings.ts";
import {
  type BalanceMode,
  type BalanceState,
  type Decision,
  type DecisionRecord,
  initialBalanceState,
  type LocalView,
  type PeerVerdict,
  type PeerView,
  type ProcessVerdict,
  type ProcessView,
  type Rng,
  type RoundResult,
} from "./types.ts";

/** Everything one round depends on. */
export interface DecideInput {
  /** This node. */
  local: LocalView;
  /** The peers' last announcements as this node knows them. */
  peers: readonly PeerView[];
  /** The processes on this node, managed or not. */
  processes: readonly ProcessView[];
  /** Resolved settings (`resolveBalanceSettings`). */
  settings: BalanceSettings;
  /** The time of the round, in seconds. */
  now: number;
  /** Random numbers for this round (`roundRng(node, round)`). */
  rng: Rng;
  /** What the previous round returned; the initial state when absent. */
  state?: BalanceState;
}

const r4 = (n: number): number => Math.round(n * 1e4) / 1e4;

interface Choice {
  target: PeerAssessment;
  process: ProcessView;
  estimate: MoveEstimate;
  damping?: Damping & { draw: number };
  targets: PeerVerdict[];
  processes: ProcessVerdict[];
  rejected: Record<string, number>;
}

/** The round's working state. */
class Round {
  load: number;
  mem: number;
  backlog: number;
  overloaded: boolean;
  ushering: boolean;
  readonly startOverloaded: boolean;
  readonly startUshering: boolean;
  readonly localCap: number;
  readonly excluded = new Map<BalanceMode, Set<string>>();
  readonly damped = new Map<string, Damping & { draw: number; pass: boolean }>();
  readonly received = new Map<string, number>();

  constructor(
    readonly input: DecideInput,
    readonly peers: PeerAssessment[],
    prev: BalanceState,
  ) {
    const { local, settings: s } = input;
    this.load = local.load;
    this.mem = local.memAvailable;
    this.backlog = Math.max(0, local.sendBacklog ?? 0);
    this.localCap = capacity(local.cpus, local.speed);
    this.overloaded = prev.overloaded ? local.load >= s.calmLoad : local.load > s.busyLoad;
    this.ushering = local.memTotal > 0 &&
      (prev.ushering
        ? local.memAvailable < s.memoryComfort * local.memTotal
        : local.memAvailable < s.memoryLow * local.memTotal);
    this.startOverloaded = this.overloaded;
    this.startUshering = this.ushering;
  }

  mode(): BalanceMode | null {
    if (this.input.local.drain) return "drain";
    if (this.ushering) return "memory";
    if (this.overloaded) return "load";
    return null;
  }

  why(mode: BalanceMode | null): string {
    const { local, settings: s } = this.input;
    const memPct = local.memTotal > 0 ? (this.mem / local.memTotal) * 100 : 100;
    switch (mode) {
      case "drain":
        return "draining: every managed process leaves, none is accepted";
      case "memory":
        return `memory low: ${fix(memPct)} % available (start below ${
          fix(s.memoryLow * 100)
        } %, stop above ${fix(s.memoryComfort * 100)} %)`;
      case "load":
        return `overloaded: load ${fix(this.load)} (start above ${fix(s.busyLoad)}, stop below ${
          fix(s.calmLoad)
        })`;
      default:
        return `nothing to move: load ${fix(this.load)} not above ${fix(s.busyLoad)}, memory ${
          fix(memPct)
        } % available`;
    }
  }

  isExcluded(mode: BalanceMode, id: string): boolean {
    return this.excluded.get(mode)?.has(id) ?? false;
  }

  exclude(mode: BalanceMode, a: PeerAssessment, reason: string, why: string): void {
    let set = this.excluded.get(mode);
    if (!set) this.excluded.set(mode, set = new Set());
    set.add(a.view.id);
    a.reason = reason;
    a.verdict = why;
  }
}

/** Why a process is not a candidate in `mode`, or "" when it is. */
function ineligible(p: ProcessView, mode: BalanceMode, s: BalanceSettings, now: number): string {
  if (!p.managed) return "unmanaged";
  if (p.busy) return "busy";
  if (p.heldBack) return "held back";
  if (mode === "drain") return "";
  if (p.moves > 0 && now - p.arrivedAt < s.minResidency) return "residency";
  if (mode === "load" && now - p.startedAt < s.minAge) return "young";
  return "";
}

/**
 * Targets in the order to try: by score, the near-equal best ones shuffled
 * (unless `strict`), so that busy nodes that see the same idle peers do not
 * all pick the same one.
 */
function orderTargets(
  targets: PeerAssessment[],
  s: BalanceSettings,
  rng: Rng,
  strict = false,
): PeerAssessment[] {
  const score = (a: PeerAssessment) => a.expected + s.margin / a.capacity;
  const sorted = targets.map((a) => ({ a, score: score(a) })).sort((x, y) =>
    x.score - y.score || (x.a.view.id < y.a.view.id ? -1 : 1)
  );
  if (sorted.length === 0 || strict) return sorted.map((x) => x.a);
  const best = sorted[0].score;
  let n = 1;
  while (n < sorted.length && sorted[n].score - best <= s.tieTolerance) n++;
  const ties = shuffle(rng, sorted.slice(0, n));
  return [...ties, ...sorted.slice(n)].map((x) => x.a);
}

function peerVerdict(a: PeerAssessment, verdict = a.verdict, received?: number): PeerVerdict {
  const v: PeerVerdict = {
    id: a.view.id,
    load: r4(a.view.load),
    expected: r4(a.expected),
    age: r4(a.age),
    verdict,
  };
  if (received) v.received = received;
  return v;
}

/** Evaluates the candidates for one target; the best one, or null, with verdicts. */
function pickProcess(
  round: Round,
  mode: BalanceMode,
  t: PeerAssessment,
  candidates: ProcessView[],
): {
  best?: { p: ProcessView; e: MoveEstimate };
  verdicts: ProcessVerdict[];
  rejected: Record<string, number>;
} {
  const { settings: s, now, local } = round.input;
  const verdicts: { v: ProcessVerdict; ok: boolean; rank: number }[] = [];
  const rejected: Record<string, number> = {};
  let best: { p: ProcessView; e: MoveEstimate; rank: number } | undefined;
  for (const p of candidates) {
    const e = estimateMove({
      demand: p.demand,
      memory: p.memory,
      horizon: Math.max(0, now - p.startedAt),
      localLoad: round.load,
      localCpus: local.cpus,
      localSpeed: local.speed,
      targetLoad: t.expected,
      targetCpus: t.view.cpus,
      targetSpeed: t.view.speed,
      bandwidth: t.bandwidth,
      backlog: round.backlog,
      overhead: s.migrationOverhead,
    });
    let key = "";
    let why = "";
    if (t.memAvailable - p.memory < s.memoryComfort * t.view.memTotal) {
      key = "no room";
      why = `no room: peer would keep ${
        fix(100 * (t.memAvailable - p.memory) / t.view.memTotal)
      } % of its memory < ${fix(s.memoryComfort * 100)} %`;
    } else if (mode === "load" && !(t.expected + s.margin * e.loadThere < round.load)) {
      key = "margin";
      why = `margin: ${fix(t.expected)} + ${s.margin} × ${fix(e.loadThere)} ≥ ${fix(round.load)}`;
    } else if (mode === "load" && !(e.net > 0 && e.ratio >= s.benefitCostRatio)) {
      key = "cost";
      why = `cost: benefit ${fix(e.benefit)} / cost ${fix(e.cost)} = ${
        fix(e.ratio)
      } < ${s.benefitCostRatio}`;
    } else if (mode === "memory" && t.expected >= Math.max(round.load, s.busyLoad)) {
      key = "crowding";
      why = `crowding: peer load ${fix(t.expected)} ≥ ${fix(Math.max(round.load, s.busyLoad))}`;
    }
    // Higher rank is better: load → net benefit; memory → memory freed; drain → quickest out.
    const rank = mode === "load"
      ? e.net
      : mode === "memory"
      ? p.memory + e.net * 1e-6
      : -e.transferSeconds;
    if (key) rejected[key] = (rejected[key] ?? 0) + 1;
    else if (!best || rank > best.rank) best = { p, e, rank };
    verdicts.push({
      v: { pid: p.pid, memory: p.memory, net: r4(e.net), verdict: key ? why : "eligible" },
      ok: !key,
      rank,
    });
  }
  verdicts.sort((x, y) => Number(y.ok) - Number(x.ok) || y.rank - x.rank || x.v.pid - y.v.pid);
  const out = verdicts.slice(0, s.recordLimit).map((x) => x.v);
  if (best) {
    const chosen = out.find((v) => v.pid === best.p.pid);
    if (chosen) chosen.verdict = "chosen";
  }
  return { best, verdicts: out, rejected };
}

/** Tries the targets in order; the first that takes a process wins. */
function choose(round: Round, mode: BalanceMode, candidates: ProcessView[]): Choice | undefined {
  const { settings: s, rng } = round.input;
  const open = round.peers.filter((a) => a.reason === TARGET && !round.isExcluded(mode, a.view.id));
  // A draining node sends everything: the least loaded peer first, each time, so its
  // processes spread instead of piling on one of near-equal peers.
  const order = orderTargets(open, s, rng, mode === "drain");
  const considered: PeerVerdict[] = [];
  let minDemand = Infinity;
  for (const p of candidates) minDemand = Math.min(minDemand, p.demand);
  const notLess = `not sufficiently less loaded: expected + ${s.margin} × ${
    fix(minDemand)
  } / capacity ≥ local ${fix(round.load)}`;
  for (let i = 0; i < order.length; i++) {
    const t = order[i];
    let d: (Damping & { draw: number; pass: boolean }) | undefined;
    if (mode === "load") {
      if (!(t.expected + s.margin * (minDemand / t.capacity) < round.load)) {
        round.exclude(mode, t, "not sufficiently less loaded", notLess);
        considered.push(peerVerdict(t));
        continue;
      }
      d = round.damped.get(t.view.id);
      if (!d) {
        const est = damping(t, round.peers, round.load, round.localCap, s);
        const draw = rng();
        d = { ...est, draw, pass: draw < est.probability };
        round.damped.set(t.view.id, d);
      }
      if (!d.pass) {
        round.exclude(
          mode,
          t,
          "damped",
          `damped: ${d.senders} senders share room ${fix(d.room)} → p ${fix(d.probability)}, draw ${
            fix(d.draw)
          }`,
        );
        considered.push(peerVerdict(t));
        continue;
      }
    }
    const picked = pickProcess(round, mode, t, candidates);
    if (!picked.best) {
      const counts = Object.entries(picked.rejected).map(([k, n]) => `${n} ${k}`).join(", ");
      round.exclude(mode, t, "no process fits", `no process fits (${counts})`);
      considered.push(peerVerdict(t));
      continue;
    }
    const limit = s.recordLimit;
    const before = limit > 1 ? considered.slice(-(limit - 1)) : [];
    const listed = limit > 0 ? [...before, peerVerdict(t, "chosen")] : [];
    for (let k = i + 1; k < order.length && listed.length < limit; k++) {
      listed.push(peerVerdict(order[k], "not tried: a nearer target took the process"));
    }
    const choice: Choice = {
      target: t,
      process: picked.best.p,
      estimate: picked.best.e,
      targets: listed,
      processes: picked.verdicts,
      rejected: picked.rejected,
    };
    if (d) {
      choice.damping = {
        mean: r4(d.mean),
        senders: d.senders,
        room: r4(d.room),
        probability: r4(d.probability),
        draw: r4(d.draw),
      };
    }
    return choice;
  }
  return undefined;
}

function record(round: Round, mode: BalanceMode, c: Choice): DecisionRecord {
  const { local, settings: s, now } = round.input;
  const e = c.estimate;
  const p = c.process;
  const lhs = c.target.expected + s.margin * e.loadThere;
  const rec: DecisionRecord = {
    node: local.id,
    at: now,
    mode,
    why: round.why(mode),
    local: {
      load: r4(round.load),
      loadAfter: r4(round.load - e.loadHere),
      memAvailable: round.mem,
      memAvailableAfter: round.mem + p.memory,
      memTotal: local.memTotal,
      ...(local.runqueue ? { runqueue: local.runqueue } : {}),
    },
    target: {
      id: c.target.view.id,
      announcedLoad: r4(c.target.view.load),
      expectedLoad: r4(c.target.expected),
      loadAfter: r4(e.targetLoadAfter),
      announcementAge: r4(c.target.age),
      bandwidth: c.target.bandwidth,
      memAvailable: c.target.memAvailable,
    },
    process: {
      pid: p.pid,
      demand: p.demand,
      ...(p.demandSpan !== undefined ? { demandSpan: p.demandSpan } : {}),
      loadHere: r4(e.loadHere),
      loadThere: r4(e.loadThere),
      memory: p.memory,
      age: r4(now - p.startedAt),
      residency: r4(now - p.arrivedAt),
      moves: p.moves,
    },
    margin: {
      factor: s.margin,
      lhs: r4(lhs),
      rhs: r4(round.load),
      holds: lhs < round.load,
      text: `${fix(c.target.expected)} + ${s.margin} × ${fix(e.loadThere)} = ${fix(lhs)} ${
        lhs < round.load ? "<" : "≥"
      } ${fix(round.load)}`,
    },
    cost: {
      transferSeconds: r4(e.transferSeconds),
      backlogSeconds: r4(round.backlog),
      cpuSeconds: r4(e.cost),
    },
    benefit: {
      rateHere: r4(e.rateHere),
      rateThere: r4(e.rateThere),
      horizonSeconds: r4(Math.max(0, now - p.startedAt)),
      cpuSeconds: r4(e.benefit),
    },
    ratio: r4(e.ratio),
    targets: c.targets,
    processes: c.processes,
    rejected: c.rejected,
  };
  if (c.damping) rec.damping = c.damping;
  return rec;
}

/** Counts of processes that are not candidates in `mode`, by reason. */
function skippedCounts(
  processes: readonly ProcessView[],
  mode: BalanceMode,
  s: BalanceSettings,
  now: number,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of processes) {
    const why = ineligible(p, mode, s, now);
    if (why) out[why] = (out[why] ?? 0) + 1;
  }
  return out;
}

/**
 * One decision round: which managed processes to send to which peers, each
 * with the full record of why, the round's record, and the state for the next
 * round. Deterministic in its input.
 */
export function decide(input: DecideInput): RoundResult {
  const { local, settings: s, now } = input;
  const prev = input.state ?? initialBalanceState();
  const sent = prev.sent.filter((m) => m.at > now - s.staleAfter && m.at <= now);
  const peers = assessPeers(local.id, input.peers, sent, s, now);
  const round = new Round(input, peers, prev);
  const startMode = round.mode();
  const startLoad = round.load;
  const why = round.why(startMode);
  const recent = sent.filter((m) => m.at > now - s.interval).length;
  const budget = Math.max(0, s.maxMigrationsPerInterval - recent);
  const remaining = new Map<number, ProcessView>();
  for (const p of input.processes) if (p.managed && !p.busy && !p.heldBack) remaining.set(p.pid, p);
  const decisions: Decision[] = [];
  let stop = startMode ? "" : why;
  for (let i = 0; i <= budget && !stop; i++) {
    const mode = round.mode();
    if (!mode) {
      stop = `done: ${round.why(null)}`;
      break;
    }
    if (decisions.length >= budget) {
      stop = `budget spent: ${s.maxMigrationsPerInterval} per ${s.interval} s`;
      break;
    }
    const candidates = [...remaining.values()].filter((p) => !ineligible(p, mode, s, now));
    if (candidates.length === 0) {
      const counts = Object.entries(skippedCounts([...remaining.values()], mode, s, now))
        .map(([k, n]) => `${n} ${k}`).join(", ");
      stop = `no ${mode} candidate among ${remaining.size} managed processes${
        counts ? ` (${counts})` : ""
      }`;
      break;
    }
    const c = choose(round, mode, candidates);
    if (!c) {
      stop = `no peer takes a process (${
        peers.filter((a) => a.reason !== "self").length
      } peers known)`;
      break;
    }
    const rec = record(round, mode, c);
    decisions.push({ pid: c.process.pid, from: local.id, to: c.target.view.id, mode, record: rec });
    const e = c.estimate;
    round.load -= e.loadHere;
    round.mem += c.process.memory;
    round.backlog += e.sendSeconds;
    remaining.delete(c.process.pid);
    const t = c.target;
    t.expected += e.loadThere;
    t.pendingLoad += e.loadThere;
    t.pendingMemory += c.process.memory;
    t.memAvailable -= c.process.memory;
    round.received.set(t.view.id, (round.received.get(t.view.id) ?? 0) + 1);
    if (t.pendingLoad >= s.maxPendingLoad) {
      t.reason = "awaiting confirmation";
      t.verdict = awaiting(t.pendingLoad);
    }
    sent.push({
      pid: c.process.pid,
      to: t.view.id,
      at: now,
      load: e.loadThere,
      memory: c.process.memory,
    });
    if (round.overloaded && round.load < s.calmLoad) round.overloaded = false;
    if (round.ushering && round.mem >= s.memoryComfort * local.memTotal) round.ushering = false;
  }
  const peerCounts: Record<string, number> = {};
  for (const a of peers) {
    if (a.reason !== "self") peerCounts[a.reason] = (peerCounts[a.reason] ?? 0) + 1;
  }
  return {
    decisions,
    round: {
      node: local.id,
      at: now,
      mode: startMode,
      why,
      load: r4(startLoad),
      loadAfter: r4(round.load),
      budget,
      decided: decisions.length,
      stop: stop || `budget spent: ${s.maxMigrationsPerInterval} per ${s.interval} s`,
      peers: peers.filter((a) => a.reason !== "self").slice(0, s.recordLimit).map((a) =>
        peerVerdict(a, a.verdict, round.received.get(a.view.id))
      ),
      peerCounts,
      skipped: skippedCounts(input.processes, startMode ?? "load", s, now),
    },
    state: { overloaded: round.startOverloaded, ushering: round.startUshering, sent },
  };
}
