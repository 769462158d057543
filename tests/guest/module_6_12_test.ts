/**
 * The module on the 6.12 kernel line (bookworm-backports): loads, answers
 * PPM_IOC_INFO, and restores a checkpoint (PPM_IOC_RESTORE's page filling
 * uses VFS calls whose shape changes between kernel lines).
 */
import { join } from "node:path";
import { stateDir } from "../../core/paths.ts";
import { guestPath } from "../../core/vcluster/spec.ts";
import { PPM_ABI_VERSION } from "../../ffi/uapi.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { type TestCluster, withCluster } from "../support/cluster.ts";
import { buildPrograms } from "../support/programs.ts";
import { assertSameReport, reportLines } from "../support/fd_kinds.ts";
import { pool, unsettle } from "../support/settle.ts";

/** What an uninterrupted run printed, and what the killed and restored run printed. */
interface Outputs {
  base: string;
  got: string;
  err: string;
}

/**
 * Runs `cmd(tag)` killed at tick `k` and restored (its output in
 * /tmp/TAG.out, its errors in /tmp/TAG.err) beside an uninterrupted run of
 * `cmd(TAG + "b")`; both outputs once both ended.
 */
async function killedAndRestored(
  c: TestCluster,
  cmd: (tag: string) => string,
  tag: string,
  k: number,
): Promise<Outputs> {
  const b = `${tag}b`;
  await c.ok(1, [
    "sh",
    "-c",
    `cd /tmp && (${
      cmd(b)
    } > /tmp/${b}.out 2>&1; touch /tmp/${b}.end) > /dev/null 2>&1 < /dev/null &`,
  ]);
  const pid = (await c.ok(1, [
    "sh",
    "-c",
    `cd /tmp; ${cmd(tag)} < /dev/null > /tmp/${tag}.out 2> /tmp/${tag}.err & echo $!`,
  ])).trim();
  await c.waitFor(1, `grep -q '^tick ${k} ' /tmp/${tag}.out || [ -s /tmp/${tag}.err ]`, 120);
  const ck = await c.ppm(1, ["checkpoint", pid, "-o", `/tmp/${tag}.img`, "--kill"]);
  assertEquals(ck.code, 0, `checkpoint: ${ck.stderr}`);
  const rs = await c.ppm(1, [
    "restore",
    `/tmp/${tag}.img`,
    "--stdout",
    `/tmp/${tag}.out`,
    "--stderr",
    `/tmp/${tag}.err`,
  ]);
  assertEquals(rs.code, 0, `restore: ${rs.stderr}`);
  await c.waitFor(1, `! kill -0 ${pid} 2>/dev/null`, 240);
  await c.waitFor(1, `[ -e /tmp/${b}.end ]`, 300);
  const cat = (f: string) => c.ok(1, ["cat", f]);
  return {
    base: await cat(`/tmp/${b}.out`),
    got: await cat(`/tmp/${tag}.out`),
    err: await cat(`/tmp/${tag}.err`),
  };
}

Deno.test({
  name: "guest 6.12: the module loads, answers PPM_IOC_INFO and restores a checkpoint",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const programs = await buildPrograms(join(stateDir(), "test-programs"));
    const mappings = guestPath(programs.mappings);
    await withCluster({ name: "t612", nodes: 1, kernel: "6.12", memory: 1024 }, async (c) => {
      await t.step("the module loads and reports its ABI and features", async () => {
        const load = await c.ppm(1, ["module", "load"]);
        assertEquals(load.code, 0, load.stderr);
        const s = JSON.parse(await c.ok(1, ["ppm", "module", "status", "--json"]));
        assertEquals([s.loaded, s.abi, s.device], [true, PPM_ABI_VERSION, true]);
        assertMatch(s.kernel, /^6\.12\./);
        assert(s.features.includes("info"), "PPM_IOC_INFO answered no features");
        assert(s.features.includes("redirect"), "the netfilter redirects are missing on 6.12");
      });

      // The four cycles mostly wait for their programs' ticks: two at a time, each told by its
      // step.
      const [mp, tm, th, fk] = pool([
        () =>
          killedAndRestored(c, (t) => `${mappings} 200 /tmp/${t}.priv /tmp/${t}.shared`, "mp", 10),
        () => killedAndRestored(c, () => `${guestPath(programs.timers)} 200`, "tm", 8),
        () => killedAndRestored(c, () => `${guestPath(programs.threads)} 300 4`, "th", 8),
        () => killedAndRestored(c, () => `${guestPath(programs.fd_kinds)} 150`, "fk", 10),
      ], 2);
      const sameRun = (r: Outputs, name: string) => {
        assertEquals(r.err, "");
        const lines = (s: string) => s.split("\n").filter((l) => !l.startsWith("ready "));
        assertEquals(lines(r.got), lines(r.base));
        assertMatch(r.got, new RegExp(`^ok ${name}`, "m"));
      };

      await t.step(
        "mappings (private, shared, read-only pages) killed at tick 10, restored, ends like a full run",
        async () => sameRun(unsettle(await mp), "mappings"),
      );

      await t.step(
        "threads (4 pthreads with their own ymm, TLS, rseq, robust lists) killed at tick 8, " +
          "restored, ends like a full run",
        async () => sameRun(unsettle(await th), "threads"),
      );

      await t.step(
        "timers (interval timers, POSIX timers with a gap in their ids, one aimed at a thread) " +
          "killed at tick 8, restored, ends like a full run",
        async () => sameRun(unsettle(await tm), "timers"),
      );

      await t.step(
        "fd_kinds (eventfd, timerfd, signalfd, pipes, socketpairs, memfd, epoll) killed at " +
          "tick 10, restored, reads back what an uninterrupted run reads",
        async () => {
          const r = unsettle(await fk);
          assertEquals(r.err, "");
          assertSameReport(reportLines(r.got), reportLines(r.base), 120);
          assertMatch(r.got, /^ok fd_kinds objects=16$/m);
        },
      );

      await t.step("the module unloads", async () => {
        assertEquals((await c.ppm(1, ["module", "unload"])).code, 0);
      });
    });
  },
});
