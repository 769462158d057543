/**
 * The record checksum of each image format version: CRC32C in version 1
 * (computed in JavaScript), CRC-32 (ISO-HDLC, the zlib and Ethernet CRC) in
 * version 2, computed natively by `node:zlib`, several times faster.
 *
 * @module
 */

import { crc32 } from "node:zlib";
import { crc32c } from "./crc32c.ts";

/** A CRC over `data`, continuing from `seed` (the CRC of the bytes before; 0 to start). */
export type Checksum = (data: Uint8Array, seed: number) => number;

/** CRC-32 (reflected polynomial 0xEDB88320), the version 2 checksum; native. */
export function crc32ieee(data: Uint8Array, seed = 0): number {
  return crc32(data, seed) >>> 0;
}

/** What each format version names and uses as its record checksum. */
export const CHECKSUMS: ReadonlyMap<number, { name: string; crc: Checksum }> = new Map([
  [1, { name: "CRC32C", crc: crc32c }],
  [2, { name: "CRC-32", crc: crc32ieee }],
]);
