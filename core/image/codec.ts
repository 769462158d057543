/**
 * msgpack encoding of record values, with 64-bit integers as bigint (so
 * addresses survive) and limits so a hostile length cannot exhaust memory.
 *
 * @module
 */

import { Decoder, Encoder } from "@msgpack/msgpack";
import { MAX_VALUE_PAYLOAD } from "./format.ts";

const encoder = new Encoder({ useBigInt64: true });

// No string, binary, array, map or extension in a payload can be longer than the payload.
const decoder = new Decoder({
  useBigInt64: true,
  maxStrLength: MAX_VALUE_PAYLOAD,
  maxBinLength: MAX_VALUE_PAYLOAD,
  maxArrayLength: MAX_VALUE_PAYLOAD,
  maxMapLength: MAX_VALUE_PAYLOAD,
  maxExtLength: MAX_VALUE_PAYLOAD,
});

/** Throws for a bigint in `v` that does not fit 64 bits (the encoder would wrap it). */
function checkBigInts(v: unknown): void {
  if (typeof v === "bigint") {
    if (v < -(1n << 63n) || v >= 1n << 64n) throw new RangeError(`${v} does not fit 64 bits`);
  } else if (Array.isArray(v)) {
    v.forEach(checkBigInts);
  } else if (v instanceof Map) {
    v.forEach((x, k) => (checkBigInts(k), checkBigInts(x)));
  } else if (v !== null && typeof v === "object" && !ArrayBuffer.isView(v)) {
    Object.values(v).forEach(checkBigInts);
  }
}

/**
 * Encodes `value` as msgpack: bigint as 64-bit integers, safe integers beyond
 * 32 bits as float64 (exact), Uint8Array as bin. The result is a view of a
 * shared buffer, valid until the next call: copy it before awaiting.
 *
 * @throws for values msgpack cannot hold, bigints beyond 64 bits, nesting deeper than 100
 */
export function encodeValue(value: unknown): Uint8Array {
  const bytes = encoder.encodeSharedRef(value); // first, as it refuses cycles
  checkBigInts(value);
  return bytes;
}

/**
 * Decodes one msgpack value that must fill `bytes` exactly; 64-bit integers
 * come back as bigint. Binary values are views of `bytes`.
 *
 * @throws RangeError or DecodeError when `bytes` is not exactly one valid value
 */
export function decodeValue(bytes: Uint8Array): unknown {
  return decoder.decode(bytes);
}
