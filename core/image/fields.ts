/**
 * Field checks for image records: each value read from an image is checked
 * for type and range, and anything off is a clear ImageError naming the
 * record and field.
 *
 * @module
 */
import { ImageError } from "./errors.ts";

/** The error for a malformed `what`. */
export function bad(what: string, why: string): ImageError {
  return new ImageError(`malformed image: ${what}`, why);
}

/** `v` as a map, or a malformed-image error. */
export function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof Uint8Array) {
    throw bad(what, "not a map");
  }
  return v as Record<string, unknown>;
}

/** `o[k]` as an integer in `min..max`. */
export function int(
  o: Record<string, unknown>,
  k: string,
  what: string,
  min = 0,
  max = 2 ** 32,
): number {
  const v = o[k];
  const n = typeof v === "bigint" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max) {
    throw bad(what, `${k} is ${String(v)}, not an integer in ${min}..${max}`);
  }
  return n;
}

/** `o[k]` as a bigint in `0..max`. */
export function big(
  o: Record<string, unknown>,
  k: string,
  what: string,
  max = (1n << 64n) - 1n,
): bigint {
  const v = o[k];
  const n = typeof v === "number" && Number.isInteger(v) ? BigInt(v) : v;
  if (typeof n !== "bigint" || n < 0n || n > max) {
    throw bad(what, `${k} is ${String(v)}, out of range`);
  }
  return n;
}

/** `o[k]` as a string of at most `max` characters. */
export function str(o: Record<string, unknown>, k: string, what: string, max = 4096): string {
  const v = o[k];
  if (typeof v !== "string" || v.length > max) throw bad(what, `${k} is not a string`);
  return v;
}

/** `o[k]` as `min..max` bytes. */
export function bytes(
  o: Record<string, unknown>,
  k: string,
  what: string,
  min: number,
  max: number,
): Uint8Array {
  const v = o[k];
  if (!(v instanceof Uint8Array) || v.length < min || v.length > max) {
    throw bad(what, `${k} is not ${min}..${max} bytes`);
  }
  return v;
}

/** `v` as a list of at most `max` items. */
export function arr(v: unknown, what: string, max: number): unknown[] {
  if (!Array.isArray(v) || v.length > max) throw bad(what, `not a list of at most ${max}`);
  return v;
}

/** `o[k]` as an absolute path: 1..4095 bytes of UTF-8, no NUL (a name is data, never syntax). */
export function path(o: Record<string, unknown>, k: string, what: string): string {
  const v = str(o, k, what, 4095);
  if (!v.startsWith("/") || v.includes("\0") || new TextEncoder().encode(v).length > 4095) {
    throw bad(what, `${k} is not an absolute path of at most 4095 bytes without NUL`);
  }
  return v;
}
