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
import { withCluster } from "../support/cluster.ts";
import { buildPrograms } from "../support/programs.ts";
import { assertSameReport, reportLines } from "../support/fd_kinds.ts";

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

      await t.step(
        "mappings (private, shared, read-only pages) killed at tick 10, restored, ends like a full run",
        async () => {
          const run = (tag: string) =>
            `${mappings} 200 /tmp/${tag}.priv /tmp/${tag}.shared > /tmp/${tag}.out 2>&1`;
          await c.ok(1, ["sh", "-c", `cd /tmp && ${run("base")}`], 300_000);
          const pid = (await c.ok(1, ["sh", "-c", `cd /tmp; ${run("mp")} < /dev/null & echo $!`]))
            .trim();
          await c.waitFor(1, "grep -q '^tick 10 ' /tmp/mp.out", 120);
          const ck = await c.ppm(1, ["checkpoint", pid, "-o", "/tmp/mp.img", "--kill"]);
          assertEquals(ck.code, 0, `checkpoint: ${ck.stderr}`);
          const rs = await c.ppm(1, ["restore", "/tmp/mp.img", "--stdout", "/tmp/mp.out"]);
          assertEquals(rs.code, 0, `restore: ${rs.stderr}`);
          await c.waitFor(1, `! kill -0 ${pid} 2>/dev/null`, 240);
          const lines = (f: string) =>
            c.ok(1, ["sh", "-c", `grep -v '^ready ' /tmp/${f}.out`]).then((s) => s.split("\n"));
          const [base, got] = [await lines("base"), await lines("mp")];
          assertEquals(got, base);
          assert(got.some((l) => l.startsWith("ok mappings")), got.slice(-3).join("\n"));
        },
      );

      await t.step(
        "threads (4 pthreads with their own ymm, TLS, rseq, robust lists) killed at tick 8, " +
          "restored, ends like a full run",
        async () => {
          const tb = guestPath(programs.threads);
          await c.ok(1, [
            "sh",
            "-c",
            `cd /tmp && (${tb} 300 4 > /tmp/thb.out 2>&1; touch /tmp/thb.end) > /dev/null 2>&1 < /dev/null &`,
          ]);
          const pid = (await c.ok(1, [
            "sh",
            "-c",
            `cd /tmp; ${tb} 300 4 < /dev/null > /tmp/th.out 2>&1 & echo $!`,
          ])).trim();
          await c.waitFor(1, "grep -q '^tick 8 ' /tmp/th.out", 120);
          const ck = await c.ppm(1, ["checkpoint", pid, "-o", "/tmp/th.img", "--kill"]);
          assertEquals(ck.code, 0, `checkpoint: ${ck.stderr}`);
          const rs = await c.ppm(1, ["restore", "/tmp/th.img", "--stdout", "/tmp/th.out"]);
          assertEquals(rs.code, 0, `restore: ${rs.stderr}`);
          await c.waitFor(1, `! kill -0 ${pid} 2>/dev/null`, 240);
          await c.waitFor(1, "[ -e /tmp/thb.end ]", 300);
          const lines = (f: string) =>
            c.ok(1, ["sh", "-c", `grep -v '^ready ' /tmp/${f}.out`]).then((s) => s.split("\n"));
          const [base, got] = [await lines("thb"), await lines("th")];
          assertEquals(got, base);
          assert(got.some((l) => l.startsWith("ok threads")), got.slice(-3).join("\n"));
        },
      );

      await t.step(
        "timers (interval timers, POSIX timers with a gap in their ids, one aimed at a thread) " +
          "killed at tick 8, restored, ends like a full run",
        async () => {
          const tm = guestPath(programs.timers);
          await c.ok(1, [
            "sh",
            "-c",
            `cd /tmp && (${tm} 200 > /tmp/tmb.out 2>&1; touch /tmp/tmb.end) > /dev/null 2>&1 < /dev/null &`,
          ]);
          const pid = (await c.ok(1, [
            "sh",
            "-c",
            `cd /tmp; ${tm} 200 < /dev/null > /tmp/tm.out 2>&1 & echo $!`,
          ])).trim();
          await c.waitFor(1, "grep -q '^tick 8 ' /tmp/tm.out", 120);
          const ck = await c.ppm(1, ["checkpoint", pid, "-o", "/tmp/tm.img", "--kill"]);
          assertEquals(ck.code, 0, `checkpoint: ${ck.stderr}`);
          const rs = await c.ppm(1, ["restore", "/tmp/tm.img", "--stdout", "/tmp/tm.out"]);
          assertEquals(rs.code, 0, `restore: ${rs.stderr}`);
          await c.waitFor(1, `! kill -0 ${pid} 2>/dev/null`, 240);
          await c.waitFor(1, "[ -e /tmp/tmb.end ]", 300);
          const lines = (f: string) =>
            c.ok(1, ["sh", "-c", `grep -v '^ready ' /tmp/${f}.out`]).then((s) => s.split("\n"));
          const [base, got] = [await lines("tmb"), await lines("tm")];
          assertEquals(got, base);
          assert(got.some((l) => l.startsWith("ok timers")), got.slice(-3).join("\n"));
        },
      );

      await t.step(
        "fd_kinds (eventfd, timerfd, signalfd, pipes, socketpairs, memfd, epoll) killed at " +
          "tick 10, restored, reads back what an uninterrupted run reads",
        async () => {
          const fk = guestPath(programs.fd_kinds);
          await c.ok(1, [
            "sh",
            "-c",
            `cd /tmp && (${fk} 100 > /tmp/fkb.out 2>&1; touch /tmp/fkb.end) > /dev/null 2>&1 < /dev/null &`,
          ]);
          const pid = (await c.ok(1, [
            "sh",
            "-c",
            `cd /tmp; ${fk} 100 < /dev/null > /tmp/fk.out 2>/tmp/fk.err & echo $!`,
          ])).trim();
          await c.waitFor(1, "grep -q '^tick 10 ' /tmp/fk.out", 120);
          const ck = await c.ppm(1, ["checkpoint", pid, "-o", "/tmp/fk.img", "--kill"]);
          assertEquals(ck.code, 0, `checkpoint: ${ck.stderr}`);
          const rs = await c.ppm(1, [
            "restore",
            "/tmp/fk.img",
            "--stdout",
            "/tmp/fk.out",
            "--stderr",
            "/tmp/fk.err",
          ]);
          assertEquals(rs.code, 0, `restore: ${rs.stderr}`);
          await c.waitFor(1, `! kill -0 ${pid} 2>/dev/null`, 240);
          assertEquals(await c.ok(1, ["cat", "/tmp/fk.err"]), "");
          await c.waitFor(1, "[ -e /tmp/fkb.end ]", 300);
          const [base, got] = [
            await c.ok(1, ["cat", "/tmp/fkb.out"]),
            await c.ok(1, ["cat", "/tmp/fk.out"]),
          ];
          assertSameReport(reportLines(got), reportLines(base), 120);
          assertMatch(got, /^ok fd_kinds objects=16$/m);
        },
      );

      await t.step("the module unloads", async () => {
        assertEquals((await c.ppm(1, ["module", "unload"])).code, 0);
      });
    });
  },
});
