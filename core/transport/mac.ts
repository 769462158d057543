/**
 * Per-frame authentication after the handshake: every frame carries a
 * 16-byte Poly1305 tag over its kind, length and payload, made with
 * ChaCha20-Poly1305 (RFC 8439) under a key for one direction of one
 * connection, with the frame's sequence number as the nonce and the frame
 * as associated data (nothing is encrypted). Sequence numbers are implicit
 * counters, so a frame that was altered, dropped, reordered, replayed, or
 * reflected back to its sender fails the check.
 *
 * Protocol version 1 used HMAC-SHA256 here. Poly1305 is a few times faster
 * per byte, and the tag pass over every byte of a migration's memory was one
 * of the slowest steps of the memory path under TCG emulation.
 *
 * @module
 */

import { type CipherGCMTypes, createCipheriv } from "node:crypto";
import { macEqual } from "../security/secret.ts";

/** Bytes of the tag appended to each authenticated frame. */
export const TAG_BYTES = 16;

/** Bytes of a direction's key. */
export const KEY_BYTES = 32;

/**
 * The AEAD whose tag authenticates frames. Node's type declarations have no
 * overload for it; its cipher has the GCM shape (setAAD, final, getAuthTag).
 */
const AEAD = "chacha20-poly1305" as CipherGCMTypes;

/**
 * Tags the frames of one direction of a connection. Each frame's nonce is
 * its sequence number (u64 little-endian, then 4 zero bytes), so no nonce
 * repeats under a key: keys are fresh per connection and direction.
 */
export class FrameMac {
  #key: Uint8Array;
  #seq = 0;

  /** @param key the direction's key, 32 bytes */
  constructor(key: Uint8Array) {
    if (key.length !== KEY_BYTES) throw new RangeError(`frame MAC keys are ${KEY_BYTES} bytes`);
    this.#key = key.slice();
  }

  /** The sequence number of the next frame. */
  get sequence(): number {
    return this.#seq;
  }

  /**
   * The tag of the next frame in this direction; advances the counter.
   *
   * @param kind the frame kind
   * @param parts the payload, in pieces that are authenticated in order
   */
  next(kind: number, ...parts: Uint8Array[]): Uint8Array {
    let length = 0;
    for (const p of parts) length += p.length;
    const nonce = new Uint8Array(12);
    const nv = new DataView(nonce.buffer);
    nv.setUint32(0, this.#seq % 0x100000000, true);
    nv.setUint32(4, Math.floor(this.#seq / 0x100000000), true);
    this.#seq++;
    const head = new Uint8Array(5);
    head[0] = kind;
    new DataView(head.buffer).setUint32(1, length, true);
    const aead = createCipheriv(AEAD, this.#key, nonce, { authTagLength: TAG_BYTES });
    aead.setAAD(head);
    for (const p of parts) if (p.length) aead.setAAD(p);
    aead.final();
    return new Uint8Array(aead.getAuthTag());
  }

  /**
   * Checks the tag of the next frame received in this direction; advances
   * the counter either way (a mismatch ends the connection).
   */
  check(kind: number, payload: Uint8Array, tag: Uint8Array): boolean {
    return macEqual(this.next(kind, payload), tag);
  }
}
