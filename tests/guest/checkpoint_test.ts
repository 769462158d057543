/**
 * Checkpoint and restore on one node (6.1 guest): the C test programs, real
 * programs from Debian's packages, --leave-running, PID rules, permissions
 * and the image-size bound of the optimized total copy.
 */
import { join } from "node:path";
import { ensurePackages } from "../../core/host/packages.ts";
import { PROJECT_ROOT, stateDir } from "../../core/paths.ts";
import { runOk } from "../../core/host/run.ts";
import { guestPath } from "../../core/vcluster/spec.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { type TestCluster, withCluster } from "../support/cluster.ts";
import { buildPrograms, PROGRAMS_DIR } from "../support/programs.ts";
import { assertSameReport, reportLines } from "../support/fd_kinds.ts";
import { TEST_PACKAGES } from "../support/packages.ts";
import { pool, unsettle } from "../support/settle.ts";

const BIN = join(stateDir(), "test-programs");

/** Output lines after the `ready` line (the only one allowed to differ). */
const afterReady = (s: string) => s.split("\n").filter((l) => !l.startsWith("ready "));

/**
 * How many damaged images and restore plans the fuzz steps try: a sample in
 * the suite; `deno task soak` asks for a campaign (PPM_FUZZ_IMAGES, PPM_FUZZ_PLANS).
 */
const IMAGE_CASES = Number(Deno.env.get("PPM_FUZZ_IMAGES") ?? 200);
const PLAN_CASES = Number(Deno.env.get("PPM_FUZZ_PLANS") ?? 1000);

/** Checkpoint/restore cycles of the test programs that run at once. */
const CYCLES_AT_ONCE = 3;

interface Cycle {
  pid: string;
  out: string;
  err: string;
  checkpoint: Record<string, unknown>;
}

/**
 * Starts `cmd` (a shell command line) with stdout/stderr to files, waits for
 * `tick K`, checkpoints it with --kill, restores it appending to the same
 * files, and waits until it ends.
 */
async function cycle(
  c: TestCluster,
  name: string,
  cmd: string,
  k: number,
  stdin = "/dev/null",
  extra: string[] = [],
): Promise<Cycle> {
  const out = `/tmp/${name}.out`, err = `/tmp/${name}.err`, img = `/tmp/${name}.img`;
  const pid =
    (await c.ok(1, ["sh", "-c", `cd /tmp; ${cmd} < ${stdin} > ${out} 2> ${err} & echo $!`]))
      .trim();
  await c.waitFor(1, `grep -q '^tick ${k} ' ${out} || grep -q FAIL ${err}`, 120);
  const ck = await c.ppm(1, ["checkpoint", pid, "-o", img, "--kill", "--json", ...extra]);
  assertEquals(ck.code, 0, `checkpoint of ${name}: ${ck.stderr}`);
  const rs = await c.ppm(1, ["restore", img, "--stdout", out, "--stderr", err, "--json"]);
  assertEquals(rs.code, 0, `restore of ${name}: ${rs.stderr}`);
  assertEquals(String(JSON.parse(rs.stdout).pid), pid, "the restored process has another PID");
  await c.waitFor(1, `! kill -0 ${pid} 2>/dev/null`, 240);
  return {
    pid,
    out: await c.ok(1, ["cat", out]),
    err: await c.ok(1, ["cat", err]),
    checkpoint: JSON.parse(ck.stdout),
  };
}

Deno.test({
  name: "guest 6.1: checkpoint and restore",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const programs = await buildPrograms(BIN);
    const fuzzer = join(BIN, "plan_fuzz");
    await runOk("gcc", [
      "-O2",
      "-Wall",
      "-Werror",
      "-o",
      fuzzer,
      join(PROJECT_ROOT, "tests/guest/fuzz/plan_fuzz.c"),
    ], "plan_fuzz");
    await ensurePackages(TEST_PACKAGES.checkpoint, "the checkpoint tests");
    const bin = (p: string) => guestPath(programs[p]);
    const script = (f: string) => guestPath(join(PROGRAMS_DIR, f));
    await withCluster({ name: "tcr", nodes: 1, kernel: "6.1", memory: 1536 }, async (c) => {
      assertEquals((await c.ppm(1, ["module", "load"])).code, 0);

      // Longest first: the cycles run CYCLES_AT_ONCE at a time. Each program runs at least 150
      // ticks of 100 ms (sleeper: 100 of 300 ms), so that a checkpoint slowed by the cycles
      // beside it still freezes it well before its end.
      const cases: [string, string, number][] = [
        ["sleeper", `${bin("sleeper")} 100`, 5],
        ["node_loop", `node ${script("node_loop.js")} 150`, 10],
        ["py_threads", `python3 -u ${script("py_threads.py")} 150`, 10],
        ["threads", `${bin("threads")} 150 4`, 8],
        ["openmp", `OMP_NUM_THREADS=4 ${bin("openmp")} 150`, 8],
        ["brk_stack", `${bin("brk_stack")} 150`, 10],
        ["heap_counter", `${bin("heap_counter")} 150`, 10],
        ["avx_compute", `${bin("avx_compute")} 150`, 10],
        ["signal_handler", `${bin("signal_handler")} 150`, 10],
        ["file_writer", `${bin("file_writer")} 150 /tmp/fw.data /tmp/fw.log`, 10],
        // Frozen with no room below its stack pointer (a stack that just grew).
        ["stack_edge", `${bin("stack_edge")} 150`, 10],
        ["mappings", `${bin("mappings")} 150 /tmp/mp.priv /tmp/mp.shared`, 10],
        ["timers", `${bin("timers")} 150`, 8],
      ];
      // Uninterrupted runs, all at once, for the byte-for-byte comparison.
      const baseCmd = cases.map(([n, cmd]) =>
        `(${
          cmd.replaceAll("/tmp/fw.", "/tmp/base-fw.").replaceAll("/tmp/mp.", "/tmp/base-mp.")
        } > /tmp/base-${n}.out 2>&1) &`
      ).join(" ");
      await c.ok(1, ["sh", "-c", `cd /tmp && ${baseCmd} wait`], 600_000);

      // The cycles mostly wait for their programs' ticks: several at once, each told by its step.
      // Then fd_kinds (its uninterrupted run first: its report has timer values) and the
      // --copy-all image of heap_counter.
      const fk = bin("fd_kinds");
      const hc = cases.find(([n]) => n === "heap_counter")!;
      const cycles = pool([
        ...cases.map(([name, cmd, k]) => () => cycle(c, name, cmd, k)),
        async () => {
          await c.ok(1, ["sh", "-c", `cd /tmp; ${fk} 150 > /tmp/base-fd_kinds.out 2>&1`], 300_000);
          return await cycle(c, "fd_kinds", `${fk} 150`, 10);
        },
        () => cycle(c, "copy_all", hc[1], hc[2], "/dev/null", ["--copy-all"]),
      ], CYCLES_AT_ONCE);
      const [fdKinds, copyAll] = cycles.slice(cases.length);
      const imageBytes: Record<string, number> = {};
      for (const [i, [name, , k]] of cases.entries()) {
        await t.step(
          `${name}: killed at tick ${k}, restored, finishes exactly like an uninterrupted run`,
          async () => {
            const r = unsettle(await cycles[i]);
            assertEquals(r.err, "", `${name} reported: ${r.err}`);
            const base = await c.ok(1, ["cat", `/tmp/base-${name}.out`]);
            assertEquals(afterReady(r.out), afterReady(base));
            assertMatch(r.out, new RegExp(`^ok ${name}`, "m"));
            imageBytes[name] = r.checkpoint.imageBytes as number;
          },
        );
      }

      await t.step(
        "fd_kinds: eventfds, timerfds, a signalfd, pipes, socketpairs, memfds and an epoll set " +
          "killed at tick 10, restored, read back as an uninterrupted run reads them",
        async () => {
          const r = unsettle(await fdKinds);
          assertEquals(r.err, "", `fd_kinds reported: ${r.err}`);
          const base = await c.ok(1, ["cat", "/tmp/base-fd_kinds.out"]);
          assertSameReport(reportLines(r.out), reportLines(base), 120);
          assertMatch(r.out, /^ok fd_kinds objects=16$/m);
        },
      );

      await t.step(
        "--copy-all carries code and library pages too, and its image restores the same",
        async () => {
          const r = unsettle(await copyAll);
          assertEquals(r.err, "", r.err);
          const base = await c.ok(1, ["cat", "/tmp/base-heap_counter.out"]);
          assertEquals(afterReady(r.out), afterReady(base));
          const all = r.checkpoint.imageBytes as number, opt = imageBytes.heap_counter;
          // The resident code of the program, ld.so and libc is in it; the optimized copy leaves it out.
          assert(all > opt + 64 * 1024, `--copy-all ${all} bytes, optimized ${opt} bytes`);
          console.log(`  image: optimized ${opt} bytes, --copy-all ${all} bytes`);
        },
      );

      await t.step("pipe_reader: blocked in read on a pipe, restored onto a new pipe", async () => {
        const feed = (from: number) =>
          `i=${from}; while [ $i -lt 100 ]; do n=0; while [ $i -gt 0 ] && ! grep -q "^tick $((i-1)) " /tmp/pr.out && [ $n -lt 200 ]; do sleep 0.05; n=$((n+1)); done; echo "line $i" || exit 0; i=$((i+1)); done`;
        const pid = (await c.ok(1, [
          "sh",
          "-c",
          `cd /tmp; (${feed(0)}) | ${bin("pipe_reader")} 100 > /tmp/pr.out 2>/tmp/pr.err & echo $!`,
        ]))
          .trim();
        await c.waitFor(1, "grep -q '^tick 10 ' /tmp/pr.out", 120);
        const ck = await c.ppm(1, ["checkpoint", pid, "-o", "/tmp/pr.img", "--kill"]);
        assertEquals(ck.code, 0, ck.stderr);
        const last = Number(
          (await c.ok(1, ["sh", "-c", "grep '^tick' /tmp/pr.out | tail -1 | cut -d' ' -f2"]))
            .trim(),
        );
        const rs = await c.exec(1, [
          "sh",
          "-c",
          `cd /tmp; (${
            feed(last + 1)
          }) | ppm restore /tmp/pr.img --stdout /tmp/pr.out --stderr /tmp/pr.err`,
        ], 300_000);
        assertEquals(rs.code, 0, rs.stderr);
        await c.waitFor(1, `! kill -0 ${pid} 2>/dev/null`, 120);
        assertEquals(await c.ok(1, ["cat", "/tmp/pr.err"]), "");
        assertMatch(await c.ok(1, ["cat", "/tmp/pr.out"]), /^ok pipe_reader/m);
      });

      await t.step(
        "python3 computing and printing, restored: output identical to an uninterrupted run",
        async () => {
          const script =
            "import time\\nfor i in range(80):\\n    print(i, sum(j * j for j in range(i * 2000)), flush=True)\\n    time.sleep(0.2)\\n";
          // The uninterrupted run goes on beside the one that is checkpointed.
          await c.ok(1, [
            "sh",
            "-c",
            `printf '${script}' > /tmp/calc.py && ` +
            "(python3 /tmp/calc.py > /tmp/base-py.out; touch /tmp/base-py.done) > /dev/null 2>&1 &",
          ]);
          const pid = (await c.ok(1, [
            "sh",
            "-c",
            "cd /tmp; python3 /tmp/calc.py > /tmp/py.out 2>/tmp/py.err < /dev/null & echo $!",
          ])).trim();
          await c.waitFor(1, "grep -q '^8 ' /tmp/py.out", 120);
          assertEquals(
            (await c.ppm(1, ["checkpoint", pid, "-o", "/tmp/py.img", "--kill"])).code,
            0,
          );
          const rs = await c.ppm(1, [
            "restore",
            "/tmp/py.img",
            "--stdout",
            "/tmp/py.out",
            "--stderr",
            "/tmp/py.err",
          ]);
          assertEquals(rs.code, 0, rs.stderr);
          await c.waitFor(1, `! kill -0 ${pid} 2>/dev/null`, 240);
          await c.waitFor(1, "[ -e /tmp/base-py.done ]", 240);
          assertEquals(
            await c.ok(1, ["cat", "/tmp/py.out"]),
            await c.ok(1, ["cat", "/tmp/base-py.out"]),
          );
          assertEquals(await c.ok(1, ["cat", "/tmp/py.err"]), "");
        },
      );

      await t.step("bc computing digits of pi, restored: output identical", async () => {
        // The uninterrupted run goes on beside the one that is checkpointed.
        await c.ok(1, [
          "sh",
          "-c",
          "echo 'scale=3000; 4*a(1)' > /tmp/pi.bc && " +
          "(bc -l /tmp/pi.bc > /tmp/base-bc.out; touch /tmp/base-bc.done) > /dev/null 2>&1 &",
        ]);
        const pid = (await c.ok(1, [
          "sh",
          "-c",
          "cd /tmp; bc -l /tmp/pi.bc > /tmp/bc.out 2>/tmp/bc.err < /dev/null & echo $!",
        ]))
          .trim();
        await new Promise((r) => setTimeout(r, 1500));
        const ck = await c.ppm(1, ["checkpoint", pid, "-o", "/tmp/bc.img", "--kill"]);
        assertEquals(
          ck.code,
          0,
          `bc finished before the checkpoint or could not be frozen: ${ck.stderr}`,
        );
        const rs = await c.ppm(1, [
          "restore",
          "/tmp/bc.img",
          "--stdout",
          "/tmp/bc.out",
          "--stderr",
          "/tmp/bc.err",
        ]);
        assertEquals(rs.code, 0, rs.stderr);
        await c.waitFor(1, `! kill -0 ${pid} 2>/dev/null`, 600);
        await c.waitFor(1, "[ -e /tmp/base-bc.done ]", 600);
        assertEquals(
          await c.ok(1, ["cat", "/tmp/bc.out"]),
          await c.ok(1, ["cat", "/tmp/base-bc.out"]),
        );
      });

      await t.step(
        "--leave-running, then restore after the original exited: both runs are correct",
        async () => {
          const cmd = `${bin("heap_counter")} 150`;
          // stdout is a pipe, so that the restored run's output can go elsewhere (--stdout). An
          // uninterrupted run beside it, for the comparison.
          await c.ok(1, [
            "sh",
            "-c",
            `cd /tmp; rm -f /tmp/lrb.end; (${cmd} > /tmp/lrb.out 2>&1; touch /tmp/lrb.end) ` +
            `>/dev/null 2>&1 </dev/null & (${cmd} 2>&1 | cat > /tmp/lr.out) >/dev/null 2>&1 &`,
          ]);
          await c.waitFor(1, "grep -q '^ready ' /tmp/lr.out", 60);
          const pid = (await c.ok(1, ["sh", "-c", "head -1 /tmp/lr.out | cut -d' ' -f2"])).trim();
          await c.waitFor(1, "grep -q '^tick 5 ' /tmp/lr.out", 120);
          const ck = await c.ppm(1, [
            "checkpoint",
            pid,
            "-o",
            "/tmp/lr.img",
            "--leave-running",
            "--json",
          ]);
          assertEquals(ck.code, 0, ck.stderr);
          assertEquals(JSON.parse(ck.stdout).leftRunning, true);
          const atCheckpoint = Number(
            (await c.ok(1, ["sh", "-c", "grep -c '^tick' /tmp/lr.out"])).trim(),
          );
          await c.waitFor(1, `! kill -0 ${pid} 2>/dev/null`, 240);
          await c.waitFor(1, "[ -e /tmp/lrb.end ]", 240);
          const base = await c.ok(1, ["cat", "/tmp/lrb.out"]);
          assertEquals(afterReady(await c.ok(1, ["cat", "/tmp/lr.out"])), afterReady(base));
          const rs = await c.ppm(1, [
            "restore",
            "/tmp/lr.img",
            "--stdout",
            "/tmp/lr2.out",
            "--stderr",
            "/tmp/lr2.out",
          ]);
          assertEquals(rs.code, 0, rs.stderr);
          await c.waitFor(1, `! kill -0 ${pid} 2>/dev/null`, 240);
          const rest = (await c.ok(1, ["cat", "/tmp/lr2.out"])).split("\n");
          const baseLines = afterReady(base);
          assert(rest.length > 2, "the restored run printed nothing");
          const firstTick = Number(rest[0].split(" ")[1]);
          // The image holds the state at the freeze: after tick 5, before the ticks seen once
          // the checkpoint had returned (the original ran on meanwhile).
          assert(firstTick > 5 && firstTick <= atCheckpoint, `restored from tick ${firstTick}`);
          assertEquals(rest, baseLines.slice(baseLines.indexOf(rest[0])));
        },
      );

      await t.step(
        "timers: checkpointed twice with --leave-running (their timers read by calls run in the " +
          "frozen process), it runs on untouched, its output that of an uninterrupted run",
        async () => {
          // A tick is 200 ms or more here (every timer fires between two), a checkpoint's CLI
          // takes seconds: 200 ticks outlast two.
          const cmd = `${bin("timers")} 200`;
          // An uninterrupted run beside it, for the comparison.
          await c.ok(1, [
            "sh",
            "-c",
            `cd /tmp; (${cmd} > /tmp/tlrb.out 2>&1; touch /tmp/tlrb.end) >/dev/null 2>&1 </dev/null &` +
            ` (${cmd} 2>&1 | cat > /tmp/tlr.out) >/dev/null 2>&1 &`,
          ]);
          await c.waitFor(1, "grep -q '^ready ' /tmp/tlr.out", 60);
          const pid = (await c.ok(1, ["sh", "-c", "head -1 /tmp/tlr.out | cut -d' ' -f2"])).trim();
          for (const [i, tick] of [5, 30].entries()) {
            await c.waitFor(1, `grep -q '^tick ${tick} ' /tmp/tlr.out`, 120);
            const ck = await c.ppm(1, [
              "checkpoint",
              pid,
              "-o",
              `/tmp/tlr${i}.img`,
              "--leave-running",
              "--json",
            ]);
            assertEquals(ck.code, 0, ck.stderr);
            assertEquals(JSON.parse(ck.stdout).leftRunning, true);
            const info = JSON.parse(
              await c.ok(1, ["ppm", "image", "inspect", `/tmp/tlr${i}.img`, "--json"]),
            );
            // Three interval timers, and POSIX timers with a gap in their ids.
            assertEquals(info.timers.itimers.length, 3, JSON.stringify(info.timers));
            assert(info.timers.posix.length >= 4, JSON.stringify(info.timers));
          }
          await c.waitFor(1, `! kill -0 ${pid} 2>/dev/null`, 300);
          await c.waitFor(1, "[ -e /tmp/tlrb.end ]", 300);
          const base = await c.ok(1, ["cat", "/tmp/tlrb.out"]);
          const out = await c.ok(1, ["cat", "/tmp/tlr.out"]);
          assertEquals(afterReady(out), afterReady(base));
          assertMatch(out, /^ok timers ticks=200$/m);
        },
      );

      await t.step(
        "restore is refused while the PID is taken, and leaves nothing behind",
        async () => {
          const pid = (await c.ok(1, [
            "sh",
            "-c",
            `cd /tmp; ${bin("heap_counter")} 600 > /tmp/pt.out 2>&1 & echo $!`,
          ])).trim();
          try {
            await c.waitFor(1, "grep -q '^tick 2 ' /tmp/pt.out", 120);
            assertEquals((await c.ppm(1, ["checkpoint", pid, "-o", "/tmp/pt.img"])).code, 0);
            const before = await c.ok(1, ["sh", "-c", "pgrep -x heap_counter | sort; true"]);
            const rs = await c.ppm(1, ["restore", "/tmp/pt.img"]);
            assertEquals(rs.code, 6, rs.stderr);
            assertMatch(rs.stderr, new RegExp(`PID ${pid} is taken`));
            assertEquals(await c.ok(1, ["sh", "-c", "pgrep -x heap_counter | sort; true"]), before);
          } finally {
            await c.exec(1, ["kill", pid]);
          }
        },
      );

      await t.step(
        "a mapped file that changed since the checkpoint is a clear error, with nothing half-restored",
        async () => {
          await c.ok(1, ["cp", bin("heap_counter"), "/tmp/hc-copy"]);
          const pid =
            (await c.ok(1, ["sh", "-c", "cd /tmp; /tmp/hc-copy 600 > /tmp/hc.out 2>&1 & echo $!"]))
              .trim();
          await c.waitFor(1, "grep -q '^tick 2 ' /tmp/hc.out", 120);
          assertEquals(
            (await c.ppm(1, ["checkpoint", pid, "-o", "/tmp/hc.img", "--kill"])).code,
            0,
          );
          const info = JSON.parse(
            await c.ok(1, ["ppm", "image", "inspect", "/tmp/hc.img", "--json"]),
          );
          assertEquals(info.task.exe, "/tmp/hc-copy");
          await c.ok(1, ["sh", "-c", "printf x >> /tmp/hc-copy"]);
          const rs = await c.ppm(1, ["restore", "/tmp/hc.img"]);
          assertEquals(rs.code, 5, rs.stderr);
          assertMatch(rs.stderr, /\/tmp\/hc-copy changed since the checkpoint/);
          assertEquals(
            (await c.exec(1, ["kill", "-0", pid])).code,
            1,
            "something was left running",
          );
          // With the file as it was, the same image restores, exe link included.
          await c.ok(1, ["sh", "-c", `cp ${bin("heap_counter")} /tmp/hc-copy`]);
          const ok = await c.ppm(1, ["restore", "/tmp/hc.img", "--stdout", "/tmp/hc.out"]);
          assertEquals(ok.code, 0, ok.stderr);
          assertEquals((await c.ok(1, ["readlink", `/proc/${pid}/exe`])).trim(), "/tmp/hc-copy");
          await c.ok(1, ["kill", pid]);
        },
      );

      await t.step(
        "checkpoint --check names every reason; a non-root user cannot checkpoint another's process",
        async () => {
          const ok =
            (await c.ok(1, ["sh", "-c", `${bin("heap_counter")} 600 >/dev/null 2>&1 & echo $!`]))
              .trim();
          const r = await c.ppm(1, ["checkpoint", "--check", ok]);
          assertEquals(r.code, 0, r.stdout);
          const sock = (await c.ok(1, [
            "sh",
            "-c",
            "python3 -c 'import socket,time; s=socket.socket(); time.sleep(300)' & echo $!",
          ])).trim();
          try {
            const bad = await c.ppm(1, ["checkpoint", "--check", sock, "--json"]);
            assertEquals(bad.code, 1);
            assert(
              JSON.parse(bad.stdout).reasons.some((x: string) => /socket/.test(x)),
              bad.stdout,
            );
            // A process of uid 1000, and ppm run as uid 1001.
            const other = (await c.ok(1, [
              "sh",
              "-c",
              "setpriv --reuid=1000 --regid=1000 --clear-groups sleep 300 & echo $!",
            ])).trim();
            try {
              const deny = await c.exec(1, [
                "sh",
                "-c",
                // uid 1001 runs the guest's ppm (root's Deno and a self-contained bundle) from a
                // copy of its own: the state directory that holds the original is root's, 0700.
                "chmod 755 /root && rm -rf /tmp/d1001 && mkdir -p /tmp/d1001/bin && " +
                'w=$(command -v ppm) && cp -r "$(dirname "$w")/js" /tmp/d1001/bin/ && ' +
                `sed "s#^js='[^']*'#js='/tmp/d1001/bin/js'#" "$w" > /tmp/d1001/bin/ppm && ` +
                "chmod 755 /tmp/d1001/bin/ppm && chown -R 1001:1001 /tmp/d1001 && " +
                "setpriv --reuid=1001 --regid=1001 --clear-groups " +
                "env HOME=/tmp/d1001 DENO_DIR=/tmp/d1001/deno " +
                `/tmp/d1001/bin/ppm checkpoint ${other} -o /tmp/x.img`,
              ], 400_000);
              assertEquals(deny.code, 3, deny.stderr + deny.stdout);
              assertMatch(deny.stderr, /does not let you trace it/);
            } finally {
              await c.exec(1, ["kill", other]);
            }
          } finally {
            await c.exec(1, ["kill", ok, sock]);
          }
        },
      );

      await t.step(
        `${IMAGE_CASES} damaged images: each gets a clear error, nothing is left behind`,
        async () => {
          const pid = (await c.ok(1, [
            "sh",
            "-c",
            `cd /tmp; ${bin("sleeper")} 600 > /tmp/fz.out 2>&1 & echo $!`,
          ]))
            .trim();
          await c.waitFor(1, "grep -q '^tick 2 ' /tmp/fz.out", 120);
          assertEquals(
            (await c.ppm(1, ["checkpoint", pid, "-o", "/tmp/fz.img", "--kill"])).code,
            0,
          );
          const before = await c.ok(1, ["sh", "-c", "pgrep -x sleeper | sort; true"]);
          const r = await c.deno(
            1,
            "tests/guest/fuzz/image_fuzz.ts",
            ["/tmp/fz.img", String(IMAGE_CASES), "7"],
            1_800_000 + IMAGE_CASES * 200,
          );
          assertEquals(r.code, 0, r.stderr);
          const sum = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
          console.log(`  image fuzz: ${JSON.stringify(sum)}`);
          assertEquals(sum.cases, IMAGE_CASES);
          assertEquals(sum.other, 0, "some damaged images caused an unexpected exception");
          assertEquals(await c.ok(1, ["sh", "-c", "pgrep -x sleeper | sort; true"]), before);
        },
      );

      await t.step(
        `${PLAN_CASES} damaged restore plans: the module refuses or kills, never oopses`,
        async () => {
          const plan = await c.deno(1, "tests/guest/fuzz/make_plan.ts", [
            "/tmp/fz.img",
            "/tmp/fz.plan",
          ], 300_000);
          assertEquals(plan.code, 0, plan.stderr);
          const r = await c.exec(1, [
            guestPath(fuzzer),
            "/tmp/fz.plan",
            bin("sleeper"),
            String(PLAN_CASES),
            "12345",
          ], 1_800_000 + PLAN_CASES * 50);
          assertEquals(r.code, 0, r.stderr);
          const sum = JSON.parse(r.stdout);
          console.log(`  plan fuzz: ${JSON.stringify(sum)}`);
          assertEquals(sum.cases, PLAN_CASES);
          assertEquals(sum.other, 0);
          assert(
            sum.refused > PLAN_CASES / 4 && sum.killed > PLAN_CASES / 20,
            "the damage did not reach the deeper checks",
          );
        },
      );

      await t.step(
        "image size: 64 MiB written + libraries stays under 1.02 × 64 MiB + 1 MiB",
        async () => {
          const pid = (await c.ok(1, [
            "sh",
            "-c",
            `cd /tmp; ${bin("anon_memory")} 600 64 > /tmp/am.out 2>&1 & echo $!`,
          ])).trim();
          try {
            await c.waitFor(1, "grep -q '^tick 0 ' /tmp/am.out", 240);
            const ck = await c.ppm(1, ["checkpoint", pid, "-o", "/tmp/am.img", "--json"], 300_000);
            assertEquals(ck.code, 0, ck.stderr);
            const size = Number((await c.ok(1, ["stat", "-c", "%s", "/tmp/am.img"])).trim());
            const bound = 1.02 * 64 * 2 ** 20 + 2 ** 20;
            console.log(
              `  image of a 64 MiB process: ${(size / 2 ** 20).toFixed(2)} MiB (bound ${
                (bound / 2 ** 20).toFixed(2)
              } MiB)`,
            );
            assert(size < bound, `image is ${size} bytes`);
            assert(size > 64 * 2 ** 20, "the written memory is missing from the image");
            const inspect = JSON.parse(
              await c.ok(1, ["ppm", "image", "inspect", "/tmp/am.img", "--json"]),
            );
            assert(
              inspect.vmas.some((v: { kind: string; path: string | null }) =>
                v.kind === "file" && /libc/.test(v.path ?? "")
              ),
            );
          } finally {
            await c.exec(1, ["kill", pid]);
          }
        },
      );
    });
  },
});
