/**
 * A bounded memory of the client nonces a server has seen, so a replayed
 * hello is refused while its timestamp is still acceptable.
 *
 * @module
 */

/** Remembers nonces for a while, up to a number of them. */
export class NonceCache {
  #seen = new Map<string, number>();
  #ttlMs: number;
  #capacity: number;
  #now: () => number;
  #evicted = 0;

  /**
   * @param ttlMs how long a nonce is remembered: twice the accepted clock skew
   *   covers every moment at which a replay of it could still be accepted
   * @param capacity most nonces remembered; beyond it the oldest is forgotten
   * @param now a monotonic clock in milliseconds (for tests)
   */
  constructor(ttlMs: number, capacity = 16384, now: () => number = () => performance.now()) {
    this.#ttlMs = ttlMs;
    this.#capacity = Math.max(1, capacity);
    this.#now = now;
  }

  /** Nonces remembered now. */
  get size(): number {
    this.#expire();
    return this.#seen.size;
  }

  /** Nonces forgotten early because the cache was full. */
  get evicted(): number {
    return this.#evicted;
  }

  /**
   * Records `nonce`; false if it was already recorded and has not expired.
   * Entries expire in insertion order (one TTL for all), so expiry only ever
   * looks at the oldest entries.
   */
  add(nonce: Uint8Array): boolean {
    this.#expire();
    const key = hex(nonce);
    if (this.#seen.has(key)) return false;
    if (this.#seen.size >= this.#capacity) {
      this.#seen.delete(this.#seen.keys().next().value!);
      this.#evicted++;
    }
    this.#seen.set(key, this.#now() + this.#ttlMs);
    return true;
  }

  /** Forgets `nonce` (a handshake that failed before proving anything). */
  delete(nonce: Uint8Array): void {
    this.#seen.delete(hex(nonce));
  }

  #expire(): void {
    const now = this.#now();
    for (const [key, until] of this.#seen) {
      if (until > now) break;
      this.#seen.delete(key);
    }
  }
}

/** Lowercase hex of `b`. */
function hex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}
