/**
 * Frame encryption after the handshake: every frame's payload is encrypted
 * with ChaCha20-Poly1305 (RFC 8439) under a key for one direction of one
 * connection, with the frame's sequence number as the nonce and the frame's
 * header (kind and length) as associated data, and ends with the 16-byte
 * Poly1305 tag. Sequence numbers are implicit counters, so a frame that was
 * altered, dropped, reordered, replayed, or reflected back to its sender fails
 * the check.
 *
 * Protocol version 2 used the same AEAD for its tag alone (the payload went in
 * clear); version 3 encrypts, under keys from an ephemeral X25519 exchange
 * (auth.ts), so recorded traffic stays secret even if the cluster secret leaks
 * later. ChaCha20-Poly1305 rather than AES-256-GCM: Deno's node:crypto runs it
 * 6 to 7 times faster on this project's hosts (docs/transport.md).
 *
 * @module
 */

import { type CipherGCMTypes, createCipheriv, createDecipheriv } from "node:crypto";

/** Bytes of the tag that ends each encrypted frame. */
export const TAG_BYTES = 16;

/** Bytes of a direction's key. */
export const KEY_BYTES = 32;

/** The AEAD name ("chacha20-poly1305"). */
export const AEAD_NAME = "chacha20-poly1305";

/**
 * Node's type declarations have no overload for ChaCha20-Poly1305; its
 * cipher has the GCM shape (setAAD, final, getAuthTag / setAuthTag).
 */
const AEAD = AEAD_NAME as CipherGCMTypes;

/** The largest sequence number: nonces must never repeat, and counters are exact below 2^53. */
const MAX_SEQUENCE = Number.MAX_SAFE_INTEGER;

/** A sealed frame payload: the ciphertext pieces, in order, and the tag. */
export interface Sealed {
  /** The ciphertext, one piece per plaintext piece (same lengths). */
  parts: Uint8Array[];
  /** The 16-byte tag. */
  tag: Uint8Array;
}

/**
 * Encrypts or decrypts the frames of one direction of a connection (use one
 * instance per direction and side: a writer's seals, a reader's opens). Each
 * frame's nonce is its sequence number (u64 little-endian, then 4 zero
 * bytes); keys are fresh per connection and direction, so no nonce repeats
 * under a key.
 */
export class FrameCipher {
  #key: Uint8Array;
  #seq = 0;

  /** @param key the direction's key, 32 bytes */
  constructor(key: Uint8Array) {
    if (key.length !== KEY_BYTES) throw new RangeError(`frame keys are ${KEY_BYTES} bytes`);
    this.#key = key.slice();
  }

  /** The sequence number of the next frame. */
  get sequence(): number {
    return this.#seq;
  }

  /** The next nonce; advances the counter. */
  #nonce(): Uint8Array {
    if (this.#seq >= MAX_SEQUENCE) throw new RangeError("frame sequence numbers are exhausted");
    const nonce = new Uint8Array(12);
    const nv = new DataView(nonce.buffer);
    nv.setUint32(0, this.#seq % 0x100000000, true);
    nv.setUint32(4, Math.floor(this.#seq / 0x100000000), true);
    this.#seq++;
    return nonce;
  }

  /**
   * Encrypts the payload of the next frame in this direction; advances the
   * counter. The ciphertext pieces are fresh buffers.
   *
   * @param kind the frame kind (associated data, with the length)
   * @param parts the plaintext payload, in pieces encrypted in order
   */
  seal(kind: number, ...parts: Uint8Array[]): Sealed {
    let length = 0;
    for (const p of parts) length += p.length;
    const aead = createCipheriv(AEAD, this.#key, this.#nonce(), { authTagLength: TAG_BYTES });
    aead.setAAD(header(kind, length));
    const out = parts.map((p) => asPlain(aead.update(p)));
    aead.final();
    return { parts: out, tag: asPlain(aead.getAuthTag()) };
  }

  /**
   * Decrypts the payload of the next frame received in this direction into a
   * fresh buffer of its own, or returns null when the tag does not match
   * (nothing of the payload may then be used). Advances the counter either
   * way: a mismatch ends the connection.
   *
   * @param kind the frame kind from the header
   * @param ciphertext the payload as received (not kept: it may be reused afterwards)
   * @param tag the 16 bytes after it
   */
  open(kind: number, ciphertext: Uint8Array, tag: Uint8Array): Uint8Array | null {
    const nonce = this.#nonce();
    if (tag.length !== TAG_BYTES) return null;
    const aead = createDecipheriv(AEAD, this.#key, nonce, { authTagLength: TAG_BYTES });
    aead.setAAD(header(kind, ciphertext.length));
    aead.setAuthTag(tag);
    const plain = aead.update(ciphertext);
    try {
      aead.final();
    } catch {
      plain.fill(0);
      return null;
    }
    return asPlain(plain);
  }
}

/** The associated data of a frame: u8 kind | u32 LE length, as on the wire. */
function header(kind: number, length: number): Uint8Array {
  const head = new Uint8Array(5);
  head[0] = kind;
  new DataView(head.buffer).setUint32(1, length, true);
  return head;
}

/** A plain Uint8Array view of a node Buffer (same memory, no copy). */
function asPlain(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}
