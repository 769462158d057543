/**
 * Assertions for the tests, on top of node:assert (std/assert is not
 * reachable from here).
 *
 * @module
 */
import nodeAssert from "node:assert/strict";

/** Fails unless `cond` is truthy. */
export function assert(cond: unknown, msg?: string): asserts cond {
  nodeAssert.ok(cond, msg);
}

/** Deep, strict equality. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, msg);
}

/** `text` matches `re`. */
export function assertMatch(text: string, re: RegExp, msg?: string): void {
  nodeAssert.match(text, re, msg);
}

/** `fn` throws; an error class or predicate narrows what counts. */
export function assertThrows(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  check?: (new (...args: any[]) => Error) | ((e: unknown) => boolean),
  msg?: string,
): void {
  // deno-lint-ignore no-explicit-any
  nodeAssert.throws(fn as () => void, check as any, msg);
}

/** `fn` rejects. */
export async function assertRejects(fn: () => Promise<unknown>, msg?: string): Promise<void> {
  await nodeAssert.rejects(fn, Error, msg);
}
