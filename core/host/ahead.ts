/**
 * One step of read-ahead over an async iterator: the next item is asked for
 * while the caller still works on the current one, so the producer's I/O
 * (on the runtime's threads) overlaps the consumer's work.
 *
 * @module
 */

/**
 * Yields the items of `source` in order, always with the next one already
 * requested. The producer must not reuse an item's memory for the next one.
 * Only for sources whose next item always comes (a file, a process's
 * memory): stopping early waits for the request in flight.
 *
 * @param source the producer, e.g. an async generator
 */
export async function* readAhead<T>(source: AsyncIterator<T>): AsyncGenerator<T> {
  let ahead = source.next();
  try {
    for (;;) {
      // Marked handled now: it may fail while the caller holds the current item.
      ahead.catch(() => {});
      const r = await ahead;
      if (r.done) return;
      ahead = source.next();
      yield r.value;
    }
  } finally {
    await ahead.catch(() => {});
    await source.return?.(undefined).catch(() => {});
  }
}
