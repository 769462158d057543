/**
 * Delivering events to callbacks and to async iterators. An iterator buffers
 * at most `capacity` events; when a slow consumer lets it fill, the oldest
 * are dropped and counted, so a producer never waits and memory stays bounded.
 *
 * @module
 */

/** A subscription's iterator, with the count of events it dropped. */
export interface EventStream<T> extends AsyncIterableIterator<T> {
  /** Events dropped because the buffer was full. */
  readonly dropped: number;
}

/** Fans events out to callbacks and iterators. */
export class EventHub<T> {
  readonly #callbacks = new Set<(event: T) => void>();
  readonly #streams = new Set<{ push(e: T): void; end(): void }>();
  #closed = false;

  /** Calls `callback` for every event until the returned function is called. */
  on(callback: (event: T) => void): () => void {
    this.#callbacks.add(callback);
    return () => this.#callbacks.delete(callback);
  }

  /** Delivers `event`; a callback that throws does not stop the others. */
  emit(event: T): void {
    if (this.#closed) return;
    for (const cb of this.#callbacks) {
      try {
        cb(event);
      } catch {
        // A failing subscriber must not break discovery.
      }
    }
    for (const s of this.#streams) s.push(event);
  }

  /**
   * The events from now on, until {@link close} or `signal` aborts; at most
   * `capacity` are buffered (default 1024).
   */
  stream(signal?: AbortSignal, capacity = 1024): EventStream<T> {
    const buffer: T[] = [];
    let wake: (() => void) | undefined;
    let done = this.#closed || !!signal?.aborted;
    let dropped = 0;
    const sub = {
      push(e: T) {
        buffer.push(e);
        if (buffer.length > capacity) {
          buffer.shift();
          dropped++;
        }
        wake?.();
      },
      end() {
        done = true;
        wake?.();
      },
    };
    const finish = () => {
      sub.end();
      this.#streams.delete(sub);
    };
    if (!done) this.#streams.add(sub);
    signal?.addEventListener("abort", finish, { once: true });
    const it: EventStream<T> = {
      get dropped() {
        return dropped;
      },
      async next(): Promise<IteratorResult<T>> {
        while (buffer.length === 0 && !done) {
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
        }
        if (buffer.length) return { value: buffer.shift()!, done: false };
        return { value: undefined, done: true };
      },
      return(): Promise<IteratorResult<T>> {
        finish();
        buffer.length = 0;
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return it;
      },
    };
    return it;
  }

  /** Ends every stream and drops every callback. */
  close(): void {
    this.#closed = true;
    for (const s of this.#streams) s.end();
    this.#streams.clear();
    this.#callbacks.clear();
  }
}
