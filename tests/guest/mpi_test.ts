/**
 * Issue 19: an MPI job whose rank moves while it runs. Debian's MPICH (ch4
 * over UCX) on TCP only, 3 ranks on 3 guests, launched by hydra with its
 * manual launcher (docs/mpi.md, docs/research/mpi-debian.md):
 *
 * - an uninterrupted run of the ring program gives the reference result;
 * - in a second run, rank 1 (on node2, under hydra_pmi_proxy) moves to node3
 *   and leaves its deputy on node2 (the proxy waits for it); then it moves on
 *   to node1, its relays chained node1 → node3 → node2, its connections
 *   redirected from node2's address still;
 * - the job ends with exit 0, every tick and the `done` line the same as the
 *   uninterrupted run's.
 *
 * Not yet here (docs/mpi.md, "Known gaps"): the move back to node2, where
 * its deputy holds its PID.
 */
import { join } from "node:path";
import { ensurePackages } from "../../core/host/packages.ts";
import { stateDir } from "../../core/paths.ts";
import { generateSecret } from "../../core/security/secret.ts";
import { guestPath, nodeAddress } from "../../core/vcluster/spec.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { highPids, type TestCluster, withCluster } from "../support/cluster.ts";
import { PROGRAMS_DIR } from "../support/programs.ts";
import { Agents } from "./support/agents.ts";
import { lives, migrate } from "./support/migration.ts";
import {
  buildOpenMpi,
  openMpiEnd,
  type OpenMpiJob,
  openMpiRank1,
  openMpiReport,
  startExecServers,
  startOpenMpiJob,
  stopOpenMpi,
} from "./support/openmpi.ts";

const CLUSTER = "tmpi";
const NODES = [1, 2, 3];
/** Iterations: the result depends on them alone, not on the sleep between. */
const N = 80;
/**
 * The sleep in each iteration (ms) of the run that moves: 80 of them last long enough for two
 * moves with ticks between (the checks before a freeze take seconds in a TCG guest, and the job
 * runs on meanwhile). The reference run sleeps 10 ms.
 */
const MS = 700;
/** The longest a job may take, in seconds (mpiexec runs under `timeout`). */
const JOB_S = 300;
/** `ring 80 MS`'s last line (any MS), from an uninterrupted run on a Debian 12 host (MPICH 4.0.2). */
const KNOWN_DONE = "done 80 8503b7b567f673d2";

/** Builds the ring program (mpicc.mpich) and the two preloaded shims into `dir`. */
async function buildMpi(dir: string): Promise<{ ring: string; preload: string }> {
  await Deno.mkdir(dir, { recursive: true });
  const src = join(PROGRAMS_DIR, "mpi");
  const build = async (cc: string, out: string, args: string[]) => {
    const tmp = `${out}.tmp-${Deno.pid}`;
    const r = await new Deno.Command(cc, {
      args: ["-O2", "-g", "-Wall", "-Werror", ...args, "-o", tmp],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!r.success) {
      const dec = new TextDecoder();
      throw new Error(`${cc} failed for ${out}:\n${dec.decode(r.stderr)}${dec.decode(r.stdout)}`);
    }
    await Deno.rename(tmp, out);
    return out;
  };
  // Always the suffixed names: openmpi-bin, when installed, takes the plain `mpicc`.
  const ring = await build("mpicc.mpich", join(dir, "ring"), [join(src, "ring.c")]);
  const shims = [];
  for (const s of ["nodisc", "noleak"]) {
    shims.push(
      await build("gcc", join(dir, `${s}.so`), ["-shared", "-fPIC", join(src, `${s}.c`)]),
    );
  }
  return { ring, preload: shims.map(guestPath).join(":") };
}

/** One job: where its files are (node1's /tmp/TAG.*) and the PIDs to clean up. */
interface Job {
  tag: string;
  /** node1: the `timeout` that runs mpiexec. */
  mpiexec: string;
  /** proxies[i]: hydra_pmi_proxy --proxy-id i, on node i + 1. */
  proxies: string[];
}

/**
 * Starts `ring N ms` on 3 ranks: mpiexec on node1 (its output in
 * /tmp/TAG.out and .err, its exit code in /tmp/TAG.rc, bounded by
 * `timeout`), then each HYDRA_LAUNCH line on its node (rank r on node r + 1).
 * The proxy on node2 starts at high PIDs, so that rank 1's PID is free on
 * the nodes it moves to.
 */
async function startJob(
  c: TestCluster,
  tag: string,
  ring: string,
  preload: string,
  ms: number,
  extra = "",
): Promise<Job> {
  const env = [
    "MPIR_CVAR_NOLOCAL=1",
    "UCX_TLS=tcp,self",
    "UCX_NET_DEVICES=eth0",
    "UCX_MEM_EVENTS=no",
    `LD_PRELOAD=${preload}`,
  ].join(" ");
  const hosts = NODES.map(nodeAddress).join(",");
  const mpiexec = `env ${env} timeout ${JOB_S} mpiexec.hydra -launcher manual -iface eth0 ` +
    `-hosts ${hosts} -n 3 ${guestPath(ring)} ${N} ${ms} ${extra}`;
  const pid = (await c.ok(1, [
    "sh",
    "-c",
    `cd /tmp; rm -f /tmp/${tag}.*; (${mpiexec} > /tmp/${tag}.out 2> /tmp/${tag}.err < /dev/null & ` +
    `echo $! > /tmp/${tag}.mpid; wait $!; echo $? > /tmp/${tag}.rc) > /dev/null 2>&1 < /dev/null & ` +
    `n=0; while [ ! -s /tmp/${tag}.mpid ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done; ` +
    `cat /tmp/${tag}.mpid`,
  ])).trim();
  const job: Job = { tag, mpiexec: pid, proxies: [] };
  await c.waitFor(1, `grep -q '^HYDRA_LAUNCH_END' /tmp/${tag}.out || [ -s /tmp/${tag}.rc ]`, 60);
  const out = await c.ok(1, ["cat", `/tmp/${tag}.out`]);
  const lines = new Map<number, string[]>();
  for (const l of out.split("\n")) {
    const m = /^HYDRA_LAUNCH: (.*--proxy-id (\d+))\s*$/.exec(l);
    if (m) lines.set(Number(m[2]), m[1].split(/\s+/));
  }
  assertEquals([...lines.keys()].sort(), [0, 1, 2], `mpiexec's launch lines:\n${out}`);
  console.log(`  ${tag}: ${lines.get(0)!.join(" ")}`);
  for (const i of [0, 1, 2]) {
    // The proxy needs no environment: the ranks get theirs from mpiexec.
    const p = (await c.ok(i + 1, [
      "sh",
      "-c",
      `${i === 1 ? highPids() : ""}cd /; ` +
      `env -i "$@" > /tmp/${tag}.proxy${i}.out 2>&1 < /dev/null & echo $!`,
      "sh",
      ...lines.get(i)!,
    ])).trim();
    job.proxies.push(p);
  }
  return job;
}

/** Waits until the job ended; its exit code and its output. */
async function endOf(c: TestCluster, job: Job, seconds: number) {
  await c.waitFor(1, `[ -s /tmp/${job.tag}.rc ]`, seconds);
  const rc = (await c.ok(1, ["cat", `/tmp/${job.tag}.rc`])).trim();
  const out = await c.ok(1, ["cat", `/tmp/${job.tag}.out`]);
  return { rc, out };
}

/** The result lines of a job's output: every tick and the done line. */
function resultLines(out: string): string[] {
  return out.split("\n").filter((l) => /^(tick|done) /.test(l));
}

/** Ends what is left of a job (by PID, on every node), rank 1 included when known. */
async function stopJob(c: TestCluster, job: Job, rank1?: string): Promise<void> {
  await c.exec(1, ["kill", job.mpiexec]);
  for (const [i, p] of job.proxies.entries()) await c.exec(i + 1, ["kill", "-KILL", p]);
  if (rank1) { for (const n of NODES) await c.exec(n, ["kill", "-KILL", rank1]); }
}

/** What a failure should show: mpiexec's output, the proxies' and the rank's descriptors. */
async function jobReport(c: TestCluster, job: Job, rank1?: string): Promise<string> {
  const parts: string[] = [];
  const show = async (n: number, cmd: string) => {
    const r = await c.exec(n, ["sh", "-c", cmd], 30_000)
      .catch((e) => ({ stdout: `(cannot read: ${(e as Error).message})`, stderr: "" }));
    parts.push(`--- node${n}: ${cmd} ---\n${r.stdout}${r.stderr}`);
  };
  await show(1, `tail -n 20 /tmp/${job.tag}.out; cat /tmp/${job.tag}.err /tmp/${job.tag}.rc`);
  for (const i of [0, 1, 2]) await show(i + 1, `cat /tmp/${job.tag}.proxy${i}.out`);
  if (rank1) { for (const n of NODES) await show(n, `ls -l /proc/${rank1}/fd 2>&1 | tail -n +2`); }
  return parts.join("\n");
}

Deno.test({
  name: "guest 6.1: an MPICH job (ch4/UCX over TCP, hydra) runs on while rank 1 moves",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    // The guests see the host's file system: its packages and the programs built here.
    await ensurePackages(
      ["mpich", "libmpich-dev", "openmpi-bin", "libopenmpi-dev", "gcc"],
      "the MPI test's programs",
    );
    const { ring, preload } = await buildMpi(join(stateDir(), "test-programs", "mpi"));
    const ompi = await buildOpenMpi(join(stateDir(), "test-programs", "openmpi"));
    const secret = join(stateDir(), "test-secret");
    await Deno.remove(secret).catch(() => {});
    await generateSecret(secret);
    await withCluster({ name: CLUSTER, nodes: 3, kernel: "6.1", memory: 1280 }, async (c) => {
      const agents = new Agents(c, secret);
      for (const n of NODES) assertEquals((await c.ppm(n, ["module", "load"])).code, 0);
      await agents.startAll(NODES);
      for (const n of NODES) {
        for (const m of NODES.filter((x) => x !== n)) {
          await c.waitFor(n, `ppm peers --json 2>/dev/null | grep -q '"name": "node${m}"'`, 180);
        }
      }

      let reference: string[] = [];
      await t.step("an uninterrupted run: exit 0, the reference result", async () => {
        const job = await startJob(c, "ref", ring, preload, 10);
        try {
          const { rc, out } = await endOf(c, job, JOB_S);
          assertEquals(rc, "0", `the reference run:\n${await jobReport(c, job)}`);
          reference = resultLines(out);
          assertEquals(reference.length, N + 1, out);
          assertEquals(reference[N], KNOWN_DONE, "the ring program's result");
          console.log(`  reference: ${reference[N]}`);
        } finally {
          await stopJob(c, job);
        }
      });

      await t.step(
        "rank 1 moves node2 → node3 (its deputy stays with the proxy on node2), then node3 → " +
          "node1; the job ends with exit 0 and the reference result",
        () =>
          agents.explain(NODES, async () => {
            assertEquals(reference.length, N + 1, "no reference run");
            const job = await startJob(c, "mig", ring, preload, MS);
            let pid: string | undefined;
            try {
              try {
                // Rank 1: the child of proxy 1 on node2 that runs ring.
                const child = `awk '$4 == ${job.proxies[1]} && $2 == "(ring)" { print $1 }' ` +
                  "/proc/[0-9]*/stat 2>/dev/null";
                await c.waitFor(2, `[ -n "$(${child})" ]`, 60);
                pid = (await c.ok(2, ["sh", "-c", child])).trim();
                assertMatch(pid, /^[0-9]+$/, `rank 1 under proxy ${job.proxies[1]}: ${pid}`);
                await c.waitFor(1, "grep -q '^tick 5 ' /tmp/mig.out", 120);
                assertMatch(
                  await c.ok(1, ["cat", "/tmp/mig.err"]),
                  new RegExp(`^rank 1/3 pid ${pid} `, "m"),
                  "rank 1's own word on its PID",
                );
                const ticks = async () =>
                  Number(
                    (await c.ok(1, ["sh", "-c", "grep -c '^tick ' /tmp/mig.out"])).trim(),
                  );
                const fiveMore = async () => {
                  const want = (await ticks()) + 5;
                  assert(want < N, `the job got to tick ${want - 5} of ${N} before the move`);
                  await c.waitFor(1, `[ $(grep -c '^tick ' /tmp/mig.out) -ge ${want} ]`, 120);
                };

                // node2 → node3: proxy 1 waits for it, so a deputy stands in on node2.
                const first = await migrate(c, 2, pid, 3);
                assertEquals(first.warnings, undefined, "a deputy should stand in");
                assertEquals(first.deputy, { pid: Number(pid) });
                await c.waitFor(3, lives(pid, "ring"), 30);
                await c.waitFor(
                  2,
                  `tr '\\0' ' ' < /proc/${pid}/cmdline | grep -q '^ppm-deputy:ring '`,
                  30,
                );
                await fiveMore();

                // node3 → node1: rank 2 stays on node3, rank 0 and mpiexec are on node1. Its peers
                // know it by node2's address still: the entries of this move replace the first's.
                await migrate(c, 3, pid, 1);
                await c.waitFor(1, lives(pid, "ring"), 30);
                await c.waitFor(3, `! (${lives(pid, "ring")})`, 30);
                await fiveMore();

                const { rc, out } = await endOf(c, job, JOB_S);
                assertEquals(rc, "0", "the job's exit code");
                assertEquals(resultLines(out), reference);
                // It ended on node1, and the news went back to its deputy on node2.
                await c.waitFor(
                  1,
                  `grep -Eq 'process ${pid} \\(ring\\) that arrived from node[0-9]+ ended: exit 0' ` +
                    "/tmp/agent.log",
                  60,
                );
              } catch (e) {
                if (e instanceof Error) e.message += `\n${await jobReport(c, job, pid)}`;
                throw e;
              }
            } finally {
              await stopJob(c, job, pid);
            }
          }, "deputy|relay|ended|moved|refused|ring|fd "),
      );

      await t.step(
        "a rank under `ppm manage`, on a node loaded by others, is moved by the balancer; the " +
          "job ends with exit 0 and the reference result",
        () =>
          agents.explain(NODES, async () => {
            // CPU-bound ranks (they compute between ticks), and two unmanaged spinners on node2.
            const job = await startJob(c, "bal", ring, preload, MS, "0 busy");
            const spinners: string[] = [];
            let pid: string | undefined;
            try {
              try {
                pid = await rank1(c, job);
                const m = await c.ppm(2, ["manage", pid, "--json"]);
                assertEquals(m.code, 0, `ppm manage: ${m.stderr}`);
                for (let i = 0; i < 2; i++) {
                  spinners.push(
                    (await c.ok(2, [
                      "sh",
                      "-c",
                      "sh -c 'while :; do :; done' > /dev/null 2>&1 < /dev/null & echo $!",
                    ])).trim(),
                  );
                }
                // Rounds until it moves (the loads need a few seconds to show the spinners).
                let where = 0;
                for (let round = 0; round < 20 && !where; round++) {
                  const r = await c.ppm(2, ["balance", "--once", "--json"], 120_000);
                  assertEquals(r.code, 0, `ppm balance --once: ${r.stderr}`);
                  for (const n of [1, 3]) {
                    if ((await c.exec(n, ["sh", "-c", lives(pid, "ring")])).code === 0) where = n;
                  }
                  if (!where) await new Promise((r) => setTimeout(r, 3000));
                }
                assert(where > 0, "the balancer did not move rank 1 off node2 in 20 rounds");
                console.log(`  the balancer moved rank 1 to node${where}`);
                const { rc, out } = await endOf(c, job, JOB_S);
                assertEquals(rc, "0", "the job's exit code");
                assertEquals(resultLines(out), reference);
              } catch (e) {
                if (e instanceof Error) e.message += `\n${await jobReport(c, job, pid)}`;
                throw e;
              }
            } finally {
              for (const s of spinners) await c.exec(2, ["kill", "-KILL", s]);
              await stopJob(c, job, pid);
            }
          }, "balance|deputy|moved|refused|ring"),
      );

      await t.step(
        "Open MPI: rank 1 moves node2 → node3 (its PMIx link to orted relayed over loopback TCP); " +
          "the job ends with exit 0 and the reference result",
        () =>
          agents.explain(NODES, async () => {
            const servers = await startExecServers(c, ompi);
            let job: OpenMpiJob | undefined;
            try {
              job = await startOpenMpiJob(c, ompi, "ompi", `${N} ${MS}`, JOB_S);
              try {
                const pid = await openMpiRank1(c, job);
                const m = await migrate(c, 2, pid, 3);
                assertEquals(m.deputy, { pid: Number(pid) }, "orted waits for it: a deputy");
                await c.waitFor(3, lives(pid, "ring"), 30);
                const { rc, out } = await openMpiEnd(c, job, JOB_S);
                assertEquals(rc, "0", "the job's exit code");
                assertEquals(resultLines(out), reference);
              } catch (e) {
                if (e instanceof Error) e.message += `\n${await openMpiReport(c, job)}`;
                throw e;
              }
            } finally {
              await stopOpenMpi(c, job, servers);
            }
          }, "deputy|relay|moved|refused|ring|fd "),
      );
    });
  },
});

/** Rank 1 of `job`: the child of proxy 1 on node2 that runs ring, once the job ticks. */
async function rank1(c: TestCluster, job: Job): Promise<string> {
  const child = `awk '$4 == ${job.proxies[1]} && $2 == "(ring)" { print $1 }' ` +
    "/proc/[0-9]*/stat 2>/dev/null";
  await c.waitFor(2, `[ -n "$(${child})" ]`, 60);
  const pid = (await c.ok(2, ["sh", "-c", child])).trim();
  assertMatch(pid, /^[0-9]+$/, `rank 1 under proxy ${job.proxies[1]}: ${pid}`);
  await c.waitFor(1, `grep -q '^tick 5 ' /tmp/${job.tag}.out`, 120);
  return pid;
}
