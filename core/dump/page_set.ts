/**
 * A set of page indices (address / PAGE_SIZE) as a bitmap in blocks of
 * 32768 pages (128 MiB of memory, 4 KiB of bits), made as pages are added:
 * what the pre-copy rounds track for every page of a process, tested once a
 * page in each round's scan, so a test is a shift and a mask, not a hash.
 * Iteration is in ascending order.
 *
 * @module
 */

/** Pages per block. */
const BLOCK = 32768;

/** A set of page indices (non-negative integers below 2^53). */
export class PageSet implements Iterable<number> {
  readonly #blocks = new Map<number, Uint32Array>();
  #size = 0;

  /** Pages in the set. */
  get size(): number {
    return this.#size;
  }

  /** Whether page `idx` is in the set. */
  has(idx: number): boolean {
    const b = this.#blocks.get(Math.floor(idx / BLOCK));
    if (!b) return false;
    const bit = idx % BLOCK;
    return (b[bit >>> 5] & (1 << (bit & 31))) !== 0;
  }

  /** Adds page `idx`. */
  add(idx: number): void {
    const key = Math.floor(idx / BLOCK);
    let b = this.#blocks.get(key);
    if (!b) {
      b = new Uint32Array(BLOCK / 32);
      this.#blocks.set(key, b);
    }
    const bit = idx % BLOCK, mask = 1 << (bit & 31);
    if ((b[bit >>> 5] & mask) === 0) {
      b[bit >>> 5] |= mask;
      this.#size++;
    }
  }

  /** Removes page `idx`; whether it was in the set. */
  delete(idx: number): boolean {
    const b = this.#blocks.get(Math.floor(idx / BLOCK));
    if (!b) return false;
    const bit = idx % BLOCK, mask = 1 << (bit & 31);
    if ((b[bit >>> 5] & mask) === 0) return false;
    b[bit >>> 5] &= ~mask;
    this.#size--;
    return true;
  }

  /** The pages, ascending. */
  *[Symbol.iterator](): Iterator<number> {
    for (const key of [...this.#blocks.keys()].sort((a, b) => a - b)) {
      const b = this.#blocks.get(key)!;
      for (let w = 0; w < b.length; w++) {
        let word = b[w];
        while (word !== 0) {
          const low = word & -word;
          yield key * BLOCK + w * 32 + (31 - Math.clz32(low));
          word ^= low;
        }
      }
    }
  }
}
