/** writeAll: partial writes go on until all is written; a write that takes nothing throws. */
import { writeAll } from "../../core/host/write_all.ts";
import { assertEquals, assertMatch } from "../support/assert.ts";

Deno.test("writeAll: partial writes are continued, a write of nothing throws", async () => {
  const got: number[] = [];
  const trickle = {
    write: (p: Uint8Array) =>
      Promise.resolve((got.push(...p.subarray(0, 3)), Math.min(3, p.length))),
  };
  await writeAll(trickle, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
  assertEquals(got, [1, 2, 3, 4, 5, 6, 7, 8]);
  await writeAll(trickle, new Uint8Array(0));
  assertEquals(got.length, 8);

  let calls = 0;
  const stuck = { write: (p: Uint8Array) => Promise.resolve(calls++ ? 0 : p.length - 2) };
  let err: unknown;
  try {
    await writeAll(stuck, new Uint8Array(10));
  } catch (e) {
    err = e;
  }
  assertMatch(String(err), /a write made no progress after 8 of 10 bytes/);
  assertEquals(calls, 2);
});
