/**
 * Where each page a migration's pre-copy rounds sent is held (its slot, in
 * pages, in the store): page index → slot, in blocks of 32768 pages (128
 * MiB of memory) of typed arrays made as pages come. Setting a page is a
 * store into an array, not a hash map's insert, so a 1 GiB process's
 * 262144 pages cost milliseconds at the freeze, not seconds.
 *
 * @module
 */

/** Pages per block. */
const BLOCK = 32768;

/** Page index → slot (0 .. 2^32 - 2). */
export class SlotMap {
  /** Per block: slot + 1 for each page, 0 where none. */
  readonly #blocks = new Map<number, Uint32Array>();
  #size = 0;

  /** Pages with a slot. */
  get size(): number {
    return this.#size;
  }

  /** The slot of page `idx`, undefined when it has none. */
  get(idx: number): number | undefined {
    const b = this.#blocks.get(Math.floor(idx / BLOCK));
    const v = b ? b[idx % BLOCK] : 0;
    return v === 0 ? undefined : v - 1;
  }

  /** Sets the slot of page `idx`. */
  set(idx: number, slot: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= 0xffffffff) {
      throw new RangeError(`slot ${slot} out of range`);
    }
    const key = Math.floor(idx / BLOCK);
    let b = this.#blocks.get(key);
    if (!b) {
      b = new Uint32Array(BLOCK);
      this.#blocks.set(key, b);
    }
    if (b[idx % BLOCK] === 0) this.#size++;
    b[idx % BLOCK] = slot + 1;
  }

  /** Calls `f` for each page with a slot, pages ascending. */
  forEach(f: (idx: number, slot: number) => void): void {
    for (const key of [...this.#blocks.keys()].sort((a, b) => a - b)) {
      const b = this.#blocks.get(key)!;
      const base = key * BLOCK;
      for (let i = 0; i < BLOCK; i++) if (b[i] !== 0) f(base + i, b[i] - 1);
    }
  }
}
