/**
 * msgpack for control messages: 64-bit integers as bigint, and decode limits
 * so a hostile length inside a message cannot exhaust memory.
 *
 * @module
 */

import { Decoder, Encoder } from "@msgpack/msgpack";

/** Largest CONTROL payload: one encoded message (16 MiB). */
export const MAX_CONTROL_PAYLOAD = 16 * 1024 * 1024;

const encoder = new Encoder({ useBigInt64: true });

// No string, binary, array, map or extension in a payload can be longer than the payload.
const decoder = new Decoder({
  useBigInt64: true,
  maxStrLength: MAX_CONTROL_PAYLOAD,
  maxBinLength: MAX_CONTROL_PAYLOAD,
  maxArrayLength: MAX_CONTROL_PAYLOAD,
  maxMapLength: MAX_CONTROL_PAYLOAD,
  maxExtLength: MAX_CONTROL_PAYLOAD,
});

/** Throws for a bigint in `v` that does not fit 64 bits (the encoder would wrap it). */
function checkBigInts(v: unknown, depth = 0): void {
  if (depth > 100) return; // the encoder refuses deeper nesting itself
  if (typeof v === "bigint") {
    if (v < -(1n << 63n) || v >= 1n << 64n) throw new RangeError(`${v} does not fit 64 bits`);
  } else if (Array.isArray(v)) {
    for (const x of v) checkBigInts(x, depth + 1);
  } else if (v instanceof Map) {
    v.forEach((x, k) => (checkBigInts(k, depth + 1), checkBigInts(x, depth + 1)));
  } else if (v !== null && typeof v === "object" && !ArrayBuffer.isView(v)) {
    for (const x of Object.values(v)) checkBigInts(x, depth + 1);
  }
}

/**
 * Encodes a control message as msgpack into a fresh buffer: bigint as 64-bit
 * integers, safe integers beyond 32 bits as float64 (exact), Uint8Array as bin.
 *
 * @throws RangeError or Error for values msgpack cannot hold (cycles, nesting deeper
 *   than 100, bigints beyond 64 bits)
 */
export function encodeMessage(value: unknown): Uint8Array {
  const bytes = encoder.encode(value);
  checkBigInts(value);
  return bytes;
}

/**
 * Decodes one msgpack value that must fill `bytes` exactly; 64-bit integers
 * come back as bigint. Binary values are views of `bytes`.
 *
 * @throws RangeError or DecodeError when `bytes` is not exactly one valid value
 */
export function decodeMessage(bytes: Uint8Array): unknown {
  return decoder.decode(bytes);
}
