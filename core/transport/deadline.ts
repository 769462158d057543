/**
 * Bounded waits.
 *
 * @module
 */

/**
 * Settles like `p`, or rejects with `onTimeout()` after `ms` milliseconds,
 * whichever comes first. The timer is always cleared; a later rejection of
 * `p` is swallowed (the caller has moved on, usually after closing what `p`
 * waited for).
 *
 * @param p the promise to wait for
 * @param ms the bound; Infinity waits as long as `p` does
 * @param onTimeout makes the error (and may close the resource `p` waits on)
 */
export async function withTimeout<T>(
  p: Promise<T>,
  ms: number,
  onTimeout: () => Error,
): Promise<T> {
  if (ms === Infinity) return await p;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), Math.max(0, ms));
  });
  try {
    return await Promise.race([p, expired]);
  } finally {
    clearTimeout(timer);
    p.catch(() => {});
  }
}
