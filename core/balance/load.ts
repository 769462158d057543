/**
 * From a measurement to a normalised load, and the two asymmetric filters:
 * the local load (rises slowly, falls at once) and the exported load (rises
 * at once, decays slowly).
 *
 * Why asymmetric: a node should not send work away because of a short burst,
 * so its own view of its load rises slowly; and it should stop as soon as the
 * burst is over, so the view falls at once. Peers should stop sending to a
 * node as soon as it gets busy, so what it announces rises at once; and a
 * short dip should not attract work, so the announcement decays slowly.
 *
 * @module
 */
import type { LoadSample } from "./types.ts";

/** A node's capacity: CPUs times relative speed (reference CPUs). */
export function capacity(cpus: number, speed: number): number {
  return Math.max(cpus, 1) * (speed > 0 ? speed : 1);
}

/**
 * The CPU demand of a sample in tasks: the runnable count. A count at one
 * instant is raised when PSI shows waiting the snapshot missed; an average
 * over the interval is taken as it is. PSI "some avg10" is the share of time at
 * least one task waited for a CPU; at those times more than `cpus` tasks were
 * runnable, so the average demand was at least `cpus + some/100`.
 */
export function cpuDemand(sample: LoadSample): number {
  const runnable = Math.max(0, sample.runnable);
  // An average over the interval misses no waiting; PSI would add the kernel's threads.
  if (sample.averaged) return runnable;
  const some = sample.cpuPressure;
  if (some === undefined || !(some > 0)) return runnable;
  return Math.max(runnable, Math.max(sample.cpus, 1) + Math.min(some, 100) / 100);
}

/**
 * The instantaneous normalised load of a sample: CPU demand per reference CPU.
 * The kernel's load averages are not used: they lag by minutes and count tasks
 * waiting for disks.
 */
export function instantLoad(sample: LoadSample): number {
  return cpuDemand(sample) / capacity(sample.cpus, sample.speed);
}

/** The load a process with `demand` CPUs adds to a node with `cpus` CPUs of `speed`. */
export function processLoad(demand: number, cpus: number, speed: number): number {
  return demand / capacity(cpus, speed);
}

/**
 * The CPU rate, in reference CPUs, that a process with `demand` gets on a node of
 * `speed` whose load (including the process) is `load`: its demand at full speed
 * while the node has spare CPUs, its share when the CPUs are shared.
 */
export function cpuRate(demand: number, load: number, speed: number): number {
  const s = speed > 0 ? speed : 1;
  return demand * Math.min(s, 1 / Math.max(load, 1e-9));
}

/** One step of a filter that follows a rise by `gain` of the gap and a fall at once. */
export function riseSlowly(previous: number, sample: number, gain: number): number {
  return sample <= previous ? sample : previous + gain * (sample - previous);
}

/** One step of a filter that follows a rise at once and a fall by `gain` of the gap. */
export function decaySlowly(previous: number, sample: number, gain: number): number {
  return sample >= previous ? sample : previous + gain * (sample - previous);
}

/** A load filter whose step is `step(previous, sample, gain)`. Starts at `initial` (default 0). */
abstract class StepFilter {
  /** The fraction of a change followed per sample, in the slow direction. */
  readonly gain: number;
  #value: number;

  /**
   * A filter at `initial`.
   *
   * @param gain the fraction of the slow-direction change followed per sample
   * @param initial the starting value
   */
  constructor(gain: number, initial = 0) {
    this.gain = gain;
    this.#value = initial;
  }

  /** The step between samples. */
  protected abstract step(previous: number, sample: number, gain: number): number;

  /** The current value. */
  get value(): number {
    return this.#value;
  }

  /** Feeds one sample and returns the new value. */
  update(sample: number): number {
    this.#value = this.step(this.#value, sample, this.gain);
    return this.#value;
  }
}

/** The local load: rises slowly (gain = settings.localRiseGain), falls at once. */
export class LocalLoadFilter extends StepFilter {
  /** Rises slowly, falls at once. */
  protected step(previous: number, sample: number, gain: number): number {
    return riseSlowly(previous, sample, gain);
  }
}

/** The exported load: rises at once, decays slowly (gain = settings.exportDecayGain). */
export class ExportedLoadFilter extends StepFilter {
  /** Rises at once, decays slowly. */
  protected step(previous: number, sample: number, gain: number): number {
    return decaySlowly(previous, sample, gain);
  }
}
