/**
 * The average number of runnable tasks over an interval, from the tasks'
 * own clocks: /proc/PID/schedstat gives, per task, the time it ran on a CPU
 * and the time it waited in a run queue. Summed over the tasks, their growth
 * between two looks divided by the time between them is the mean run-queue
 * length of that interval: what a count of runnable tasks at one instant
 * estimates, without its noise (at the instant of the look the reader itself,
 * a short command or a kernel thread may happen to run).
 *
 * Pure: the reader (read.ts) gives the times.
 *
 * @module
 */

/** Run plus wait time in nanoseconds from the text of /proc/PID/schedstat; null when malformed. */
export function parseSchedstat(text: string): number | null {
  const f = text.trim().split(/\s+/);
  if (f.length < 2) return null;
  const run = Number(f[0]);
  const wait = Number(f[1]);
  return Number.isFinite(run) && Number.isFinite(wait) && run >= 0 && wait >= 0 ? run + wait : null;
}

/** The mean run-queue length between successive looks at the tasks' run and wait times. */
export class RunqueueMeter {
  #last?: { at: number; times: ReadonlyMap<string, number> };
  #shares = new Map<string, number>();

  /** Each task's mean runnable count in the last interval {@link update} measured. */
  get shares(): ReadonlyMap<string, number> {
    return this.#shares;
  }

  /**
   * Takes a look: `times` maps each task (any stable key) to its run plus
   * wait time in ns, `at` is the time of the look in seconds. Returns the mean
   * number of runnable tasks since the previous look, or undefined for the
   * first look (or when the clock did not advance). A task first seen now
   * counts with what it used since it started, at most the interval; a task
   * that came and went between two looks is not seen.
   */
  update(times: ReadonlyMap<string, number>, at: number): number | undefined {
    const prev = this.#last;
    if (prev && !(at > prev.at)) return undefined;
    this.#last = { at, times };
    if (!prev) return undefined;
    const span = (at - prev.at) * 1e9;
    let sum = 0;
    this.#shares = new Map();
    for (const [task, t] of times) {
      const before = prev.times.get(task);
      const grew = before === undefined ? t : t - before;
      // A reused key (a new task) can look like a shrink: count it as new.
      const part = Math.min(span, grew >= 0 ? grew : t);
      sum += part;
      if (part > 0) this.#shares.set(task, part / span);
    }
    return sum / span;
  }
}
