/**
 * Benefit against cost of one move. Both are in CPU-seconds of a reference
 * CPU, so they compare directly:
 *
 * - horizon: the process's expected remaining run time, taken as its age (a
 *   process that has run for T seconds is, for the heavy-tailed lifetimes seen
 *   on real systems, expected to run about T more);
 * - benefit = (rate there − rate here) × horizon;
 * - cost = rate there × transfer time, the progress lost while it is frozen
 *   and in transit; transfer time = fixed overhead + waiting for the transfers
 *   already queued on this node's link + memory / bandwidth.
 *
 * Staying gives `rateHere × H`; moving gives `rateThere × (H − transfer)`; the
 * difference is exactly benefit − cost.
 *
 * @module
 */
import { cpuRate, processLoad } from "./load.ts";

/** What {@link estimateMove} needs. */
export interface MoveInput {
  /** The process's CPU demand in reference CPUs. */
  demand: number;
  /** Its memory in bytes. */
  memory: number;
  /** Its expected remaining run time in seconds (its age). */
  horizon: number;
  /** This node's load now (the process included). */
  localLoad: number;
  /** This node's CPUs. */
  localCpus: number;
  /** This node's speed. */
  localSpeed: number;
  /** The peer's expected load now (without the process). */
  targetLoad: number;
  /** The peer's CPUs. */
  targetCpus: number;
  /** The peer's speed. */
  targetSpeed: number;
  /** Bytes per second to the peer. */
  bandwidth: number;
  /** Seconds the link is busy with earlier transfers. */
  backlog: number;
  /** Fixed seconds per migration. */
  overhead: number;
}

/** The estimate for one move. */
export interface MoveEstimate {
  /** The load the process makes here. */
  loadHere: number;
  /** The load it will make on the peer. */
  loadThere: number;
  /** The peer's load with the process. */
  targetLoadAfter: number;
  /** CPU rate here (reference CPUs). */
  rateHere: number;
  /** CPU rate on the peer. */
  rateThere: number;
  /** Seconds of memory transfer alone. */
  sendSeconds: number;
  /** Seconds from the decision until it runs on the peer. */
  transferSeconds: number;
  /** CPU-seconds gained over the horizon. */
  benefit: number;
  /** CPU-seconds lost in transit. */
  cost: number;
  /** benefit − cost. */
  net: number;
  /** benefit / cost; a large finite number when the cost is zero. */
  ratio: number;
}

/** Estimates the benefit and cost of moving one process to one peer. */
export function estimateMove(m: MoveInput): MoveEstimate {
  const loadHere = processLoad(m.demand, m.localCpus, m.localSpeed);
  const loadThere = processLoad(m.demand, m.targetCpus, m.targetSpeed);
  const targetLoadAfter = m.targetLoad + loadThere;
  const rateHere = cpuRate(m.demand, m.localLoad, m.localSpeed);
  const rateThere = cpuRate(m.demand, targetLoadAfter, m.targetSpeed);
  const sendSeconds = m.memory / m.bandwidth;
  const transferSeconds = m.overhead + m.backlog + sendSeconds;
  const benefit = (rateThere - rateHere) * m.horizon;
  const cost = rateThere * transferSeconds;
  const ratio = cost > 0 ? benefit / cost : benefit > 0 ? 1e9 : 0;
  return {
    loadHere,
    loadThere,
    targetLoadAfter,
    rateHere,
    rateThere,
    sendSeconds,
    transferSeconds,
    benefit,
    cost,
    net: benefit - cost,
    ratio,
  };
}
