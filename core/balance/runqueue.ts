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

/**
 * Seconds a mean run-queue length is taken over, at least. The kernel adds a
 * waiting task's wait to its schedstat only when the task gets a CPU, so
 * over one second a task that waited most of it can read as idle; under TCG
 * such waits last seconds, and 1 s means swung by a whole task.
 */
export const RUNQUEUE_WINDOW = 5;

/**
 * Seconds a process's CPU demand is measured over, at least: twice the
 * run-queue window, as one process's waits swing its own figure more than a
 * node's sum.
 */
export const DEMAND_WINDOW = 10;

interface Look {
  at: number;
  times: ReadonlyMap<string, number>;
}

/** The pid of a "pid/tid" task key. */
export function pidOf(task: string): number {
  return Number(task.slice(0, task.indexOf("/")));
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

  /** The looks kept, oldest first: the reference, the ones after it, the newest. */
  get looks(): readonly T[] {
    return this.#looks;
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

/** A process's CPU demand and the seconds it was measured over. */
export interface DemandRate {
  /** Run plus wait time of its threads per second: 1 for a CPU-bound thread. */
  demand: number;
  /** Seconds it was measured over (the longest of its threads'). */
  span: number;
}

/**
 * Each process's CPU demand from the same looks as the run queue: the time
 * its threads ran on a CPU or waited for one, per second, over at least
 * `window` seconds. A CPU-bound thread is always one or the other: demand 1,
 * however many tasks share its CPU and whatever the hypervisor takes from the
 * node (under TCG such a thread gets a third of a CPU in CPU time).
 *
 * Each thread is measured from the oldest look of the window that saw it, so
 * a process that arrived or started within the window counts from its first
 * look; one first seen in the newest look has no demand yet.
 */
export class DemandRates {
  readonly #looks: LookWindow<Look>;
  #rates = new Map<number, DemandRate>();
  #times: ReadonlyMap<string, number> = new Map();

  /** @param window seconds each demand is taken over, at least (once the looks span that long) */
  constructor(window = DEMAND_WINDOW) {
    this.#looks = new LookWindow(window);
  }

  /** Takes a look: `times` maps "pid/tid" to run plus wait ns, `at` is in seconds. */
  update(times: ReadonlyMap<string, number>, at: number): void {
    if (!this.#looks.push({ at, times }) && this.#looks.looks.length > 1) return;
    this.#times = times;
    const looks = this.#looks.looks;
    const rates = new Map<number, DemandRate>();
    for (const [task, t] of times) {
      // The oldest earlier look that saw this thread, and not a reused key's larger time.
      const from = looks.find((l) => l.at < at && (l.times.get(task) ?? Infinity) <= t);
      if (!from) continue;
      const span = at - from.at;
      const rate = Math.min(1, (t - from.times.get(task)!) / 1e9 / span);
      const pid = pidOf(task);
      const r = rates.get(pid);
      rates.set(pid, { demand: (r?.demand ?? 0) + rate, span: Math.max(r?.span ?? 0, span) });
    }
    this.#rates = rates;
  }

  /** The demand of `pid` as of the last look; undefined while it has been seen only once (or never). */
  demand(pid: number): DemandRate | undefined {
    return this.#rates.get(pid);
  }

  /** The run plus wait time of all of `pid`'s threads at the last look, ns; undefined when unseen. */
  runWait(pid: number): number | undefined {
    let sum: number | undefined;
    const prefix = `${pid}/`;
    for (const [task, t] of this.#times) if (task.startsWith(prefix)) sum = (sum ?? 0) + t;
    return sum;
  }
}
