/**
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of
 * image records. Slicing-by-8 over 32-bit words: about 1.5 GB/s in Deno.
 *
 * @module
 */

/** 8 tables of 256 entries: T[k*256 + b] is the CRC of byte b followed by k zero bytes. */
const T = (() => {
  const t = new Uint32Array(8 * 256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let j = 0; j < 8; j++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c;
  }
  for (let i = 256; i < t.length; i++) t[i] = (t[i - 256] >>> 8) ^ t[t[i - 256] & 255];
  return t;
})();

/**
 * The CRC32C of `data`. Pass the CRC of preceding bytes as `seed` to
 * continue it: `crc32c(b, crc32c(a))` equals the CRC of `a` then `b`.
 *
 * @param data the bytes to checksum
 * @param seed the CRC of the bytes before `data`; 0 to start
 * @returns the CRC as an unsigned 32-bit number
 */
export function crc32c(data: Uint8Array, seed = 0): number {
  let c = ~seed;
  let i = 0;
  const n = data.length;
  if (n >= 64) {
    // Align to 4 bytes, then read little-endian words (all Deno hosts are little-endian).
    while ((data.byteOffset + i) & 3) c = T[(c ^ data[i++]) & 255] ^ (c >>> 8);
    const w = new Uint32Array(data.buffer, data.byteOffset + i, ((n - i) >>> 3) << 1);
    for (let j = 0; j < w.length; j += 2) {
      const a = c ^ w[j], b = w[j + 1];
      c = T[1792 + (a & 255)] ^ T[1536 + ((a >>> 8) & 255)] ^ T[1280 + ((a >>> 16) & 255)] ^
        T[1024 + (a >>> 24)] ^ T[768 + (b & 255)] ^ T[512 + ((b >>> 8) & 255)] ^
        T[256 + ((b >>> 16) & 255)] ^ T[b >>> 24];
    }
    i += w.length * 4;
  }
  for (; i < n; i++) c = T[(c ^ data[i]) & 255] ^ (c >>> 8);
  return ~c >>> 0;
}
