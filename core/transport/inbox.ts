/**
 * What a connection received and its reader has not taken yet: the control
 * messages, or the chunks of one byte stream. The connection stops reading
 * its socket while an inbox is full (see peer.ts), so an inbox holds little
 * more than its limit.
 *
 * @module
 */

import { EXIT, PpmError } from "../errors.ts";

/** A reader waiting in {@link Inbox.take}. */
interface Taker<T> {
  resolve(r: { value: T } | null): void;
  reject(e: unknown): void;
}

/** Limits of an {@link Inbox}. */
export interface InboxLimits {
  /** It is full from this many bytes. */
  bytes: number;
  /** It is full from this many items. */
  items: number;
}

/**
 * A FIFO of received items with a size each; it is full at either limit.
 * It ends normally ({@link end}) or with an error ({@link fail}); both are
 * seen by readers only after the items before them.
 */
export class Inbox<T> {
  #items: T[] = [];
  #sizes: number[] = [];
  #head = 0;
  #bytes = 0;
  #limits: InboxLimits;
  #takers: Taker<T>[] = [];
  #end: { error?: unknown } | undefined;
  #discarding = false;
  #onChange: (deltaBytes: number) => void;

  /**
   * @param limits when it counts as full
   * @param onChange called with the change of {@link bytes} whenever items come or go
   *   (so a paused producer can look again when it is negative)
   */
  constructor(limits: InboxLimits, onChange: (deltaBytes: number) => void = () => {}) {
    this.#limits = limits;
    this.#onChange = onChange;
  }

  /** Bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Items held. */
  get length(): number {
    return this.#items.length - this.#head;
  }

  /** At a limit: the producer should wait. */
  get full(): boolean {
    return this.#bytes >= this.#limits.bytes || this.length >= this.#limits.items;
  }

  /** Ended or failed: no more items will come. */
  get ended(): boolean {
    return this.#end !== undefined;
  }

  /** Adds an item (dropped when discarding or ended). */
  push(item: T, size: number): void {
    if (this.#discarding || this.#end) return;
    const t = this.#takers.shift();
    if (t) return t.resolve({ value: item });
    this.#items.push(item);
    this.#sizes.push(size);
    this.#bytes += size;
    this.#onChange(size);
  }

  /** No more items; readers get the end after what is held. */
  end(): void {
    if (this.#end) return;
    this.#end = {};
    this.#settleTakers();
  }

  /**
   * No more items; readers get `error` after what is held, or at once when
   * `drop` (what is held is dropped).
   */
  fail(error: unknown, drop = false): void {
    if (drop) this.#clear();
    if (this.#end) {
      if (drop) this.#end = { error };
      return;
    }
    this.#end = { error };
    this.#settleTakers();
  }

  /** Drops what is held and all later items (the reader went away). */
  discard(): void {
    this.#discarding = true;
    this.#clear();
  }

  /**
   * The next item, or null after the end.
   *
   * @param timeoutMs how long to wait (Infinity: as long as it takes)
   * @param onTimeout makes the error thrown when the wait times out
   * @throws the error given to {@link fail}, or the timeout error
   */
  take(
    timeoutMs = Infinity,
    onTimeout: () => Error = () => new PpmError("timed out", "", "", EXIT.TIMEOUT),
  ): Promise<{ value: T } | null> {
    if (this.length > 0) {
      const value = this.#items[this.#head], size = this.#sizes[this.#head];
      this.#items[this.#head] = undefined as T; // let it go
      this.#bytes -= size;
      this.#head++;
      if (this.#head > 1024 && this.#head * 2 > this.#items.length) this.#compact();
      this.#onChange(-size);
      return Promise.resolve({ value });
    }
    if (this.#end) {
      return this.#end.error === undefined
        ? Promise.resolve(null)
        : Promise.reject(this.#end.error);
    }
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const taker: Taker<T> = {
        resolve: (r) => (clearTimeout(timer), resolve(r)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
      if (timeoutMs !== Infinity) {
        timer = setTimeout(() => {
          this.#takers = this.#takers.filter((t) => t !== taker);
          reject(onTimeout());
        }, Math.max(0, timeoutMs));
      }
      this.#takers.push(taker);
    });
  }

  #settleTakers(): void {
    if (this.length > 0) return; // takers exist only while empty
    for (const t of this.#takers.splice(0)) {
      if (this.#end?.error === undefined) t.resolve(null);
      else t.reject(this.#end.error);
    }
  }

  #clear(): void {
    const had = this.#bytes;
    this.#items = [];
    this.#sizes = [];
    this.#head = 0;
    this.#bytes = 0;
    this.#onChange(-had);
  }

  #compact(): void {
    this.#items = this.#items.slice(this.#head);
    this.#sizes = this.#sizes.slice(this.#head);
    this.#head = 0;
  }
}
