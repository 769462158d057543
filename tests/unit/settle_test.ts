import { assert, assertEquals } from "../support/assert.ts";
import { pool, settle, unsettle } from "../support/settle.ts";

Deno.test("settle keeps a rejection for later; unsettle gives the value or throws it", async () => {
  const bad = settle(Promise.reject(new Error("boom")));
  const good = settle(Promise.resolve(7));
  assertEquals(unsettle(await good), 7);
  let thrown = "";
  try {
    unsettle(await bad);
  } catch (e) {
    thrown = (e as Error).message;
  }
  assertEquals(thrown, "boom");
});

Deno.test("pool runs at most `limit` jobs at once, starts them in order, keeps each outcome", async () => {
  let running = 0, most = 0;
  const started: number[] = [];
  const jobs = Array.from({ length: 7 }, (_, i) => async () => {
    started.push(i);
    running++;
    most = Math.max(most, running);
    await new Promise((r) => setTimeout(r, 5 + (i % 3) * 5));
    running--;
    if (i === 3) throw new Error(`job ${i} failed`);
    return i * 10;
  });
  const out = await Promise.all(pool(jobs, 3));
  assertEquals(most, 3);
  assertEquals(started, [0, 1, 2, 3, 4, 5, 6]);
  assertEquals(out.map((o) => o.ok ? o.value : -1), [0, 10, 20, -1, 40, 50, 60]);
  assert(!out[3].ok && (out[3].error as Error).message === "job 3 failed");
});
