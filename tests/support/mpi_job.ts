/**
 * An MPICH job over three guests, as the MPI guest test and the benchmark
 * run it (docs/mpi.md): hydra's manual launcher, one rank per node, the
 * settings and shims that make a rank migratable. Written against
 * {@link JobNodes}, which both the test's cluster (through
 * {@link clusterNodes}) and the benchmark's `Guests` satisfy.
 *
 * @module
 */
import { join } from "node:path";
import { guestPath, nodeAddress } from "../../core/vcluster/spec.ts";
import { killOurs } from "../../bench/lib/measure.ts";
import { parseSteps, shJoin, timedStep } from "../../bench/lib/scripts.ts";
import { assertEquals, assertMatch } from "./assert.ts";
import { highPids, type TestCluster } from "./cluster.ts";
import { PROGRAMS_DIR } from "./programs.ts";

/** What the job helpers need of a cluster: shell scripts on its nodes, each bounded in time. */
export interface JobNodes {
  /** Runs a shell script on node `n` (1-based). */
  sh(
    n: number,
    script: string,
    timeoutMs?: number,
  ): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Runs a shell script on node `n`; throws with its output when it fails. */
  ok(n: number, script: string, timeoutMs?: number): Promise<string>;
  /** Polls the shell test `cond` on node `n` for at most `seconds`; throws if it never holds. */
  waitFor(n: number, cond: string, seconds: number): Promise<void>;
}

/** A test cluster as {@link JobNodes}. */
export function clusterNodes(c: TestCluster): JobNodes {
  return {
    sh: (n, script, t) => c.exec(n, ["sh", "-c", script], t),
    ok: (n, script, t) => c.ok(n, ["sh", "-c", script], t),
    waitFor: (n, cond, seconds) => c.waitFor(n, cond, seconds),
  };
}

/** The nodes of a job: rank k runs under proxy k on node k + 1. */
export const MPI_NODES = [1, 2, 3];
/** `ring N MS MIB`'s iterations in the test and the benchmark: the result depends on them alone. */
export const RING_N = 80;
/**
 * The last line of `ring 80 MS MIB` (any MS), by MIB: from an uninterrupted run on a Debian 12
 * host (MPICH 4.0.2), and the same from ring.c's arithmetic done by hand.
 */
export const RING_DONE: Readonly<Record<number, string>> = {
  0: "done 80 8503b7b567f673d2",
  64: "done 80 9b1c8453907ff089",
};
/** The longest a job may take, in seconds (mpiexec runs under `timeout`). */
export const JOB_S = 300;

/** mpiexec's environment, passed on to every rank (docs/mpi.md, "Settings"). */
export function mpiEnv(preload: string): string[] {
  return [
    "MPIR_CVAR_NOLOCAL=1",
    "UCX_TLS=tcp,self",
    "UCX_NET_DEVICES=eth0",
    "UCX_MEM_EVENTS=no",
    `LD_PRELOAD=${preload}`,
  ];
}

/** Compiles with `cc` (-O2 -g -Wall -Werror and `args`) into `out`, whole or not at all. */
export async function compile(cc: string, out: string, args: string[]): Promise<string> {
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
}

/**
 * Builds the ring program (mpicc.mpich) and the two preloaded shims into `dir` (host paths);
 * `preload` is the shims' LD_PRELOAD list as the guests see them.
 */
export async function buildMpi(dir: string): Promise<{ ring: string; preload: string }> {
  await Deno.mkdir(dir, { recursive: true });
  const src = join(PROGRAMS_DIR, "mpi");

  // Always the suffixed names: openmpi-bin, when installed, takes the plain `mpicc`.
  const ring = await compile("mpicc.mpich", join(dir, "ring"), [join(src, "ring.c")]);
  const shims = [];
  for (const s of ["nodisc", "noleak"]) {
    shims.push(
      await compile("gcc", join(dir, `${s}.so`), ["-shared", "-fPIC", join(src, `${s}.c`)]),
    );
  }
  return { ring, preload: shims.map(guestPath).join(":") };
}

/** What a job runs, and where its files go. */
export interface JobSpec {
  /** Names its files: DIR/TAG.out, .err, .rc, .time, .mpid, .proxyK.out (node1's, proxies' own). */
  tag: string;
  /** The ring program and the shims (host paths from {@link buildMpi}; the guests see them). */
  ring: string;
  preload: string;
  /** ring's arguments: N, MS, and MIB and "busy" when given. */
  args: (string | number)[];
  /** The folder of its files on each node (default /tmp). */
  dir?: string;
  /** Where the launch line is told (default: nowhere). */
  log?: (line: string) => void;
}

/** One started job: where its files are and the PIDs to clean up. */
export interface Job {
  tag: string;
  dir: string;
  /** node1: the `timeout` that runs mpiexec. */
  mpiexec: string;
  /** proxies[i]: hydra_pmi_proxy --proxy-id i, on node i + 1. */
  proxies: string[];
}

/** The path of one of a job's files on its node: `file(job, "out")` is DIR/TAG.out. */
export function jobFile(job: Pick<Job, "tag" | "dir">, ext: string): string {
  return `${job.dir}/${job.tag}.${ext}`;
}

/** mpiexec's HYDRA_LAUNCH lines by proxy id, each as argv. */
export function launchLines(out: string): Map<number, string[]> {
  const lines = new Map<number, string[]>();
  for (const l of out.split("\n")) {
    const m = /^HYDRA_LAUNCH: (.*--proxy-id (\d+))\s*$/.exec(l);
    if (m) lines.set(Number(m[2]), m[1].split(/\s+/));
  }
  return lines;
}

/**
 * The script that starts mpiexec in the background on node1 and prints its PID: its output in
 * TAG.out and .err, its exit code in .rc, bounded by `timeout`, timed in the guest (a `step job`
 * line in .time, written before .rc).
 */
export function launchScript(spec: JobSpec): string {
  const dir = spec.dir ?? "/tmp";
  const f = (ext: string) => jobFile({ tag: spec.tag, dir }, ext);
  const hosts = MPI_NODES.map(nodeAddress).join(",");
  const mpiexec = `env ${mpiEnv(spec.preload).join(" ")} timeout ${JOB_S} mpiexec.hydra ` +
    `-launcher manual -iface eth0 -hosts ${hosts} -n ${MPI_NODES.length} ` +
    `${guestPath(spec.ring)} ${spec.args.join(" ")}`;
  const run = timedStep(
    "job",
    `${mpiexec} > ${f("out")} 2> ${f("err")} < /dev/null & echo $! > ${f("mpid")}; wait $!`,
  );
  return `cd /tmp; rm -f ${dir}/${spec.tag}.*; ` +
    `( ( ${run} ) > ${f("time")}; echo $? > ${f("rc")} ) > /dev/null 2>&1 < /dev/null & ` +
    `n=0; while [ ! -s ${f("mpid")} ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done; ` +
    `cat ${f("mpid")}`;
}

/**
 * Starts ring on 3 ranks: mpiexec on node1 ({@link launchScript}), then each HYDRA_LAUNCH line
 * on its node (rank r on node r + 1). The proxy on node2 starts at high PIDs, so that rank 1's
 * PID is free on the nodes it moves to.
 */
export async function startJob(nodes: JobNodes, spec: JobSpec): Promise<Job> {
  const dir = spec.dir ?? "/tmp";
  const job: Job = { tag: spec.tag, dir, mpiexec: "", proxies: [] };
  job.mpiexec = (await nodes.ok(1, launchScript(spec))).trim();
  await nodes.waitFor(
    1,
    `grep -q '^HYDRA_LAUNCH_END' ${jobFile(job, "out")} || [ -s ${jobFile(job, "rc")} ]`,
    60,
  );
  const out = await nodes.ok(1, `cat ${jobFile(job, "out")}`);
  const lines = launchLines(out);
  assertEquals([...lines.keys()].sort(), [0, 1, 2], `mpiexec's launch lines:\n${out}`);
  spec.log?.(`  ${spec.tag}: ${lines.get(0)!.join(" ")}`);
  for (const i of [0, 1, 2]) {
    // The proxy needs no environment: the ranks get theirs from mpiexec.
    const p = (await nodes.ok(
      i + 1,
      `${i === 1 ? highPids() : ""}cd /; ` +
        `env -i ${shJoin(lines.get(i)!)} > ${jobFile(job, `proxy${i}.out`)} 2>&1 < /dev/null & ` +
        "echo $!",
    )).trim();
    job.proxies.push(p);
  }
  return job;
}

/** How a job ended: mpiexec's exit code, its output, and its time from start to exit (ms). */
export interface JobEnd {
  rc: string;
  out: string;
  wallMs: number;
}

/** Waits at most `seconds` until the job ended. */
export async function endOf(nodes: JobNodes, job: Job, seconds: number): Promise<JobEnd> {
  await nodes.waitFor(1, `[ -s ${jobFile(job, "rc")} ]`, seconds);
  const rc = (await nodes.ok(1, `cat ${jobFile(job, "rc")}`)).trim();
  const out = await nodes.ok(1, `cat ${jobFile(job, "out")}`);
  const time = await nodes.ok(1, `cat ${jobFile(job, "time")}`);
  // Written before the exit code, whatever the exit code.
  const step = parseSteps(time).get("job");
  if (!step) throw new Error(`no time of job ${job.tag} in ${jobFile(job, "time")}: ${time}`);
  return { rc, out, wallMs: step.ms };
}

/** The result lines of a job's output: every tick and the done line. */
export function resultLines(out: string): string[] {
  return out.split("\n").filter((l) => /^(tick|done) /.test(l));
}

/**
 * What is wrong with a finished `ring N ...` job against its reference `done` line: undefined
 * when it exited 0 with N ticks and that line, else the first thing that is wrong.
 */
export function jobProblem(end: Pick<JobEnd, "rc" | "out">, n: number, done: string) {
  if (end.rc !== "0") return `the job exited ${end.rc}`;
  const lines = resultLines(end.out);
  const ticks = lines.filter((l) => l.startsWith("tick ")).length;
  if (ticks !== n) return `the job printed ${ticks} ticks, not ${n}`;
  const last = lines.at(-1);
  if (last !== done) return `the job ended with ${JSON.stringify(last ?? "")}, not "${done}"`;
  return undefined;
}

/** Ticks rank 0 printed so far. */
export async function ticks(nodes: JobNodes, job: Job): Promise<number> {
  return Number((await nodes.ok(1, `grep -c '^tick ' ${jobFile(job, "out")} || true`)).trim());
}

/** Rank 1 of `job`: the child of proxy 1 on node2 that runs ring (waits for it at most 60 s). */
export async function findRank1(nodes: JobNodes, job: Job): Promise<string> {
  const child = `awk '$4 == ${job.proxies[1]} && $2 == "(ring)" { print $1 }' ` +
    "/proc/[0-9]*/stat 2>/dev/null";
  await nodes.waitFor(2, `[ -n "$(${child})" ]`, 60);
  const pid = (await nodes.ok(2, child)).trim();
  assertMatch(pid, /^[0-9]+$/, `rank 1 under proxy ${job.proxies[1]}: ${pid}`);
  return pid;
}

/** {@link findRank1}, once the job printed `tick` (at most 120 s). */
export async function rank1(nodes: JobNodes, job: Job, tick = 5): Promise<string> {
  const pid = await findRank1(nodes, job);
  await nodes.waitFor(1, `grep -q '^tick ${tick} ' ${jobFile(job, "out")}`, 120);
  return pid;
}

/**
 * Ends what is left of a job (by PID, on every node, each only while it still runs as what it
 * was), rank 1 and its deputy (which names itself as its process) included when known.
 */
export async function stopJob(nodes: JobNodes, job: Job, rank?: string): Promise<void> {
  if (job.mpiexec) await nodes.sh(1, killOurs(job.mpiexec, "timeout", "TERM"));
  for (const [i, p] of job.proxies.entries()) {
    await nodes.sh(i + 1, killOurs(p, "hydra_pmi_proxy"));
  }
  if (rank) { for (const n of MPI_NODES) await nodes.sh(n, killOurs(rank, "ring")); }
}

/** What a failure should show: mpiexec's output, the proxies' and the rank's descriptors. */
export async function jobReport(nodes: JobNodes, job: Job, rank?: string): Promise<string> {
  const parts: string[] = [];
  const show = async (n: number, cmd: string) => {
    const r = await nodes.sh(n, cmd, 30_000)
      .catch((e) => ({ stdout: `(cannot read: ${(e as Error).message})`, stderr: "" }));
    parts.push(`--- node${n}: ${cmd} ---\n${r.stdout}${r.stderr}`);
  };
  const f = (ext: string) => jobFile(job, ext);
  await show(1, `tail -n 20 ${f("out")}; cat ${f("err")} ${f("rc")}`);
  for (const i of [0, 1, 2]) await show(i + 1, `cat ${f(`proxy${i}.out`)}`);
  if (rank) {
    for (const n of MPI_NODES) {
      await show(n, `ls -l /proc/${rank}/fd 2>&1 | tail -n +2`);
    }
  }
  return parts.join("\n");
}
