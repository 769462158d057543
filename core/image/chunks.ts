/**
 * Exact-length reads over an async iterable of byte chunks of any sizes,
 * copying only when a read spans chunks (so 1-byte chunks stay linear).
 *
 * @module
 */

/** Reads a stream of chunks as a sequence of exact-length pieces. */
export class ChunkReader {
  #it: AsyncIterator<Uint8Array>;
  #cur: Uint8Array = new Uint8Array(0);
  #pos = 0;
  #offset = 0;

  /** @param source the chunks; they must not be modified after they are yielded */
  constructor(source: AsyncIterable<Uint8Array>) {
    this.#it = source[Symbol.asyncIterator]();
  }

  /** Bytes consumed so far: the stream offset of the next read. */
  get offset(): number {
    return this.#offset;
  }

  /** Bytes already received and not yet consumed. */
  get buffered(): number {
    return this.#cur.length - this.#pos;
  }

  /**
   * The next `n` bytes, or fewer when the stream ends first. The result may
   * be a view of a source chunk.
   */
  async read(n: number): Promise<Uint8Array> {
    if (this.buffered >= n) {
      this.#offset += n;
      return this.#cur.subarray(this.#pos, this.#pos += n);
    }
    const out = new Uint8Array(n);
    out.set(this.#cur.subarray(this.#pos));
    let got = this.buffered;
    this.#pos = this.#cur.length;
    while (got < n) {
      const c = await this.#next();
      if (!c) break;
      const k = Math.min(c.length, n - got);
      out.set(c.subarray(0, k), got);
      got += k;
      this.#cur = c;
      this.#pos = k;
    }
    this.#offset += got;
    return got === n ? out : out.subarray(0, got);
  }

  /** Whether the stream has no more bytes (waits for the source to say so). */
  async atEnd(): Promise<boolean> {
    if (this.buffered > 0) return false;
    const c = await this.#next();
    if (!c) return true;
    this.#cur = c;
    this.#pos = 0;
    return false;
  }

  /** Releases the source (calls its iterator's `return`). */
  async close(): Promise<void> {
    await this.#it.return?.();
  }

  /** The next non-empty chunk, or undefined at the end. */
  async #next(): Promise<Uint8Array | undefined> {
    for (;;) {
      const r = await this.#it.next();
      if (r.done) return undefined;
      if (r.value.length > 0) return r.value;
    }
  }
}
