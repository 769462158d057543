/** readAhead: order kept, the next item requested early, errors and early stops handled. */
import { readAhead } from "../../core/host/ahead.ts";
import { assertEquals } from "../support/assert.ts";

Deno.test("readAhead: items in order, each next one asked for before the current is done", async () => {
  const log: string[] = [];
  async function* produce() {
    for (let i = 0; i < 3; i++) {
      log.push(`make ${i}`);
      await Promise.resolve();
      yield i;
    }
  }
  for await (const i of readAhead(produce())) {
    await new Promise((r) => setTimeout(r, 1));
    log.push(`use ${i}`);
  }
  assertEquals(log, ["make 0", "make 1", "use 0", "make 2", "use 1", "use 2"]);
});

Deno.test("readAhead: a producer's failure reaches the consumer; an early stop ends the producer", async () => {
  async function* failing() {
    yield 1;
    throw new Error("read failed");
  }
  const got: number[] = [];
  const e = await (async () => {
    for await (const i of readAhead(failing())) got.push(i);
  })().then(() => undefined, (x) => x);
  assertEquals([got, (e as Error)?.message], [[1], "read failed"]);

  let closed = false;
  async function* endless() {
    try {
      for (let i = 0;; i++) yield i;
    } finally {
      closed = true;
    }
  }
  for await (const i of readAhead(endless())) if (i === 2) break;
  assertEquals(closed, true);
});
