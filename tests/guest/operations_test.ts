/**
 * Operations, on three guests whose PID 1 is systemd, in one boot:
 *
 * - the Debian packages, as an admin installs them on node3 (node3 runs the
 *   packaged agent and module only): the install, whose DKMS build takes
 *   minutes under TCG, runs while the first steps use node1 and node2;
 * - the packaged unit (packaging/ppm.service) starts the agent with
 *   Type=notify; a process that arrives leaves the agent's cgroup for a scope
 *   of its own; `systemctl restart ppm` and `systemctl stop ppm` on the node
 *   it runs on leave it running and writing (an echo server whose client
 *   keeps streaming), and a process whose output is relayed to the node it
 *   came from keeps it going there, every line once and in order (its keeper
 *   holds its FIFOs meanwhile, the next agent takes the relay up);
 * - Debian's Slurm (slurmctld, slurmd, munge as systemd units) with ppm's
 *   prolog and epilog (packaging/slurm): an exclusive job on node2 starts
 *   once ppm drained node2's managed processes to the other nodes, and its
 *   epilog ends the drain; a drain that cannot finish in time fails the
 *   prolog (exit 1) and is undone.
 *
 * The packages: ppm-dkms
 *   (Debian's dkms builds the module for the guest's kernel) and ppm;
 *   `modprobe ppm` loads the DKMS module, the packaged unit starts the
 *   packaged agent, and `ppm check` passes.
 */
import { join } from "node:path";
import { ensurePackages } from "../../core/host/packages.ts";
import { PROJECT_ROOT, stateDir } from "../../core/paths.ts";
import { generateSecret } from "../../core/security/secret.ts";
import { VERSION } from "../../core/version.ts";
import { guestPath } from "../../core/vcluster/spec.ts";
import { buildCliPackage, buildDkmsPackage } from "../../packaging/package.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { highPids, type TestCluster, withCluster } from "../support/cluster.ts";
import { buildPrograms } from "../support/programs.ts";
import { TEST_PACKAGES } from "../support/packages.ts";
import { settle, unsettle } from "../support/settle.ts";

const NODES = [1, 2, 3];

/** Installs the unit with a drop-in for this guest's ppm and starts it; waits for READY. */
async function installUnit(c: TestCluster, n: number, secret: string): Promise<void> {
  const unit = guestPath(join(PROJECT_ROOT, "packaging", "ppm.service"));
  await c.ok(n, [
    "sh",
    "-c",
    `set -e; install -m 0644 ${unit} /etc/systemd/system/ppm.service; ` +
    "mkdir -p -m 0700 /etc/ppm /etc/systemd/system/ppm.service.d; " +
    `install -m 0600 ${guestPath(secret)} /etc/ppm/secret; ` +
    `printf '[Service]\\nExecStart=\\nExecStart=%s daemon --node-name node${n} --announce-interval 1\\n' ` +
    `"$(command -v ppm)" > /etc/systemd/system/ppm.service.d/test.conf; ` +
    "systemctl daemon-reload",
  ]);
  // Type=notify: start returns once the agent said READY=1 (its control socket is up).
  await c.ok(n, ["systemctl", "start", "ppm"], 300_000);
  assertEquals((await c.ok(n, ["systemctl", "is-active", "ppm"])).trim(), "active");
  await c.ok(n, ["test", "-S", "/run/ppm/ppm.sock"]);
}

/**
 * Installs the packages on node3 as an admin would: the cluster's secret,
 * then `dpkg -i` of both. Only the guest's own kernel keeps its headers:
 * under TCG each DKMS build takes minutes, and the other kernel's would be
 * the same build again. Returns dpkg's result, its seconds and the kernel.
 */
async function installPackages(c: TestCluster, debs: string[], secret: string) {
  const kver = (await c.ok(3, ["uname", "-r"])).trim();
  await c.ok(3, [
    "sh",
    "-c",
    `set -e; mkdir -p -m 0700 /etc/ppm; install -m 0600 ${guestPath(secret)} /etc/ppm/secret; ` +
    'for k in /lib/modules/*; do [ "${k##*/}" = "$(uname -r)" ] || rm -f "$k/build"; done',
  ]);
  const t0 = Date.now();
  const r = await c.exec(3, ["dpkg", "-i", ...debs.map(guestPath)], 1_200_000);
  return { r, seconds: Math.round((Date.now() - t0) / 1000), kver };
}

async function ticks(c: TestCluster, n: number, out: string): Promise<number> {
  const r = await c.exec(n, ["sh", "-c", `grep -c '^tick ' ${out}`]);
  return Number(r.stdout.trim() || "0");
}

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
  name:
    "guest 6.1 with systemd: the ppm unit and agent restarts, Slurm prolog and epilog, the Debian packages",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const progs = await buildPrograms(join(stateDir(), "test-programs"));
    const echo = guestPath(progs.echo_server), client = guestPath(progs.stream_client);
    const sleeper = guestPath(progs.sleeper);
    const secret = join(stateDir(), "test-secret-systemd");
    await Deno.remove(secret).catch(() => {});
    await generateSecret(secret);
    await ensurePackages(TEST_PACKAGES.operations, "the operations test");
    const dir = join(stateDir(), "test-operations");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeFile(join(dir, "munge.key"), crypto.getRandomValues(new Uint8Array(1024)));
    const scripts = join(PROJECT_ROOT, "packaging", "slurm");
    await Deno.writeTextFile(
      join(dir, "slurm.conf"),
      SLURM_CONF(
        guestPath(join(scripts, "ppm-prolog.sh")),
        guestPath(join(scripts, "ppm-epilog.sh")),
      ),
    );
    const debs = [
      await buildDkmsPackage(dir, VERSION, "none"),
      await buildCliPackage(dir, VERSION, "none"),
    ];
    const spec = { name: "tops", nodes: 3, kernel: "6.1", memory: 1536, init: "systemd" } as const;
    try {
      await withCluster(spec, async (c) => {
        // node3 gets the packages as an admin installs them, while node1 and node2 begin.
        const install = settle(installPackages(c, debs, secret));
        await Promise.all(
          [1, 2].map(async (n) => assertEquals((await c.ppm(n, ["module", "load"])).code, 0)),
        );

        await t.step(
          "systemctl start ppm returns once the agent is ready (Type=notify)",
          async () => {
            for (const n of [1, 2]) await installUnit(c, n, secret);
            const show = await c.ok(1, [
              "systemctl",
              "show",
              "-p",
              "Type,NotifyAccess,MainPID",
              "ppm",
            ]);
            assertMatch(show, /^Type=notify$/m);
            await c.waitFor(1, 'ppm peers --json | grep -q \'"name": "node2"\'', 120);
          },
        );

        let server = "", ticker = "";
        await t.step("a process that arrives runs in a scope of its own", async () => {
          // The server's output is /dev/null: nothing of it is relayed by the agents.
          server = (await c.ok(1, [
            "sh",
            "-c",
            `${highPids()}cd /tmp; ${echo} 7100 > /dev/null 2>&1 < /dev/null & echo $!`,
          ])).trim();
          await c.waitFor(1, "ss -ltn | grep -q ':7100 '", 60);
          await c.ok(2, [
            "sh",
            "-c",
            `cd /tmp; ${client} 10.77.0.1 7100 400 64 > /tmp/sc.out 2>&1 < /dev/null &`,
          ]);
          await c.waitFor(2, "grep -q '^tick 3 ' /tmp/sc.out", 120);
          const r = await c.ppm(1, ["migrate", server, "--to", "node2"], 300_000);
          assertEquals(r.code, 0, r.stderr);
          await c.waitFor(2, `kill -0 ${server}`, 30);
          await c.waitFor(
            2,
            `grep -q '/ppm-${server}-[0-9a-f]*\\.scope$' /proc/${server}/cgroup`,
            60,
          );
          assertMatch(
            await c.ok(2, ["systemctl", "status", "--no-pager", `ppm-${server}-*.scope`]),
            /ppm: process \d+ \(echo_server\) from node1/,
          );
          // A process whose output is relayed: its stdout is a file on node1.
          ticker = (await c.ok(1, [
            "sh",
            "-c",
            `${highPids()}cd /tmp; ${sleeper} 100000 > /tmp/tk.out 2> /tmp/tk.err < /dev/null & echo $!`,
          ])).trim();
          await c.waitFor(1, "grep -q '^tick 2 ' /tmp/tk.out", 60);
          const m = await c.ppm(1, ["migrate", ticker, "--to", "node2"], 300_000);
          assertEquals(m.code, 0, m.stderr);
          // Its relay keeper shares its scope.
          await c.waitFor(
            2,
            `for k in $(pgrep -x ppm-keeper); do grep -q "ppm-${ticker}-" /proc/$k/cgroup && ` +
              `grep -q "ppm-${ticker}-" /proc/${ticker}/cgroup && exit 0; done; exit 1`,
            60,
          );
        });

        await t.step("systemctl restart ppm, then stop: it runs on and keeps writing", async () => {
          const agentBefore =
            (await c.ok(2, ["systemctl", "show", "-p", "MainPID", "--value", "ppm"])).trim();
          await c.ok(2, ["systemctl", "restart", "ppm"], 300_000);
          const agentAfter =
            (await c.ok(2, ["systemctl", "show", "-p", "MainPID", "--value", "ppm"]))
              .trim();
          assert(
            agentAfter !== agentBefore && agentAfter !== "0",
            `${agentBefore} → ${agentAfter}`,
          );
          await c.ok(2, ["kill", "-0", server]);
          let before = await ticks(c, 2, "/tmp/sc.out");
          await c.waitFor(2, `[ $(grep -c '^tick ' /tmp/sc.out) -ge ${before + 5} ]`, 120);
          await c.ok(2, ["systemctl", "stop", "ppm"], 120_000);
          await c.ok(2, ["kill", "-0", server]);
          before = await ticks(c, 2, "/tmp/sc.out");
          await c.waitFor(2, `[ $(grep -c '^tick ' /tmp/sc.out) -ge ${before + 5} ]`, 120);
          const out = await c.ok(2, ["cat", "/tmp/sc.out"]);
          assert(!/^FAIL/m.test(out), out.slice(-1500));
          // The relayed process waited for an agent (its output in its FIFO), and runs.
          await c.ok(2, ["kill", "-0", ticker]);
          const relayed = await ticks(c, 1, "/tmp/tk.out");
          await c.ok(2, ["systemctl", "start", "ppm"], 300_000);
          // The new agent takes its relay up: node1's file goes on, every line once, in order.
          await c.waitFor(1, `[ $(grep -c '^tick ' /tmp/tk.out) -ge ${relayed + 10} ]`, 180);
          const lines = (await c.ok(1, ["sh", "-c", "grep '^tick ' /tmp/tk.out | cut -d' ' -f2"]))
            .trim().split("\n").map(Number);
          assertEquals(lines, lines.map((_, i) => i), "tick lines lost, doubled or out of order");
          assertEquals((await c.ok(1, ["cat", "/tmp/tk.err"])).trim(), "");
          assertMatch(
            await c.ok(2, ["journalctl", "-u", "ppm", "--no-pager", "-o", "cat"]),
            /relay of process \d+ taken up again by node1/,
          );
          console.log(
            `  ${await ticks(
              c,
              2,
              "/tmp/sc.out",
            )} ticks; the server ran through a restart and a stop`,
          );
        });

        await t.step(
          "dpkg installs both; DKMS builds ppm.ko for the guest's kernel",
          async () => {
            const { r, seconds, kver } = unsettle(await install);
            assertEquals(r.code, 0, `${r.stdout}\n${r.stderr}`);
            console.log(`  dpkg -i (with the DKMS build, beside the steps before): ${seconds} s`);
            const status = await c.ok(3, ["dkms", "status", "ppm"]);
            assertMatch(
              status,
              new RegExp(`ppm/${VERSION.replaceAll(".", "\\.")}, ${kver}, .*installed`),
            );
            await c.ok(3, ["test", "-f", `/lib/modules/${kver}/updates/dkms/ppm.ko`]);
          },
        );

        await t.step("modprobe ppm loads it; the packaged ppm sees it", async () => {
          await c.ok(3, ["modprobe", "ppm"]);
          const s = JSON.parse(
            await c.ok(3, ["/usr/bin/ppm", "module", "status", "--json"], 300_000),
          );
          assertEquals([s.loaded, s.device, s.abi === s.toolAbi], [true, true, true]);
        });

        await t.step("the packaged unit starts the packaged agent; ppm check passes", async () => {
          // The secret is the one the admin put there before dpkg; the unit is the package's own.
          await c.ok(3, ["systemctl", "start", "ppm"], 300_000);
          assertMatch(
            await c.ok(3, ["systemctl", "show", "-p", "ExecStart", "--value", "ppm"]),
            /path=\/usr\/bin\/ppm ; argv\[\]=\/usr\/bin\/ppm daemon/,
          );
          const r = await c.exec(
            3,
            ["/usr/bin/ppm", "check", "--min-peers", "2", "--json"],
            300_000,
          );
          const j = JSON.parse(r.stdout);
          const shown = j.checks.map((x: { name: string; level: string; detail: string }) =>
            `${x.level} ${x.name}: ${x.detail}`
          ).join("\n");
          console.log(shown.replace(/^/gm, "  "));
          assertEquals(r.code, 0, shown);
          assert(j.ok, shown);
        });

        await t.step("Slurm starts on the three nodes (slurmctld, slurmd, munge)", async () => {
          await slurmUp(c, dir);
        });
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
            assertMatch(
              await c.ok(2, ["journalctl", "-u", "ppm", "--no-pager", "-o", "cat"]),
              /drain ended/,
            );
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
      });
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
