/**
 * tests/programs/bench_anon.c, the benchmark's memory workload, on the
 * host: with THREADS it runs that many threads and prints exactly what a
 * one-thread run prints; a bad THREADS is refused.
 */
import { join } from "node:path";
import { buildProgram } from "../support/programs.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

const OUT = join(Deno.env.get("TMPDIR") ?? "/tmp", "ppm-unit-programs");

async function run(bin: string, args: string[]): Promise<Deno.CommandOutput> {
  return await new Deno.Command(bin, { args, stdout: "piped", stderr: "piped" }).output();
}

/** stdout without the `ready <pid>` line (the only line that differs between runs). */
function afterReady(out: Uint8Array): string {
  return new TextDecoder().decode(out).split("\n").filter((l) => !l.startsWith("ready ")).join(
    "\n",
  );
}

Deno.test("bench_anon: THREADS runs that many threads; the output is a one-thread run's", async () => {
  const bin = await buildProgram("bench_anon", OUT);
  const one = await run(bin, ["3", "2"]);
  assertEquals(one.code, 0, new TextDecoder().decode(one.stderr));
  assertEquals(
    afterReady(one.stdout),
    "tick 0 mib=2 stripe=0\ntick 1 mib=2 stripe=1\ntick 2 mib=2 stripe=0\nok bench_anon mib=2\n",
  );

  const child = new Deno.Command(bin, { args: ["6", "2", "8"], stdout: "piped", stderr: "piped" })
    .spawn();
  const output = child.output();
  // The threads start before `ready`; count them while the main thread ticks.
  let tasks = 0;
  for (let i = 0; i < 100 && tasks < 8; i++) {
    await new Promise((r) => setTimeout(r, 20));
    try {
      tasks = [...Deno.readDirSync(`/proc/${child.pid}/task`)].length;
    } catch { /* not yet, or ended */ }
  }
  const eight = await output;
  assertEquals(eight.code, 0, new TextDecoder().decode(eight.stderr));
  assertEquals(tasks, 8);
  assertEquals(afterReady(eight.stdout), afterReady((await run(bin, ["6", "2"])).stdout));
});

Deno.test("bench_anon: THREADS must be 1 to 64", async () => {
  const bin = await buildProgram("bench_anon", OUT);
  for (const bad of ["0", "65", "8x", ""]) {
    const r = await run(bin, ["1", "1", bad]);
    assertEquals(r.code, 1, `THREADS ${JSON.stringify(bad)}`);
    assertMatch(new TextDecoder().decode(r.stderr), /^FAIL bench_anon: bad THREADS/);
  }
  const max = await run(bin, ["1", "1", "64"]);
  assertEquals(max.code, 0, new TextDecoder().decode(max.stderr));
  const usage = await run(bin, ["1", "1", "2", "3", "4"]);
  assertEquals(usage.code, 2);
  assert(new TextDecoder().decode(usage.stderr).includes("ITERATIONS MIB [THREADS [STRIPES]]"));
  for (const bad of ["0", "65"]) {
    const r = await run(bin, ["1", "1", "1", bad]);
    assertMatch(new TextDecoder().decode(r.stderr), /^FAIL bench_anon: bad STRIPES/);
  }
  // Three stripes a tick: ticks 0 and 1 write stripes 0..5, each checked first.
  const three = await run(bin, ["2", "8", "1", "3"]);
  assertEquals(three.code, 0, new TextDecoder().decode(three.stderr));
  assertMatch(new TextDecoder().decode(three.stdout), /tick 1 mib=8 stripe=5/);
});
