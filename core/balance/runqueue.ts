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
/**
 * Seconds a mean run-queue length is taken over, at least. The kernel adds a
 * waiting task's wait to its schedstat only when the task gets a CPU, so
 * over one second a task that waited most of it can read as idle; under TCG
 * such waits last seconds, and 1 s means swung by a whole task.
 */
export const RUNQUEUE_WINDOW = 5;

interface Look {
  at: number;
  times: ReadonlyMap<string, number>;
}

/** Each look of a series is kept until a newer one is `window` seconds old: the reference. */
export class LookWindow<T extends { at: number }> {
  #looks: T[] = [];

  /** @param window seconds the reference look is at least old, when there is one that old */
  constructor(readonly window: number) {}

  /**
   * Adds `look` and returns the reference to measure it against: the newest
   * earlier look at least `window` old, else the oldest one; undefined for
   * the first look or when the clock did not advance.
   */
  push(look: T): T | undefined {
    const last = this.#looks.at(-1);
    if (last && !(look.at > last.at)) return undefined;
    this.#looks.push(look);
    let ref = 0;
    for (let i = 0; i < this.#looks.length - 1; i++) {
      if (look.at - this.#looks[i].at >= this.window) ref = i;
    }
    this.#looks = this.#looks.slice(ref);
    return this.#looks.length > 1 ? this.#looks[0] : undefined;
  }
}

/** The mean run-queue length between looks at the tasks' run and wait times. */
export class RunqueueMeter {
  readonly #looks: LookWindow<Look>;
  #shares = new Map<string, number>();

  /** @param window seconds each mean is taken over, at least (once the meter has looked that long) */
  constructor(window = RUNQUEUE_WINDOW) {
    this.#looks = new LookWindow(window);
  }

  /** Each task's mean runnable count over the span the last {@link update} measured. */
  get shares(): ReadonlyMap<string, number> {
    return this.#shares;
  }

  /**
   * Takes a look: `times` maps each task (any stable key) to its run plus
   * wait time in ns, `at` is the time of the look in seconds. Returns the mean
   * number of runnable tasks since the reference look (the newest at least
   * `window` old, else the oldest), or undefined for the first look (or when
   * the clock did not advance). A task first seen since counts with what it
   * used since it started, at most the span; a task that came and went
   * between two looks is not seen.
   */
  update(times: ReadonlyMap<string, number>, at: number): number | undefined {
    const prev = this.#looks.push({ at, times });
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
