/**
 * Copies of a process's descriptors (core/dump/sockets.ts `copyFds`): one
 * the process closed since it was listed is left out when the caller looks
 * at a running process, and an error otherwise.
 */
import { copyFds } from "../../core/dump/sockets.ts";
import { close, ErrnoError } from "../../ffi/libc.ts";
import { assert, assertEquals } from "../support/assert.ts";

Deno.test("copyFds: a descriptor closed since it was listed is skipped only when asked", () => {
  // This process's own descriptors: 0, 1 and 2 are open, 1000 is not.
  const copies = copyFds(Deno.pid, [0, 1000, 2], { skipClosed: true });
  try {
    assertEquals([...copies.keys()], [0, 2]);
  } finally {
    for (const c of copies.values()) close(c);
  }
  let err: unknown;
  try {
    copyFds(Deno.pid, [0, 1000]);
  } catch (e) {
    err = e;
  }
  assert(err instanceof ErrnoError && err.code === "EBADF", String(err));
});
