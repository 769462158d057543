/**
 * What one end of a relay sent lately, so that what a broken connection
 * lost in flight is sent again on the next one: the other end says how many
 * bytes of the stream it took (`have`), and {@link Replay.since} gives the
 * rest. Offsets count from the start of the stream; the buffer keeps the
 * last {@link Replay.limit} bytes.
 *
 * @module
 */

/** The recent bytes of one stream. */
export class Replay {
  #end = 0;
  #start = 0;
  #chunks: Uint8Array[] = [];

  /** @param limit most bytes kept (default 4 MiB) */
  constructor(readonly limit = 4 << 20) {}

  /** Bytes of the stream so far (the offset after the last one recorded). */
  get end(): number {
    return this.#end;
  }

  /** Records `chunk` as sent (before it is: a send that fails midway is covered too). */
  record(chunk: Uint8Array): void {
    this.#chunks.push(chunk);
    this.#end += chunk.length;
    while (this.#end - this.#start - this.#chunks[0].length >= this.limit) {
      this.#start += this.#chunks.shift()!.length;
    }
  }

  /**
   * The bytes from offset `have` on, and how many before them are no longer
   * kept (`lost`). An offset beyond the end (the other end counts bytes this
   * one never sent: it is another relay) gives nothing.
   */
  since(have: number): { chunks: Uint8Array[]; lost: number } {
    if (!Number.isSafeInteger(have) || have < 0 || have >= this.#end) {
      return { chunks: [], lost: 0 };
    }
    const lost = Math.max(0, this.#start - have);
    const chunks: Uint8Array[] = [];
    let at = this.#start;
    for (const c of this.#chunks) {
      const from = Math.max(have, at);
      if (from < at + c.length) chunks.push(c.subarray(from - at));
      at += c.length;
    }
    return { chunks, lost };
  }

  /**
   * Starts counting at `offset` with nothing kept: a relay opened again by a
   * new agent learns from the other end how far the stream got.
   */
  rebase(offset: number): void {
    const o = Number.isSafeInteger(offset) && offset >= 0 ? offset : 0;
    this.#end = this.#start = o;
    this.#chunks = [];
  }
}

/** Bytes each stream took at this end, sent with a reconnection: stream id → offset. */
export type StreamOffsets = Record<number, number>;

/** Checks offsets from the network: at most `streams`, each a safe non-negative integer. */
export function isOffsets(x: unknown, streams: readonly number[]): x is StreamOffsets {
  if (typeof x !== "object" || x === null || Array.isArray(x)) return false;
  const entries = Object.entries(x);
  return entries.length <= streams.length &&
    entries.every(([k, v]) =>
      streams.includes(Number(k)) && String(Number(k)) === k && Number.isSafeInteger(v) &&
      (v as number) >= 0
    );
}
