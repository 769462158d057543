/**
 * An Open MPI job on the test's guests (tests/guest/mpi_test.ts), the way
 * docs/mpi.md says to make one migratable: 3 ranks on 3 nodes, `mpirun` on
 * node1, an `orted` on each other node started through a launcher agent
 * (tests/programs/mpi/rsh_agent.sh) and an exec server on every node in
 * place of sshd (exec_server.py); TCP between ranks (`btl tcp,self`), PMIx's
 * hash store (no shared dstore files), no /dev/shm segment, no IPv6
 * listener (noinet6.so).
 *
 * @module
 */
import { join } from "node:path";
import { guestPath, nodeAddress } from "../../../core/vcluster/spec.ts";
import { assertMatch } from "../../support/assert.ts";
import { highPids, type TestCluster } from "../../support/cluster.ts";
import { PROGRAMS_DIR } from "../../support/programs.ts";
import { compile } from "../../support/mpi_job.ts";

/** The exec servers' port. */
const EXEC_PORT = 7999;
const NODES = [1, 2, 3];

/** What the Open MPI job runs, as guest paths. */
export interface OpenMpiPrograms {
  /** ring.c built with mpicc.openmpi. */
  ring: string;
  /** The no-IPv6 shim. */
  noinet6: string;
  /** The launcher agent. */
  agent: string;
  /** The exec server. */
  server: string;
}

/** Builds the Open MPI ring and the shim into `dir` (the host's packages must be installed). */
export async function buildOpenMpi(dir: string): Promise<OpenMpiPrograms> {
  await Deno.mkdir(dir, { recursive: true });
  const src = join(PROGRAMS_DIR, "mpi");
  const ring = await compile("mpicc.openmpi", join(dir, "ring"), [join(src, "ring.c")]);
  const noinet6 = await compile("gcc", join(dir, "noinet6.so"), [
    "-shared",
    "-fPIC",
    join(src, "noinet6.c"),
    "-ldl",
  ]);
  return {
    ring: guestPath(ring),
    noinet6: guestPath(noinet6),
    agent: guestPath(join(src, "rsh_agent.sh")),
    server: guestPath(join(src, "exec_server.py")),
  };
}

/**
 * Starts an exec server on every node (node2's makes its processes at high
 * PIDs, so that its rank's PID is free where it moves); their PIDs by node.
 */
export async function startExecServers(
  c: TestCluster,
  p: OpenMpiPrograms,
): Promise<Map<number, string>> {
  const pids = new Map<number, string>();
  for (const n of NODES) {
    const prefix = n === 2 ? highPids() : "";
    const pid = (await c.ok(n, [
      "sh",
      "-c",
      `cd /; env PMIX_MCA_gds=hash python3 ${p.server} ${EXEC_PORT} '${prefix}' ` +
      "> /tmp/exec_server.out 2>&1 < /dev/null & echo $!",
    ])).trim();
    pids.set(n, pid);
  }
  for (const n of NODES) await c.waitFor(n, "grep -q '^ready' /tmp/exec_server.out", 60);
  return pids;
}

/** A running Open MPI job: its tag (node1's /tmp/TAG.*) and mpirun's PID there. */
export interface OpenMpiJob {
  /** Names its files. */
  tag: string;
  /** node1: the `timeout` that runs mpirun. */
  mpirun: string;
}

/** Starts `ring N MS` on 3 ranks (rank r on node r + 1), bounded by `seconds`. */
export async function startOpenMpiJob(
  c: TestCluster,
  p: OpenMpiPrograms,
  tag: string,
  args: string,
  seconds: number,
): Promise<OpenMpiJob> {
  const hosts = NODES.map(nodeAddress).join(",");
  const mca = [
    "plm_rsh_agent " + p.agent,
    "plm_rsh_no_tree_spawn 1",
    "pml ob1",
    "btl tcp,self",
    "btl_tcp_if_include eth0",
    // The OS picks each rank's listening port: from the default minimum (1024) every rank
    // binds the same one, on its own node, and a rank could not move to another's node.
    "btl_tcp_port_min_v4 0",
    "oob_tcp_if_include eth0",
    "shmem mmap",
  ].map((m) => `--mca ${m}`).join(" ");
  const mpirun = `env PMIX_MCA_gds=hash timeout ${seconds} mpirun.openmpi --allow-run-as-root ` +
    `--host ${hosts} -np 3 ${mca} -x PMIX_MCA_gds=hash -x LD_PRELOAD=${p.noinet6} ` +
    `${p.ring} ${args}`;
  const pid = (await c.ok(1, [
    "sh",
    "-c",
    `cd /tmp; rm -f /tmp/${tag}.*; (${mpirun} > /tmp/${tag}.out 2> /tmp/${tag}.err < /dev/null & ` +
    `echo $! > /tmp/${tag}.mpid; wait $!; echo $? > /tmp/${tag}.rc) > /dev/null 2>&1 < /dev/null & ` +
    `n=0; while [ ! -s /tmp/${tag}.mpid ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done; ` +
    `cat /tmp/${tag}.mpid`,
  ])).trim();
  assertMatch(pid, /^[0-9]+$/, "mpirun's PID");
  return { tag, mpirun: pid };
}

/** Rank 1 (the ring process on node2), once the job ticks. */
export async function openMpiRank1(c: TestCluster, job: OpenMpiJob): Promise<string> {
  await c.waitFor(2, '[ -n "$(pgrep -x ring)" ]', 120);
  const pid = (await c.ok(2, ["pgrep", "-x", "ring"])).trim();
  assertMatch(pid, /^[0-9]+$/, `rank 1 on node2: ${pid}`);
  await c.waitFor(1, `grep -q '^tick 5 ' /tmp/${job.tag}.out`, 120);
  return pid;
}

/** Waits for the job's end: its exit code and output. */
export async function openMpiEnd(c: TestCluster, job: OpenMpiJob, seconds: number) {
  await c.waitFor(1, `[ -s /tmp/${job.tag}.rc ]`, seconds);
  return {
    rc: (await c.ok(1, ["cat", `/tmp/${job.tag}.rc`])).trim(),
    out: await c.ok(1, ["cat", `/tmp/${job.tag}.out`]),
  };
}

/** What a failure should show: mpirun's output and the daemons' logs. */
export async function openMpiReport(c: TestCluster, job: OpenMpiJob): Promise<string> {
  const parts: string[] = [];
  for (
    const [n, cmd] of [
      [1, `tail -n 20 /tmp/${job.tag}.out; tail -n 30 /tmp/${job.tag}.err; cat /tmp/${job.tag}.rc`],
      [2, "tail -n 20 /tmp/orted.log; cat /tmp/exec_server.out"],
      [3, "tail -n 20 /tmp/orted.log"],
    ] as const
  ) {
    const r = await c.exec(n, ["sh", "-c", cmd], 30_000)
      .catch((e) => ({ stdout: `(cannot read: ${(e as Error).message})`, stderr: "" }));
    parts.push(`--- node${n}: ${cmd} ---\n${r.stdout}${r.stderr}`);
  }
  return parts.join("\n");
}

/** Ends what is left of the job and the exec servers (by PID; the daemons and ranks by name). */
export async function stopOpenMpi(
  c: TestCluster,
  job: OpenMpiJob | undefined,
  servers: Map<number, string>,
): Promise<void> {
  if (job) await c.exec(1, ["kill", job.mpirun]);
  for (const [n, pid] of servers) {
    await c.exec(n, ["kill", pid]);
    // The daemons and ranks this test's servers started (no other runs on these guests).
    await c.exec(n, [
      "sh",
      "-c",
      "for p in $(pgrep -x orted) $(pgrep -x ring); do kill -KILL $p; done",
    ]);
  }
}
