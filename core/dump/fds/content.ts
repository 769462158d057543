/**
 * The contents of a memfd or a /dev/shm file, read with pread(2) from
 * ppm's copy of the descriptor (the process's file position stays), up to
 * the last byte that is not zero: the rest is the file's size.
 *
 * @module
 */
import { pread } from "../../../ffi/fds.ts";

const CHUNK = 1 << 20;

/** The first `size` bytes of the file behind `copy`, without trailing zeros. */
export function fileContents(copy: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let off = 0; off < size;) {
    const n = pread(copy, out.subarray(off, Math.min(size, off + CHUNK)), off);
    if (n === 0) break; // shrunk meanwhile: the rest reads as zeros
    off += n;
  }
  let end = size;
  while (end > 0 && out[end - 1] === 0) end--;
  return out.slice(0, end);
}
