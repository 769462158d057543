/**
 * Migration between three 6.1 guests running `ppm daemon`:
 *
 * - peers find each other;
 * - a compute program goes node1 → node2 → node3 → node1 while it runs, and
 *   its output keeps reaching the file it wrote on node1, with no gap and no
 *   repeat;
 * - a process that writes all the time moves after pre-copy rounds: the
 *   freeze sends only what it wrote since the last round, and its memory
 *   checks out word for word;
 * - Debian's python3 moves mid-run and finishes with the right result;
 * - Debian's cat moves while reading a FIFO on node1: its stdin and stdout
 *   are relayed, so lines written on node1 come back out on node1;
 * - processes whose parent (a shell) waits for them move node1 → node2 and
 *   leave their deputies on node1 (same PID and parent; `ppm ps` shows them
 *   and node2): a signal sent to a deputy reaches its process on node2, the
 *   parent's `wait` sees the real status (exit 7, SIGTERM); one comes back
 *   to node1 into its deputy (the shell's child again, its output going on),
 *   and is ended there by SIGTERM, which the shell's `wait` sees;
 * - failure injection at each phase (the destination refuses, its agent dies
 *   mid-transfer, the link is cut, the restore fails, its agent dies before
 *   the confirmation): the process runs on at the source every time, with no
 *   copy left at the destination and no gap or repeat in its output;
 * - a connection with the wrong secret is refused and logged.
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { PPM_ABI_VERSION } from "../../ffi/uapi.ts";
import { ensurePackages } from "../../core/host/packages.ts";
import { stateDir } from "../../core/paths.ts";
import { generateSecret } from "../../core/security/secret.ts";
import { setLink } from "../../core/vcluster/network.ts";
import { guestPath, netnsName } from "../../core/vcluster/spec.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { highPids, type TestCluster, withCluster } from "../support/cluster.ts";
import { buildPrograms } from "../support/programs.ts";
import { assertSameReport, reportLines } from "../support/fd_kinds.ts";
import { Agents } from "./support/agents.ts";
import { lives, migrate } from "./support/migration.ts";
import { TEST_PACKAGES } from "../support/packages.ts";

const CLUSTER = "tmig";
const NODES = [1, 2, 3];

/** Checks that the tick lines of `out` run 0, 1, 2, ... with no gap and no repeat. */
function assertContinuous(out: string, atLeast: number): number[] {
  const ticks = out.split("\n").filter((l) => l.startsWith("tick ")).map((l) =>
    Number(l.split(" ")[1])
  );
  ticks.forEach((t, i) => assertEquals(t, i, `tick ${i} is ${t}: a gap or a repeat`));
  assert(ticks.length >= atLeast, `only ${ticks.length} ticks`);
  return ticks;
}

/** The number of tick lines in node n's file `path`. */
async function tickCount(c: TestCluster, n: number, path: string): Promise<number> {
  const r = await c.exec(n, ["sh", "-c", `grep -c '^tick ' ${path}`]);
  return Number(r.stdout.trim() || "0");
}

/** Waits until node n's file `path` has `more` tick lines beyond what it has now. */
async function waitTicks(c: TestCluster, n: number, path: string, more: number): Promise<void> {
  const want = (await tickCount(c, n, path)) + more;
  await c.waitFor(n, `[ $(grep -c '^tick ' ${path}) -ge ${want} ]`, 180);
}

/**
 * The shell that stands for a parent who waits: runs its arguments as a child
 * (output in /tmp/TAG.out), writes its PID to /tmp/TAG.pid, waits for it and
 * writes the status `wait` gave to /tmp/TAG.rc (128 + N for signal N). TAG is $0.
 */
const WAITING_PARENT = [
  'tag="$0"',
  '"$@" < /dev/null > "/tmp/$tag.out" 2>&1 &',
  'echo $! > "/tmp/$tag.pid"',
  "wait $!",
  'echo $? > "/tmp/$tag.rc"',
].join("\n");

/**
 * Checks that node `home` holds the deputy of `pid` (named `comm`): the
 * deputy program, under the same name, with parent `ppid`, not a zombie.
 */
async function assertDeputy(
  c: TestCluster,
  home: number,
  pid: string,
  comm: string,
  ppid: string,
): Promise<void> {
  const cmdline = (await c.ok(home, ["sh", "-c", `tr '\\0' ' ' < /proc/${pid}/cmdline`])).trim();
  assertMatch(cmdline, new RegExp(`^ppm-deputy:${comm} /run/ppm-deputy/link\\.sock ${comm}`));
  const r = await c.exec(home, ["sh", "-c", lives(pid, comm)]);
  assertEquals(r.code, 0, `the deputy of ${comm} ${pid} is not alive on node${home}`);
  const status = await c.ok(home, ["cat", `/proc/${pid}/status`]);
  assertMatch(status, new RegExp(`^PPid:\\s+${ppid}$`, "m"), "the deputy's parent");
}

/** Checks that `pid` (named `comm`) runs on node `on` and on none of the others. */
async function assertRunsOn(c: TestCluster, pid: string, comm: string, on: number): Promise<void> {
  const r = await c.exec(on, ["sh", "-c", lives(pid, comm)]);
  if (r.code !== 0) {
    // What became of it: the kernel's and the agents' last words on it.
    const why = [];
    for (const n of NODES) {
      const w = await c.exec(n, [
        "sh",
        "-c",
        `dmesg | tail -n 8; grep -E '(^|[^0-9])${pid}([^0-9]|$)' /tmp/agent.log | tail -n 12`,
      ], 30_000).catch((e) => ({ stdout: `(cannot read: ${(e as Error).message})` }));
      why.push(`--- node${n} ---\n${w.stdout}`);
    }
    throw new Error(`${comm} ${pid} does not run on node${on}\n${why.join("\n")}`);
  }
  for (const n of NODES.filter((x) => x !== on)) {
    // A killed copy may take a moment to be reaped.
    await c.waitFor(n, `! (${lives(pid, comm)})`, 30);
  }
}

Deno.test({
  name: "guest 6.1: ppm daemon on three nodes, ppm migrate, streams relayed, failures lose nothing",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    await ensurePackages(TEST_PACKAGES.migrate, "the migration test's programs");
    const programs = await buildPrograms(join(stateDir(), "test-programs"));
    const bin = guestPath(programs.heap_counter);
    const secret = join(stateDir(), "test-secret");
    await Deno.remove(secret).catch(() => {});
    await generateSecret(secret);
    await withCluster({ name: CLUSTER, nodes: 3, kernel: "6.1", memory: 1280 }, async (c) => {
      const agents = new Agents(c, secret);
      await Promise.all(
        NODES.map(async (n) => assertEquals((await c.ppm(n, ["module", "load"])).code, 0)),
      );
      await agents.startAll(NODES);

      await t.step("each node's ppm peers lists the other two", async () => {
        const seen = await agents.waitMesh(NODES);
        for (const n of NODES) {
          const st = seen[n] as { peers: { state: string; abi: number }[] };
          assertEquals(st.peers.length, 2);
          for (const p of st.peers) assertEquals([p.state, p.abi], ["alive", PPM_ABI_VERSION]);
        }
      });

      await t.step(
        "a compute program goes node1 → node2 → node3 → node1; its output continues in node1's " +
          "file, and it keeps its nice value (not the agent's)",
        async () => {
          const pid = (await c.ok(1, [
            "sh",
            "-c",
            `${highPids()}cd /tmp; nice -n 5 ${bin} 700 > /tmp/hc.out 2>&1 & echo $!`,
          ]))
            .trim();
          await c.waitFor(1, "grep -q '^tick 10 ' /tmp/hc.out", 120);
          const nice = (n: number) =>
            c.ok(n, ["sh", "-c", `cut -d')' -f2 /proc/${pid}/stat | cut -d' ' -f18`]).then((x) =>
              x.trim()
            );
          assertEquals(await nice(1), "5");
          for (const [from, to] of [[1, 2], [2, 3], [3, 1]]) {
            await migrate(c, from, pid, to);
            await assertRunsOn(c, pid, "heap_counter", to);
            assertEquals(await nice(to), "5", `its nice value on node${to}`);
            await waitTicks(c, 1, "/tmp/hc.out", 5);
          }
          const ps3 = JSON.parse(await c.ok(3, ["ppm", "ps", "--json"]));
          assertEquals(ps3[0].current, { node: "node1", pid: Number(pid) });
          const ps1 = JSON.parse(await c.ok(1, ["ppm", "ps", "--json"]));
          assertEquals(ps1.length, 1, JSON.stringify(ps1));
          assertEquals([ps1[0].direction, ps1[0].origin.node, ps1[0].moves], [
            "arrived",
            "node1",
            3,
          ]);
          await c.waitFor(1, "grep -q '^ok heap_counter' /tmp/hc.out", 600);
          assertContinuous(await c.ok(1, ["cat", "/tmp/hc.out"]), 700);
        },
      );

      await t.step(
        "a 48 MiB process writing 1 MiB every 200 ms moves node1 → node2 after pre-copy rounds: " +
          "the freeze sends what it wrote since the last, and every word checks out",
        async () => {
          const anon = guestPath(programs.bench_anon);
          const pid = (await c.ok(1, [
            "sh",
            "-c",
            `${highPids()}cd /tmp; ${anon} 200 48 > /tmp/pc.out 2>&1 & echo $!`,
          ])).trim();
          await c.waitFor(1, "grep -q '^tick 3 ' /tmp/pc.out", 120);
          const m = await migrate(c, 1, pid, 2);
          const pre = m.precopy as {
            rounds: { dirty: number; sent: number; stoppedUs: number; us: number }[];
            stopped: string;
            held: number;
            bytes: number;
          } | undefined;
          assert(pre, `no pre-copy rounds: ${JSON.stringify(m.warnings)}`);
          const dumped = m.checkpoint.pages.dumped as number;
          console.log(
            `  pre-copy: ${
              pre.rounds.map((r) =>
                `${r.dirty} pages (stopped ${(r.stoppedUs / 1000).toFixed(0)} ms, ` +
                `${(r.us / 1000).toFixed(0)} ms)`
              ).join(", ")
            }; ${pre.stopped}; the freeze sent ${dumped} pages and left ${pre.held}`,
          );
          assert(pre.rounds.length >= 2, "one round only");
          assert(pre.rounds[0].sent >= 48 * 256, `the first round sent ${pre.rounds[0].sent}`);
          assert(pre.held >= 32 * 256, `the freeze left only ${pre.held} pages to the rounds`);
          assert(dumped < 16 * 256, `the freeze sent ${dumped} pages`);
          // The rounds' pages went into the restore stub started ahead (the vessel), where they
          // belong: the restore kept its mappings with them instead of copying them at the freeze.
          const ahead = (m.restore as { ahead?: number } | undefined)?.ahead ?? 0;
          console.log(`  pages in place ahead of the restore: ${ahead}`);
          assert(ahead >= pre.held / 2, `only ${ahead} of ${pre.held} pages were in place ahead`);
          // The freeze's pages went on the page stream (native, AEGIS-128L), not in the image.
          const stream = m.checkpoint.pagestream as
            | { pages: number; ms?: Record<string, number> }
            | undefined;
          assertEquals(stream?.pages, dumped, `page stream: ${JSON.stringify(stream)}`);
          console.log(
            `  page stream, source side (ms, rounds included): ${JSON.stringify(stream?.ms)}`,
          );
          await assertRunsOn(c, pid, "bench_anon", 2);
          // Each tick checks a stripe before it writes it anew; the end checks every word.
          await c.waitFor(1, "grep -q '^ok bench_anon' /tmp/pc.out", 300);
          assertContinuous(await c.ok(1, ["cat", "/tmp/pc.out"]), 200);
        },
      );

      await t.step(
        "Debian's python3 moves mid-run and finishes with the right result",
        async () => {
          const script = [
            "import hashlib, time",
            "h = hashlib.sha256()",
            "for i in range(150):",
            "    h.update(str(i).encode())",
            "    print('tick', i, h.hexdigest()[:16], flush=True)",
            "    time.sleep(0.25)",
            "print('done', h.hexdigest(), flush=True)",
          ].join("\n");
          const pid = (await c.ok(1, [
            "sh",
            "-c",
            `${highPids()}cd /tmp; /usr/bin/python3 -u -c "$0" < /dev/null > /tmp/py.out 2>&1 & echo $!`,
            script,
          ])).trim();
          await c.waitFor(1, "grep -q '^tick 20 ' /tmp/py.out", 180);
          await migrate(c, 1, pid, 2);
          await assertRunsOn(c, pid, "python3", 2);
          await c.waitFor(1, "grep -q '^done ' /tmp/py.out", 300);
          const out = await c.ok(1, ["cat", "/tmp/py.out"]);
          assertContinuous(out, 150);
          const h = createHash("sha256");
          for (let i = 0; i < 150; i++) h.update(String(i));
          assertMatch(out, new RegExp(`^done ${h.digest("hex")}$`, "m"));
        },
      );

      await t.step(
        "a 5-thread program (per-thread ymm, TLS, names, masks, altstacks, robust lists, rseq) " +
          "goes node1 → node2 → node1 and ends exactly like an uninterrupted run",
        async () => {
          const tb = guestPath(programs.threads);
          // The uninterrupted run goes on beside the moved one.
          await c.ok(1, [
            "sh",
            "-c",
            `cd /tmp; (${tb} 600 4 > /tmp/th-base.out 2>&1; touch /tmp/th-base.end) > /dev/null 2>&1 < /dev/null &`,
          ]);
          const pid = (await c.ok(1, [
            "sh",
            "-c",
            `${highPids()}cd /tmp; ${tb} 600 4 < /dev/null > /tmp/th.out 2>&1 & echo $!`,
          ])).trim();
          await c.waitFor(1, "grep -q '^tick 10 ' /tmp/th.out", 120);
          await migrate(c, 1, pid, 2);
          await assertRunsOn(c, pid, "threads", 2);
          assertEquals(
            (await c.ok(2, ["sh", "-c", `ls /proc/${pid}/task | wc -l`])).trim(),
            "5",
            "threads on node2",
          );
          await waitTicks(c, 1, "/tmp/th.out", 5);
          await migrate(c, 2, pid, 1);
          await assertRunsOn(c, pid, "threads", 1);
          await c.waitFor(1, "grep -q '^ok threads' /tmp/th.out || grep -q FAIL /tmp/th.out", 300);
          await c.waitFor(1, "[ -e /tmp/th-base.end ]", 300);
          const out = await c.ok(1, ["cat", "/tmp/th.out"]);
          const base = await c.ok(1, ["cat", "/tmp/th-base.out"]);
          const body = (x: string) => x.split("\n").filter((l) => !l.startsWith("ready "));
          assertEquals(body(out), body(base));
        },
      );

      await t.step(
        "an OpenMP (libgomp) team of four goes node1 → node2 and ends exactly like an " +
          "uninterrupted run",
        async () => {
          const om = guestPath(programs.openmp);
          await c.ok(1, [
            "sh",
            "-c",
            `cd /tmp; (OMP_NUM_THREADS=4 ${om} 400 > /tmp/om-base.out 2>&1; touch /tmp/om-base.end) > /dev/null 2>&1 < /dev/null &`,
          ]);
          const pid = (await c.ok(1, [
            "sh",
            "-c",
            `${highPids()}cd /tmp; OMP_NUM_THREADS=4 ${om} 400 < /dev/null > /tmp/om.out 2>&1 & echo $!`,
          ])).trim();
          await c.waitFor(1, "grep -q '^tick 10 ' /tmp/om.out", 120);
          await migrate(c, 1, pid, 2);
          await assertRunsOn(c, pid, "openmp", 2);
          await c.waitFor(1, "grep -q '^ok openmp' /tmp/om.out || grep -q FAIL /tmp/om.out", 300);
          await c.waitFor(1, "[ -e /tmp/om-base.end ]", 300);
          const body = (x: string) => x.split("\n").filter((l) => !l.startsWith("ready "));
          const out = await c.ok(1, ["cat", "/tmp/om.out"]);
          assertEquals(body(out), body(await c.ok(1, ["cat", "/tmp/om-base.out"])));
        },
      );

      await t.step(
        "Debian's python3 with four threads (a barrier, thread-local state) moves mid-run",
        async () => {
          const script = [
            "import hashlib, os, threading, time",
            "N = 4",
            "barrier = threading.Barrier(N + 1)",
            "local = threading.local()",
            "digests = [b''] * N",
            "def work(k):",
            "    local.h = hashlib.sha256(str(k).encode())",
            "    for i in range(120):",
            "        barrier.wait()",
            "        time.sleep(0.05)",
            "        local.h.update(str(i).encode())",
            "        digests[k] = local.h.digest()",
            "        barrier.wait()",
            "ts = [threading.Thread(target=work, args=(k,)) for k in range(N)]",
            "for t in ts: t.start()",
            "for i in range(120):",
            "    barrier.wait()",
            "    barrier.wait()",
            "    print('tick', i, 'of', 120, flush=True)",
            "for t in ts: t.join()",
            // It ends once the test saw where it runs (a fast machine could finish it before).
            "while not os.path.exists('/tmp/pyt.go'): time.sleep(0.05)",
            "print('done', hashlib.sha256(b''.join(digests)).hexdigest(), flush=True)",
          ].join("\n");
          const pid = (await c.ok(1, [
            "sh",
            "-c",
            `${highPids()}cd /tmp; /usr/bin/python3 -u -c "$0" < /dev/null > /tmp/pyt.out 2>&1 & echo $!`,
            script,
          ])).trim();
          await c.waitFor(1, "grep -q '^tick 15 ' /tmp/pyt.out", 180);
          await migrate(c, 1, pid, 2);
          await assertRunsOn(c, pid, "python3", 2);
          await c.ok(2, ["touch", "/tmp/pyt.go"]);
          await c.waitFor(1, "grep -q '^done ' /tmp/pyt.out || grep -q Error /tmp/pyt.out", 300);
          const out = await c.ok(1, ["cat", "/tmp/pyt.out"]);
          assertContinuous(out, 120);
          const parts = [0, 1, 2, 3].map((k) => {
            const h = createHash("sha256").update(String(k));
            for (let i = 0; i < 120; i++) h.update(String(i));
            return h.digest();
          });
          const want = createHash("sha256").update(Buffer.concat(parts)).digest("hex");
          assertMatch(out, new RegExp(`^done ${want}$`, "m"));
        },
      );

      await t.step(
        "Debian's nodejs (libuv: epoll, eventfds, pipes, worker threads) moves mid-run; its " +
          "timer and file loop goes on and ends as an uninterrupted run ends",
        async () => {
          // The same data file on both nodes (same size and mtime), as a shared file system has it.
          for (const n of [1, 2]) {
            await c.ok(n, [
              "sh",
              "-c",
              "seq 1 3000 > /tmp/nl-data.txt && touch -d @1700000000 /tmp/nl-data.txt",
            ]);
          }
          const script = [
            "const fs = require('fs'), crypto = require('crypto');",
            "const fd = fs.openSync('/tmp/nl-data.txt', 'r'), h = crypto.createHash('sha256');",
            "const n = 150; let i = 0;",
            "console.log('ready', process.pid);",
            "function tick() {",
            "  const buf = Buffer.alloc(64);",
            "  fs.readSync(fd, buf, 0, 64, (i * 97) % 10000);",
            "  h.update(buf); h.update(String(fs.readFileSync('/tmp/nl-data.txt').length + i));",
            "  console.log('tick', i, h.copy().digest('hex').slice(0, 16));",
            "  if (++i < n) setTimeout(tick, 100); else end();",
            "}",
            // It ends once the test saw where it runs (a fast machine could finish it before).
            "function end() {",
            "  if (!fs.existsSync('/tmp/nl.go')) return setTimeout(end, 100);",
            "  console.log('done', h.digest('hex'));",
            "}",
            "setTimeout(tick, 100);",
          ].join("\n");
          await c.ok(1, [
            "sh",
            "-c",
            `cd /tmp; (/usr/bin/node -e "$0" < /dev/null > /tmp/nl-base.out 2>&1; touch /tmp/nl-base.end) > /dev/null 2>&1 < /dev/null &`,
            script,
          ]);
          const pid = (await c.ok(1, [
            "sh",
            "-c",
            `${highPids()}cd /tmp; /usr/bin/node -e "$0" < /dev/null > /tmp/nl.out 2>&1 & echo $!`,
            script,
          ])).trim();
          await c.waitFor(1, "grep -q '^tick 20 ' /tmp/nl.out", 180);
          await migrate(c, 1, pid, 2);
          await assertRunsOn(c, pid, "node", 2);
          for (const n of [1, 2]) await c.ok(n, ["touch", "/tmp/nl.go"]);
          await c.waitFor(1, "grep -q '^done ' /tmp/nl.out || grep -q Error /tmp/nl.out", 300);
          await c.waitFor(1, "[ -e /tmp/nl-base.end ]", 300);
          const body = (x: string) => x.split("\n").filter((l) => !l.startsWith("ready "));
          const out = await c.ok(1, ["cat", "/tmp/nl.out"]);
          assertEquals(body(out), body(await c.ok(1, ["cat", "/tmp/nl-base.out"])));
          assertContinuous(out, 150);
        },
      );

      await t.step(
        "fd_kinds (eventfds, timerfds, a signalfd, pipes, socketpairs, memfds, an epoll set) " +
          "goes node1 → node2 and reads back every object as an uninterrupted run does",
        async () => {
          const fk = guestPath(programs.fd_kinds);
          await c.ok(1, [
            "sh",
            "-c",
            `cd /tmp; (${fk} 150 > /tmp/fk-base.out 2>&1; touch /tmp/fk-base.end) > /dev/null 2>&1 < /dev/null &`,
          ]);
          const pid = (await c.ok(1, [
            "sh",
            "-c",
            `${highPids()}cd /tmp; ${fk} 150 < /dev/null > /tmp/fk.out 2>&1 & echo $!`,
          ])).trim();
          await c.waitFor(1, "grep -q '^tick 10 ' /tmp/fk.out", 120);
          await migrate(c, 1, pid, 2);
          await assertRunsOn(c, pid, "fd_kinds", 2);
          await c.waitFor(1, "grep -q '^ok fd_kinds' /tmp/fk.out || grep -q FAIL /tmp/fk.out", 300);
          await c.waitFor(1, "[ -e /tmp/fk-base.end ]", 300);
          const [got, base] = [
            await c.ok(1, ["cat", "/tmp/fk.out"]),
            await c.ok(1, ["cat", "/tmp/fk-base.out"]),
          ];
          assertSameReport(reportLines(got), reportLines(base), 120);
          assertMatch(got, /^ok fd_kinds objects=16$/m);
        },
      );

      await t.step(
        "Debian's cat moves while reading a FIFO on node1; its stdin and stdout are relayed",
        () =>
          agents.explain(NODES, async () => {
            // A holder keeps the FIFO's write end open, so cat sees no end of file in between.
            const [holder, pid] = (await c.ok(1, [
              "sh",
              "-c",
              `${highPids()}cd /tmp; rm -f in.fifo; mkfifo in.fifo; sleep 600 > in.fifo & echo $!; ` +
              "cat < in.fifo > /tmp/cat.out & echo $!",
            ])).trim().split("\n");
            try {
              await c.ok(1, ["sh", "-c", "echo line-0 > /tmp/in.fifo"]);
              await c.waitFor(1, "grep -q '^line-0$' /tmp/cat.out", 60);
              await migrate(c, 1, pid, 2);
              await assertRunsOn(c, pid, "cat", 2);
              for (let i = 1; i <= 5; i++) {
                await c.ok(1, ["sh", "-c", `echo line-${i} > /tmp/in.fifo`]);
                await c.waitFor(1, `grep -q '^line-${i}$' /tmp/cat.out`, 60);
              }
              assertEquals(
                (await c.ok(1, ["cat", "/tmp/cat.out"])).trim().split("\n"),
                ["line-0", "line-1", "line-2", "line-3", "line-4", "line-5"],
              );
            } finally {
              await c.exec(1, ["kill", holder]);
            }
            // End of file on node1's FIFO reaches cat on node2, and it ends there.
            // The agent that reaps it says so (a check of /proc/PID races the PIDs its own
            // commands take once that PID is free).
            await c.waitFor(
              2,
              `grep -q 'process ${pid} (cat) that arrived from node1 ended: exit 0' /tmp/agent.log`,
              60,
            );
          }),
      );

      await t.step(
        "processes whose parent waits for them leave their deputies on node1: same PID and " +
          "parent, shown by ppm ps; a signal to a deputy reaches its process on node2; the " +
          "parent sees the real status (exit 7, SIGTERM); one comes back to node1 into its deputy",
        () =>
          agents.explain(NODES, async () => {
            // Python prints what it gets and exits 7 once told (a file on node2, where it runs).
            const script = [
              "import os, signal, sys, time",
              "signal.signal(signal.SIGUSR1, lambda s, f: print('got SIGUSR1', flush=True))",
              "i = 0",
              "while not os.path.exists('/tmp/dep-py.go'):",
              "    print('tick', i, flush=True)",
              "    i += 1",
              "    time.sleep(0.2)",
              "print('done', flush=True)",
              "sys.exit(7)",
            ].join("\n");
            const start = async (tag: string, cmd: string, ...args: string[]) => {
              const parent = (await c.ok(1, [
                "sh",
                "-c",
                `${highPids()}cd /tmp; rm -f /tmp/${tag}.*; ` +
                `sh -c "$0" ${tag} ${cmd} > /dev/null 2>&1 < /dev/null & echo $!`,
                WAITING_PARENT,
                ...args,
              ])).trim();
              await c.waitFor(
                1,
                `[ -s /tmp/${tag}.pid ] && grep -Eq '^tick 3( |$)' /tmp/${tag}.out`,
                120,
              );
              const pid = (await c.ok(1, ["cat", `/tmp/${tag}.pid`])).trim();
              return { parent, pid };
            };
            const hc = await start("dep-hc", `${bin} 3000`);
            const py = await start("dep-py", '/usr/bin/python3 -u -c "$1"', script);
            const both = [[hc, "heap_counter"], [py, "python3"]] as const;
            try {
              for (const [p, comm] of both) {
                const m = await migrate(c, 1, p.pid, 2);
                assertEquals(m.warnings, undefined, "a deputy should stand in");
                assertEquals(m.deputy, { pid: Number(p.pid) });
                await c.waitFor(2, lives(p.pid, comm), 30);
                await assertDeputy(c, 1, p.pid, comm, p.parent);
                await c.waitFor(3, `! (${lives(p.pid, comm)})`, 30);
              }
              const ps = JSON.parse(await c.ok(1, ["ppm", "ps", "--json"]));
              for (const [p, comm] of both) {
                const row = ps.find((e: { direction: string; deputy?: { pid: number } }) =>
                  e.direction === "deputy" && e.deputy?.pid === Number(p.pid)
                );
                assert(row, `no deputy of ${comm} ${p.pid} in ppm ps: ${JSON.stringify(ps)}`);
                assertEquals(row.current, { node: "node2", pid: Number(p.pid) });
              }
              assertMatch(
                await c.ok(1, ["ppm", "ps"]),
                new RegExp(`its deputy stands in here as PID ${py.pid} .*runs on node2`),
              );

              // Back home it comes into its deputy: the shell's child again, its output going on.
              await migrate(c, 2, hc.pid, 1);
              await c.waitFor(1, lives(hc.pid, "heap_counter"), 30);
              await c.waitFor(2, `! (${lives(hc.pid, "heap_counter")})`, 30);
              const ppid1 = await c.ok(1, ["sh", "-c", `awk '{ print $4 }' /proc/${hc.pid}/stat`]);
              assertEquals(ppid1.trim(), hc.parent, "home, its parent is the shell again");
              await waitTicks(c, 1, "/tmp/dep-hc.out", 3);
              const rows = JSON.parse(await c.ok(1, ["ppm", "ps", "--json"])) as {
                direction: string;
                current: { pid: number };
              }[];
              assertEquals(
                rows.filter((e) => e.current.pid === Number(hc.pid)).map((e) => e.direction),
                ["arrived"],
                `node1's processes: ${JSON.stringify(rows)}`,
              );

              // A signal to the deputy reaches the process on node2, and comes out in its output.
              await c.ok(1, ["kill", "-USR1", py.pid]);
              await c.waitFor(1, "grep -q '^got SIGUSR1$' /tmp/dep-py.out", 60);
              await c.ok(1, ["kill", "-TERM", hc.pid]);
              await c.ok(2, ["touch", "/tmp/dep-py.go"]);
              // The parents' wait ends with how the processes ended on node2, their output all out.
              await c.waitFor(1, "[ -s /tmp/dep-hc.rc ] && [ -s /tmp/dep-py.rc ]", 120);
              assertEquals((await c.ok(1, ["cat", "/tmp/dep-hc.rc"])).trim(), "143");
              assertEquals((await c.ok(1, ["cat", "/tmp/dep-py.rc"])).trim(), "7");
              assertMatch(await c.ok(1, ["cat", "/tmp/dep-py.out"]), /^done$/m);
              const log2 = await c.ok(2, ["cat", "/tmp/agent.log"]);
              // heap_counter ended at home (its parent collected it; node1's agent saw it go).
              assertMatch(
                await c.ok(1, ["cat", "/tmp/agent.log"]),
                new RegExp(`process ${hc.pid} \\(heap_counter\\) that arrived from node2 ended`),
              );
              assertMatch(
                log2,
                new RegExp(`process ${py.pid} \\(python3\\) that arrived from node1 ended: exit 7`),
              );
              // Their parents collected the deputies (the rc files); their rows go as they end.
              await c.waitFor(1, `! ppm ps --json | grep -q '"direction": "deputy"'`, 60);
            } finally {
              for (const p of [hc, py]) {
                await c.exec(2, ["kill", "-KILL", p.pid]);
                await c.exec(1, ["kill", "-KILL", p.pid]);
              }
            }
          }, "deputy|signal|ended|moved|refused"),
      );

      await t.step(
        "a child talking to its parent over a socketpair and a pipe moves to node2, then " +
          "node3: its deputy keeps them on node1, the agents relay them in order (chained " +
          "through node2), its pipe's close and end of file travel, and the parent sees every " +
          "answer and exit 0",
        () =>
          agents.explain(NODES, async () => {
            // The parent (stays on node1) asks i, wants 2*i back on the socket and "line i" on
            // the pipe; after /tmp/rel.go it asks 30 more, then says "end": the child, still
            // running (now on node3), closes its pipe, and the parent must read its end of file
            // (the deputy's `close FD`); then it shuts its socket down and waits.
            const script = [
              "import os, socket, sys, time",
              "a, b = socket.socketpair()",
              "r, w = os.pipe()",
              "pid = os.fork()",
              "if pid == 0:",
              "    a.close(); os.close(r)",
              "    s, f = b, os.fdopen(w, 'w', buffering=1)",
              "    buf, n = b'', 0",
              "    while True:",
              "        d = s.recv(4096)",
              "        if not d: break",
              "        buf += d",
              "        while b'\\n' in buf:",
              "            line, buf = buf.split(b'\\n', 1)",
              "            if line == b'end':",
              "                f.write('eof after %d\\n' % n); f.close(); continue",
              "            k = int(line); s.sendall(b'%d\\n' % (2 * k)); f.write('line %d\\n' % k); n += 1",
              "    os._exit(0)",
              "b.close(); os.close(w)",
              "open('/tmp/rel.pid', 'w').write(str(pid))",
              "pf, sf = os.fdopen(r, 'r'), a.makefile('r')",
              "i, more = 0, None",
              "while more is None or more > 0:",
              "    i += 1; a.sendall(b'%d\\n' % i)",
              "    if sf.readline() != '%d\\n' % (2 * i) or pf.readline() != 'line %d\\n' % i:",
              "        print('BAD at', i, flush=True); sys.exit(1)",
              "    print('ok', i, flush=True)",
              "    if more is None and os.path.exists('/tmp/rel.go'): more = 30",
              "    if more is not None: more -= 1",
              "    time.sleep(0.05)",
              "a.sendall(b'end\\n')",
              "last = pf.readline()",
              "rest = pf.read()",
              "a.shutdown(socket.SHUT_WR)",
              "_, st = os.waitpid(pid, 0)",
              "good = last == 'eof after %d\\n' % i and st == 0 and rest == ''",
              "print('final', 'ok' if good else 'BAD', repr(last), st, repr(rest), flush=True)",
              "sys.exit(0 if good else 1)",
            ].join("\n");
            await c.ok(1, [
              "sh",
              "-c",
              `${highPids()}cd /tmp; rm -f /tmp/rel.*; ` +
              `(/usr/bin/python3 -u -c "$0" > /tmp/rel.out 2>&1 < /dev/null; ` +
              `echo $? > /tmp/rel.rc) > /dev/null 2>&1 &`,
              script,
            ]);
            await c.waitFor(1, "[ -s /tmp/rel.pid ] && grep -q '^ok 10$' /tmp/rel.out", 60);
            const pid = (await c.ok(1, ["cat", "/tmp/rel.pid"])).trim();
            try {
              const m = await migrate(c, 1, pid, 2);
              assertEquals(m.deputy, { pid: Number(pid) }, "a deputy should stand in");
              await c.waitFor(2, lives(pid, "python3"), 30);
              // The exchange goes on across the move, and across a second one (node2 → node3,
              // chained through node2), then the parent ends it.
              const more = async () => {
                const n = (await c.ok(1, ["sh", "-c", "grep -c '^ok ' /tmp/rel.out"])).trim();
                await c.waitFor(1, `[ $(grep -c '^ok ' /tmp/rel.out) -gt $((${n} + 10)) ]`, 60);
              };
              await more();
              await migrate(c, 2, pid, 3);
              await c.waitFor(3, lives(pid, "python3"), 30);
              await more();
              await c.ok(1, ["touch", "/tmp/rel.go"]);
              await c.waitFor(1, "[ -s /tmp/rel.rc ]", 60);
              const out = await c.ok(1, ["cat", "/tmp/rel.out"]);
              assert(!/BAD/.test(out), out.slice(-2000));
              assertMatch(out, /^final ok /m);
              assertEquals((await c.ok(1, ["cat", "/tmp/rel.rc"])).trim(), "0");
            } finally {
              await c.exec(3, ["kill", "-KILL", pid]);
              await c.exec(2, ["kill", "-KILL", pid]);
              await c.exec(1, ["kill", "-KILL", pid]);
            }
          }, "relay|deputy|ended|fd "),
      );

      await t.step(
        "failure injection at each phase: the process runs on at the source, nothing is lost",
        () =>
          agents.explain(NODES, async () => {
            await c.ok(1, ["cp", bin, "/tmp/local-hc"]);
            const pid = (await c.ok(1, [
              "sh",
              "-c",
              `${highPids()}cd /tmp; ${bin} 5000 > /tmp/fail.out 2>&1 & echo $!`,
            ])).trim();
            const local = (await c.ok(1, [
              "sh",
              "-c",
              `${highPids()}cd /tmp; /tmp/local-hc 5000 > /tmp/local.out 2>&1 & echo $!`,
            ])).trim();
            try {
              await c.waitFor(1, "grep -q '^tick 5 ' /tmp/fail.out", 120);

              /** A migration that must fail with `why`, leaving `p` running on node1 only. */
              const mustFail = async (p: string, why: RegExp, args: string[] = []) => {
                const comm = p === pid ? "heap_counter" : "local-hc";
                const r = await c.ppm(1, ["migrate", p, "--to", "node2", ...args], 300_000);
                assert(r.code !== 0, `the migration succeeded: ${r.stdout}`);
                assertMatch(r.stderr, /runs on here/);
                assertMatch(r.stderr, why);
                await assertRunsOn(c, p, comm, 1);
                await waitTicks(c, 1, p === pid ? "/tmp/fail.out" : "/tmp/local.out", 3);
                console.log(`  refused as expected: ${r.stderr.split("\n")[0]}`);
              };

              // Before the transfer: the destination refuses (a mapped file is missing there).
              await mustFail(local, /local-hc does not exist/);

              // Mid-transfer: the destination agent dies.
              await agents.restart(2, NODES, "crash-mid-image");
              await mustFail(pid, /connection|closed|ended|reset|broken/i);
              await agents.waitDead(2);

              // Mid-transfer: the link to the destination is cut.
              await agents.start(2, "image-stall");
              await agents.waitSeen(2, NODES);
              const ns = netnsName(CLUSTER);
              // The log goes on across agent runs: wait for one more such line than now.
              const receiving = `grep -c 'receiving process ${pid} ' /tmp/agent.log`;
              const seen = Number((await c.exec(2, ["sh", "-c", receiving])).stdout.trim() || "0");
              const failing = mustFail(pid, /./, ["--timeout", "15"]);
              try {
                await c.waitFor(2, `[ "$(${receiving})" -gt ${seen} ]`, 120);
                await setLink(ns, 2, false);
                await failing;
              } finally {
                await setLink(ns, 2, true);
              }

              // A deadline for the whole move (the destination still stalls the image): it
              // passes before the per-step timeout does; exit 7, and the process runs on here.
              await agents.restart(2, NODES, "image-stall");
              const t0 = Date.now();
              await mustFail(pid, /deadline of 12 s passed/, ["--deadline", "12"]);
              assert(Date.now() - t0 < 100_000, "the deadline did not bound the move");

              // During the restore: it fails after the memory was replaced.
              await agents.restart(2, NODES, "restore");
              await mustFail(pid, /injected fault restore/);

              // Before the confirmation: the destination agent dies with the copy held. The
              // source cannot tell whether it ran the process: it keeps its copy stopped and asks
              // again until the destination's next agent answers that it does not run there.
              await agents.restart(2, NODES, "crash-before-commit");
              const asking = mustFail(pid, /did not confirm|connection|closed|ended|reset|broken/i);
              await agents.waitDead(2);
              await agents.start(2);
              await asking;
              assertMatch(
                await c.ok(2, ["cat", "/tmp/agent.log"]),
                new RegExp(`asked whether process ${pid} runs here: absent`),
              );

              // And then it moves, with its output whole.
              await agents.waitSeen(2, NODES);
              await migrate(c, 1, pid, 2);
              await assertRunsOn(c, pid, "heap_counter", 2);
              await waitTicks(c, 1, "/tmp/fail.out", 10);
              assertContinuous(await c.ok(1, ["cat", "/tmp/fail.out"]), 30);
              assertContinuous(await c.ok(1, ["cat", "/tmp/local.out"]), 10);
              const log = await c.ok(2, ["cat", "/tmp/agent.log"]);
              assertMatch(log, /restore failed: .*injected fault restore/);
            } finally {
              await c.exec(1, ["kill", local]);
              await c.exec(2, ["kill", pid]);
              await c.exec(1, ["kill", pid]);
            }
          }),
      );

      await t.step(
        "the cluster bridge never carries the process's memory in clear, and 200 silent connections do not stop a migration",
        async () => {
          // A marker that exists only in the process's memory (built at run time, not in argv).
          const pid = (await c.ok(1, [
            "sh",
            "-c",
            `${highPids()}cd /tmp; python3 -c "import time; m = ('PPM-' + 'SECRET-MARKER-') * 262144; [time.sleep(0.1) for _ in range(100000)]" > /dev/null 2>&1 & echo $!`,
          ])).trim();
          // Half-open handshakes that never say a word, from two sources, held during the move.
          const hold = () =>
            `python3 -c "import socket, time; s = [socket.create_connection(('10.77.0.2', 7378)) for _ in range(100)]; time.sleep(600)" > /dev/null 2>&1 & echo $!`;
          const holders = [
            (await c.ok(1, ["sh", "-c", hold()])).trim(),
            (await c.ok(3, ["sh", "-c", hold()])).trim(),
          ];
          const pcap = join(stateDir(), "migrate-bridge.pcap");
          await Deno.remove(pcap).catch(() => {});
          const dump = new Deno.Command("ip", {
            args: [
              "netns",
              "exec",
              netnsName(CLUSTER),
              "tcpdump",
              "-i",
              "br0",
              "-U",
              "-w",
              pcap,
              "tcp",
            ],
            stdout: "null",
            stderr: "null",
          }).spawn();
          try {
            // Built: 4 MiB of it in memory.
            await c.waitFor(1, `grep -q '^VmRSS:.*[0-9]\\{5,\\} kB' /proc/${pid}/status`, 60);
            const m = await migrate(c, 1, pid, 2);
            assert(m.bytes > 4 << 20, `only ${m.bytes} bytes moved`);
            await assertRunsOn(c, pid, "python3", 2);
          } finally {
            await new Promise((r) => setTimeout(r, 1000));
            try {
              dump.kill("SIGINT");
            } catch { /* ended */ }
            await dump.status;
            await c.exec(1, ["kill", holders[0]]);
            await c.exec(3, ["kill", holders[1]]);
            await c.exec(2, ["kill", pid]);
          }
          const captured = await Deno.readFile(pcap);
          assert(captured.length > 4 << 20, `the capture holds only ${captured.length} bytes`);
          // The junction of two copies: in the process's memory only, never in a command line.
          const text = new TextDecoder("latin1").decode(captured);
          assertEquals(
            text.indexOf("MARKER-PPM-SECRET"),
            -1,
            "the process's memory crossed in clear",
          );
          await Deno.remove(pcap);
        },
      );

      await t.step("a connection with the wrong secret is refused and logged", async () => {
        const r = await c.deno(
          2,
          "tests/guest/support/wrong_secret.ts",
          ["node1", "7378"],
          120_000,
        );
        assertEquals(r.code, 0, r.stdout + r.stderr);
        assert(JSON.parse(r.stdout.trim().split("\n").at(-1)!).refused);
        await c.waitFor(1, "grep -q 'refused a connection' /tmp/agent.log", 30);
      });
    });
  },
});
