/**
 * Issue 19: an MPI job whose rank moves while it runs. Debian's MPICH (ch4
 * over UCX) on TCP only, 3 ranks on 3 guests, launched by hydra with its
 * manual launcher (docs/mpi.md, docs/research/mpi-debian.md):
 *
 * - an uninterrupted run of the ring program gives the reference result;
 * - in a second run, rank 1 (on node2, under hydra_pmi_proxy) moves to node3
 *   and leaves its deputy on node2 (the proxy waits for it); then it moves on
 *   to node1, its relays chained node1 → node3 → node2, its connections
 *   redirected from node2's address still; then it comes home to node2,
 *   into its deputy: the proxy's own child again, same PID, no deputy left;
 * - the job ends with exit 0, every tick and the `done` line the same as the
 *   uninterrupted run's.
 */
import { join } from "node:path";
import { ensurePackages } from "../../core/host/packages.ts";
import { stateDir } from "../../core/paths.ts";
import { generateSecret } from "../../core/security/secret.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { withCluster } from "../support/cluster.ts";
import {
  buildMpi,
  clusterNodes,
  endOf,
  findRank1,
  JOB_S,
  jobReport,
  MPI_NODES as NODES,
  rank1,
  resultLines,
  RING_DONE,
  RING_N as N,
  startJob,
  stopJob,
  ticks,
} from "../support/mpi_job.ts";
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
import { TEST_PACKAGES } from "../support/packages.ts";

const CLUSTER = "tmpi";
/**
 * The sleep in each iteration (ms) of the run that moves: 80 of them last long enough for two
 * moves with ticks between (the checks before a freeze take seconds in a TCG guest, and the job
 * runs on meanwhile). The reference run sleeps 10 ms.
 */
const MS = 700;
/** `ring 80 MS`'s last line (any MS). */
const KNOWN_DONE = RING_DONE[0];

Deno.test({
  name: "guest 6.1: an MPICH job (ch4/UCX over TCP, hydra) runs on while rank 1 moves",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    // The guests see the host's file system: its packages and the programs built here.
    await ensurePackages(
      TEST_PACKAGES.mpi,
      "the MPI test's programs",
    );
    const { ring, preload } = await buildMpi(join(stateDir(), "test-programs", "mpi"));
    const ompi = await buildOpenMpi(join(stateDir(), "test-programs", "openmpi"));
    const secret = join(stateDir(), "test-secret");
    await Deno.remove(secret).catch(() => {});
    await generateSecret(secret);
    await withCluster({ name: CLUSTER, nodes: 3, kernel: "6.1", memory: 1280 }, async (c) => {
      const agents = new Agents(c, secret);
      const nodes = clusterNodes(c);
      const log = (line: string) => console.log(line);
      await Promise.all(
        NODES.map(async (n) => assertEquals((await c.ppm(n, ["module", "load"])).code, 0)),
      );
      await agents.startAll(NODES);
      await agents.waitMesh(NODES);

      let reference: string[] = [];
      await t.step("an uninterrupted run: exit 0, the reference result", async () => {
        const job = await startJob(nodes, { tag: "ref", ring, preload, args: [N, 10], log });
        try {
          const { rc, out } = await endOf(nodes, job, JOB_S);
          assertEquals(rc, "0", `the reference run:\n${await jobReport(nodes, job)}`);
          reference = resultLines(out);
          assertEquals(reference.length, N + 1, out);
          assertEquals(reference[N], KNOWN_DONE, "the ring program's result");
          console.log(`  reference: ${reference[N]}`);
        } finally {
          await stopJob(nodes, job);
        }
      });

      await t.step(
        "rank 1 moves node2 → node3 (its deputy stays with the proxy on node2), node3 → node1, " +
          "then home to node2 into its deputy; the job ends with exit 0 and the reference result",
        () =>
          agents.explain(NODES, async () => {
            assertEquals(reference.length, N + 1, "no reference run");
            const job = await startJob(nodes, { tag: "mig", ring, preload, args: [N, MS], log });
            let pid: string | undefined;
            try {
              try {
                pid = await findRank1(nodes, job);
                await c.waitFor(1, "grep -q '^tick 5 ' /tmp/mig.out", 120);
                assertMatch(
                  await c.ok(1, ["cat", "/tmp/mig.err"]),
                  new RegExp(`^rank 1/3 pid ${pid} `, "m"),
                  "rank 1's own word on its PID",
                );
                const fiveMore = async () => {
                  const want = (await ticks(nodes, job)) + 5;
                  assert(want < N, `the job got to tick ${want - 5} of ${N} before the move`);
                  await c.waitFor(1, `[ $(grep -c '^tick ' /tmp/mig.out) -ge ${want} ]`, 120);
                };

                const ppid = async () =>
                  (await c.ok(2, ["sh", "-c", `awk '{ print $4 }' /proc/${pid}/stat`])).trim();
                const parent = await ppid();
                assertEquals(parent, String(job.proxies[1]), "rank 1's parent");
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

                // node1 → node2: home, into its deputy, which holds its PID under proxy 1.
                await migrate(c, 1, pid, 2);
                await c.waitFor(2, lives(pid, "ring"), 30);
                await c.waitFor(1, `! (${lives(pid, "ring")})`, 30);
                assertEquals(await ppid(), parent, "home, it is the proxy's child again");
                const ps = JSON.parse(await c.ok(2, ["ppm", "ps", "--json"])) as {
                  direction: string;
                  current: { pid: number };
                }[];
                assertEquals(
                  ps.filter((e) => e.current.pid === Number(pid)).map((e) => e.direction),
                  ["arrived"],
                  `node2's processes: ${JSON.stringify(ps)}`,
                );
                await fiveMore();

                const { rc, out } = await endOf(nodes, job, JOB_S);
                assertEquals(rc, "0", "the job's exit code");
                assertEquals(resultLines(out), reference);
                // It ended at home, where its parent collected it.
                await c.waitFor(
                  2,
                  `grep -Eq 'process ${pid} \\(ring\\) that arrived from node1 ended' /tmp/agent.log`,
                  60,
                );
              } catch (e) {
                if (e instanceof Error) e.message += `\n${await jobReport(nodes, job, pid)}`;
                throw e;
              }
            } finally {
              await stopJob(nodes, job, pid);
            }
          }, "deputy|relay|ended|moved|refused|ring|fd "),
      );

      await t.step(
        "a rank under `ppm manage`, on a node loaded by others, is moved by the balancer; the " +
          "job ends with exit 0 and the reference result",
        () =>
          agents.explain(NODES, async () => {
            // CPU-bound ranks (they compute between ticks), and two unmanaged spinners on node2.
            const job = await startJob(nodes, {
              tag: "bal",
              ring,
              preload,
              args: [N, MS, 0, "busy"],
              log,
            });
            const spinners: string[] = [];
            let pid: string | undefined;
            try {
              try {
                pid = await rank1(nodes, job);
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
                const { rc, out } = await endOf(nodes, job, JOB_S);
                const state = await c.exec(where, [
                  "sh",
                  "-c",
                  `cut -d' ' -f3 /proc/${pid}/stat; cat /proc/${pid}/wchan`,
                ]);
                assertEquals(
                  rc,
                  "0",
                  `the job's exit code (${resultLines(out).length} result lines; rank 1 on ` +
                    `node${where}: ${state.stdout.replace(/\s+/g, " ").trim() || "gone"})`,
                );
                assertEquals(resultLines(out), reference);
              } catch (e) {
                if (e instanceof Error) e.message += `\n${await jobReport(nodes, job, pid)}`;
                throw e;
              }
            } finally {
              for (const s of spinners) await c.exec(2, ["kill", "-KILL", s]);
              await stopJob(nodes, job, pid);
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
