/**
 * What encryption costs on the memory path: 4 MiB frames (the image's DATA
 * frames) through the transport's own FrameCipher, sealed and opened,
 * against two baselines measured in the same process: a plain copy of the
 * bytes, and a Poly1305 tag over them with nothing encrypted (what
 * transport protocol 2 did). Run inside a guest (`bench/cipher_main.ts`),
 * so the figures are those of the CPU that migrates.
 *
 * @module
 */
import { type CipherGCMTypes, createCipheriv, randomBytes } from "node:crypto";
import { AEAD_NAME, FrameCipher } from "../../core/transport/cipher.ts";

/** MiB/s of each way of handling 4 MiB frames. */
export interface CipherRates {
  /** Frame size, bytes. */
  frameBytes: number;
  /** Copying the bytes once. */
  copy: number;
  /** A tag only (the frame as associated data): protocol 2. */
  tagOnly: number;
  /** Sealing (encrypt + tag): the sender's work in protocol 3. */
  seal: number;
  /** Opening (check + decrypt): the receiver's work in protocol 3. */
  open: number;
}

/** MiB/s of `fn` on `frames` frames of `bytes`, best of `runs`. */
function rate(bytes: number, frames: number, runs: number, fn: () => void): number {
  let best = Infinity;
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    for (let i = 0; i < frames; i++) fn();
    best = Math.min(best, performance.now() - t0);
  }
  return (bytes * frames) / 2 ** 20 / (best / 1000);
}

/** Measures the rates on `frames` frames of `frameBytes` (default 16 x 4 MiB, best of 3). */
export function measureCipher(frameBytes = 4 << 20, frames = 16, runs = 3): CipherRates {
  const data = randomBytes(frameBytes);
  const key = randomBytes(32);
  const dst = new Uint8Array(frameBytes);
  const copy = rate(frameBytes, frames, runs, () => dst.set(data));
  let n = 0;
  const tagOnly = rate(frameBytes, frames, runs, () => {
    const nonce = new Uint8Array(12);
    new DataView(nonce.buffer).setUint32(0, n++, true);
    const a = createCipheriv(AEAD_NAME as CipherGCMTypes, key, nonce, { authTagLength: 16 });
    a.setAAD(data);
    a.final();
    a.getAuthTag();
  });
  const sealer = new FrameCipher(key);
  const sealed: { parts: Uint8Array[]; tag: Uint8Array }[] = [];
  const seal = rate(frameBytes, frames, runs, () => {
    const s = sealer.seal(2, data);
    if (sealed.length < frames * runs) sealed.push(s);
  });
  const opener = new FrameCipher(key);
  let i = 0;
  const open = rate(frameBytes, frames, runs, () => {
    const s = sealed[i++];
    if (!opener.open(2, s.parts[0], s.tag)) throw new Error("a sealed frame did not open");
  });
  return { frameBytes, copy, tagOnly, seal, open };
}

/** The note that says what encryption costs on the memory path, from the guest's rates. */
export function cipherNote(r: CipherRates): string {
  const f = (x: number) => x.toFixed(0);
  return `encryption on the memory path (node1, ${
    r.frameBytes >> 20
  } MiB frames, transport protocol 3): ` +
    `seal ${f(r.seal)} MiB/s and open ${f(r.open)} MiB/s, against a tag only (protocol 2) ` +
    `${f(r.tagOnly)} MiB/s and a copy ${f(r.copy)} MiB/s: encrypting costs ` +
    `${(r.tagOnly / r.seal).toFixed(2)}x the sender's per-byte work of tagging`;
}
