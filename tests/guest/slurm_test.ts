/**
 * Debian's Slurm (slurm-wlm with munge) on three guests, with ppm's prolog
 * and epilog (packaging/slurm): an exclusive job on node2 starts only once
 * ppm has drained node2's managed processes to the other nodes, runs alone,
 * and its epilog ends the drain. A drain that cannot finish in time fails
 * the prolog (exit 1: Slurm requeues the job and drains the node), and ends
 * ppm's drain again.
 */
import { join } from "node:path";
import { ensurePackages } from "../../core/host/packages.ts";
import { PROJECT_ROOT, stateDir } from "../../core/paths.ts";
import { generateSecret } from "../../core/security/secret.ts";
import { guestPath } from "../../core/vcluster/spec.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { highPids, type TestCluster, withCluster } from "../support/cluster.ts";
import { buildPrograms } from "../support/programs.ts";
import { Agents } from "./support/agents.ts";

const NODES = [1, 2, 3];
const SLURM_CONF = (prolog: string, epilog: string) =>
  `ClusterName=ppmtest
SlurmctldHost=node1
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurmctld.log
SlurmdLogFile=/var/log/slurmd.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
PrologFlags=Alloc
Prolog=${prolog}
Epilog=${epilog}
PrologEpilogTimeout=300
SlurmdTimeout=300
MessageTimeout=60
NodeName=node[1-3] CPUs=2 State=UNKNOWN
PartitionName=all Nodes=node[1-3] Default=YES MaxTime=INFINITE State=UP
`;

async function slurmUp(c: TestCluster, dir: string): Promise<void> {
  const key = guestPath(join(dir, "munge.key"));
  const conf = guestPath(join(dir, "slurm.conf"));
  for (const n of NODES) {
    await c.ok(n, [
      "sh",
      "-c",
      `set -e; mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge /etc/slurm ` +
      `/var/spool/slurmd /var/spool/slurmctld; install -o munge -g munge -m 0400 ${key} /etc/munge/munge.key; ` +
      `chown munge:munge /run/munge /var/log/munge /var/lib/munge; chmod 0711 /run/munge; ` +
      `cp ${conf} /etc/slurm/slurm.conf; systemctl start munge; ` +
      `echo "PPM=$(command -v ppm)" > /etc/default/ppm-slurm`,
    ]);
  }
  await c.ok(1, ["systemctl", "start", "slurmctld"], 180_000);
  for (const n of NODES) await c.ok(n, ["systemctl", "start", "slurmd"], 180_000);
  await c.waitFor(1, "[ $(sinfo -h -N -o '%T' | grep -c idle) -eq 3 ]", 240);
}

async function jobState(c: TestCluster, id: string): Promise<string> {
  const r = await c.exec(1, ["scontrol", "-o", "show", "job", id]);
  return /JobState=(\S+)/.exec(r.stdout)?.[1] ?? "?";
}

Deno.test({
  name: "guest 6.1: Slurm prolog drains ppm-managed work off a node for an exclusive job",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    await ensurePackages(["slurm-wlm", "munge"], "the Slurm test");
    const progs = await buildPrograms(join(stateDir(), "test-programs"));
    const sleeper = guestPath(progs.sleeper);
    const dir = join(stateDir(), "test-slurm");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.mkdir(dir, { recursive: true });
    const secret = join(dir, "secret");
    await generateSecret(secret);
    await Deno.writeFile(join(dir, "munge.key"), crypto.getRandomValues(new Uint8Array(1024)));
    const scripts = join(PROJECT_ROOT, "packaging", "slurm");
    await Deno.writeTextFile(
      join(dir, "slurm.conf"),
      SLURM_CONF(
        guestPath(join(scripts, "ppm-prolog.sh")),
        guestPath(join(scripts, "ppm-epilog.sh")),
      ),
    );
    try {
      await withCluster(
        { name: "tslurm", nodes: 3, kernel: "6.1", memory: 1024, init: "systemd" },
        async (c) => {
          const agents = new Agents(c, secret);
          for (const n of NODES) assertEquals((await c.ppm(n, ["module", "load"])).code, 0);
          await agents.startAll(NODES);
          await slurmUp(c, dir);
          const managed = async (n: number, count: number): Promise<string[]> => {
            const pids: string[] = [];
            for (let k = 0; k < count; k++) {
              const pid = (await c.ok(n, [
                "sh",
                "-c",
                `${highPids()}cd /tmp; ${sleeper} 100000 < /dev/null > /tmp/sl-${k}.out 2>&1 & echo $!`,
              ])).trim();
              await c.ok(n, ["ppm", "manage", pid]);
              pids.push(pid);
            }
            return pids;
          };

          await t.step(
            "an exclusive job on node2 runs once its managed processes left",
            async () => {
              const pids = await managed(2, 2);
              const id = (await c.ok(1, [
                "sbatch",
                "--parsable",
                "--exclusive",
                "-w",
                "node2",
                "-o",
                "/tmp/job-%j.out",
                "--wrap",
                `echo "managed here: $(for p in ${
                  pids.join(" ")
                }; do kill -0 $p 2>/dev/null && echo $p; done | wc -l)"`,
              ])).trim();
              const t0 = Date.now();
              for (
                let i = 0;
                i < 200 && !/COMPLETED|FAILED|CANCELLED|NODE_FAIL/.test(await jobState(c, id));
                i++
              ) {
                await new Promise((r) => setTimeout(r, 3000));
              }
              assertEquals(await jobState(c, id), "COMPLETED");
              console.log(
                `  job ${id} completed ${((Date.now() - t0) / 1000).toFixed(0)} s after sbatch`,
              );
              assertMatch(await c.ok(2, ["cat", `/tmp/job-${id}.out`]), /^managed here: 0$/m);
              // They run on: on node1 or node3, same PIDs.
              for (const pid of pids) {
                const where = [];
                for (const n of [1, 3]) {
                  if ((await c.exec(n, ["kill", "-0", pid])).code === 0) where.push(n);
                }
                assertEquals(where.length, 1, `process ${pid} runs on ${where.length} other nodes`);
              }
              // The epilog ended the drain: node2 accepts processes again.
              await c.waitFor(2, `! [ -e /run/ppm/slurm/drained-${id} ]`, 120);
              const st = JSON.parse(await c.ok(2, ["sh", "-c", "ppm undrain --json"]));
              assertEquals(st.draining, false);
              assertMatch(await c.ok(2, ["cat", "/tmp/agent.log"]), /drain ended/);
            },
          );

          await t.step(
            "a drain that cannot finish fails the prolog (exit 1) and is undone",
            async () => {
              // No peer takes anything: both other nodes are cordoned.
              for (const n of [1, 3]) await c.ok(n, ["ppm", "cordon"]);
              try {
                await managed(2, 1);
                const r = await c.exec(2, [
                  "sh",
                  "-c",
                  `SLURM_JOB_ID=999001 PPM_DRAIN=always PPM_DRAIN_DEADLINE=15 ${
                    guestPath(join(scripts, "ppm-prolog.sh"))
                  }`,
                ], 180_000);
                assertEquals(r.code, 1, r.stderr);
                assertMatch(r.stderr, /managed processes still here after 15 s/);
                const st = JSON.parse(await c.ok(2, ["sh", "-c", "ppm undrain --json"]));
                assertEquals(st.draining, false);
                assert(st.managedHere >= 1, JSON.stringify(st));
                // Without an agent there is nothing to drain: the job may run.
                const none = await c.exec(2, [
                  "sh",
                  "-c",
                  `SLURM_JOB_ID=999002 PPM_DRAIN=always PPM=/bin/false ${
                    guestPath(join(scripts, "ppm-prolog.sh"))
                  }`,
                ]);
                assertEquals(none.code, 0, none.stderr);
              } finally {
                for (const n of [1, 3]) await c.exec(n, ["ppm", "uncordon"]);
              }
            },
          );
        },
      );
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
