/**
 * Work a guest test starts ahead of the step that reports it: outcomes are
 * kept (no unhandled rejection meanwhile) until the step looks at them.
 *
 * @module
 */

/** A promise's outcome. */
export type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** The outcome of `p`, once it settles; never rejects. */
export function settle<T>(p: Promise<T>): Promise<Settled<T>> {
  return p.then((value) => ({ ok: true, value }), (error) => ({ ok: false, error }));
}

/** The value of a settled promise; throws what it rejected with. */
export function unsettle<T>(s: Settled<T>): T {
  if (!s.ok) throw s.error;
  return s.value;
}

/**
 * Runs `jobs` in order with at most `limit` at once; returns each job's
 * outcome, in the jobs' order, as it settles.
 */
export function pool<T>(jobs: (() => Promise<T>)[], limit: number): Promise<Settled<T>>[] {
  const slots: ((go: void) => void)[] = [];
  let running = 0;
  const start = (): Promise<void> => {
    if (running < limit) {
      running++;
      return Promise.resolve();
    }
    return new Promise((go) => slots.push(go));
  };
  const done = () => {
    const go = slots.shift();
    if (go) go();
    else running--;
  };
  return jobs.map((job) => settle(start().then(job).finally(done)));
}
