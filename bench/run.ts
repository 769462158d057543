/**
 * `deno task bench [--quick] [--json]`: ppm against CRIU and against the
 * link, measured side by side in one two-node virtual cluster (kernel
 * 6.1; three nodes when an MPI job is among the workloads), interleaved
 * round by round: for each round, the link, then per workload ppm, ppm
 * --copy-all and CRIU migrations, then ppm and CRIU local checkpoint +
 * restore (an MPI job: the job unmoved, then with a rank moved by ppm, then
 * by CRIU where it can). Writes bench/results/<time>.{json,md,svg}; prints
 * the report (or the JSON) and, on stderr, what threads cost and what an
 * MPI job's move cost. See docs/bench.md.
 *
 * @module
 */
import { join } from "node:path";
import { ensurePackages } from "../core/host/packages.ts";
import { cipherNote } from "./lib/cipher.ts";
import { isRoot } from "../core/host/run.ts";
import { PROJECT_ROOT, stateDir } from "../core/paths.ts";
import { generateSecret } from "../core/security/secret.ts";
import { type ClusterState, down, up } from "../core/vcluster/cluster.ts";
import { consoleTrouble } from "../core/vcluster/console.ts";
import { guestPath } from "../core/vcluster/spec.ts";
import { buildMpi } from "../tests/support/mpi_job.ts";
import { buildPrograms } from "../tests/support/programs.ts";
import { type BenchArgs, parseArgs, USAGE } from "./lib/args.ts";
import { BENCH_PACKAGES, hostFacts, ppmFacts, qemuVersion } from "./lib/environment.ts";
import { Guests } from "./lib/guest.ts";
import { Measurer, WORK } from "./lib/measure.ts";
import { MpiBench, type MpiPrograms } from "./lib/mpi.ts";
import { mpiLines, threadLines } from "./lib/report.ts";
import { validateRunFiles, writeRun } from "./lib/results.ts";
import { hasCopyAll } from "./lib/scripts.ts";
import { type BenchResults, type Failure, type Sample, SCHEMA, type Tool } from "./lib/types.ts";
import { nodesFor, type Workload, workloadInfo, workloadsFor } from "./lib/workloads.ts";

const CLUSTER = "bench";
/**
 * MiB per guest. A 256 MiB workload needs room for its image too: ppm's
 * restore loads the whole image before it maps it, and a ppm process that
 * handled one holds hundreds of MiB until its garbage is collected. At 1536
 * MiB node1's agent was killed by the kernel's OOM killer. dirty-1g needs
 * 1 GiB for the process and as much for its plan in /dev/shm (half the
 * memory at most).
 */
const GUEST_MEMORY = 4096;
/** A series that failed this many rounds in a row is not tried again in this run. */
const GIVE_UP_AFTER = 2;

const log = (s: string) => console.error(`bench: ${s}`);

function errorText(e: unknown): string {
  return e instanceof Error ? (e.message || String(e)) : String(e);
}

/** Loads the module and starts an agent on each of the first `nodes` nodes; waits until each answers. */
async function startAgents(g: Guests, nodes: number, secret: string): Promise<void> {
  const all = Array.from({ length: nodes }, (_, i) => i + 1);
  for (const n of all) {
    await g.ok(n, `ppm module load && mkdir -p ${WORK}`, 300_000);
    await g.ok(
      n,
      `cd /tmp; ppm daemon --secret-file ${guestPath(secret)} --interface eth0 ` +
        `--node-name node${n} --announce-interval 1 >> ${WORK}/agent.log 2>&1 & echo $! > ${WORK}/agent.pid`,
    );
  }
  for (const n of all) {
    await g.waitFor(n, "ppm peers --json > /dev/null 2>&1", 180, `node${n}'s agent`);
  }
}

/**
 * The MPI job's programs when a run has an MPI workload: MPICH and gcc on the host (the guests
 * see its file system), the ring program and the shims built once.
 */
async function mpiPrograms(workloads: Workload[]): Promise<MpiPrograms | undefined> {
  if (!workloads.some((w) => w.ranks)) return undefined;
  await ensurePackages(BENCH_PACKAGES.mpi, "the benchmark's MPI job", log);
  return await buildMpi(join(stateDir(), "test-programs", "mpi"));
}

/** Runs one measurement of a series, recording its failure (bench/run.ts's `attempt`). */
type Attempt = (
  kind: Failure["kind"],
  w: Workload | undefined,
  tool: Tool | "",
  round: number,
  fn: () => Promise<void>,
) => Promise<void>;

/**
 * One round of an MPI workload: the job unmoved and with rank 1 moved by ppm (one sample), then
 * the same move tried with CRIU (a sample if it can; its refusal goes to the notes at the end).
 */
async function mpiRound(
  mpi: MpiBench,
  w: Workload,
  round: number,
  attempt: Attempt,
): Promise<Sample[]> {
  const out: Sample[] = [];
  let unmovedMs: number | undefined;
  await attempt("migrate", w, "ppm", round, async () => {
    const sample = await mpi.ppm(w, round);
    unmovedMs = sample.job?.unmovedMs;
    out.push(sample);
  });
  await attempt("migrate", w, "criu", round, async () => {
    const r = await mpi.criu(w, round, unmovedMs);
    if ("sample" in r) out.push(r.sample);
    else log(`  ${w.id}: CRIU cannot: ${r.cannot}`);
  });
  return out;
}

/** What the measurements collect, for the results. */
interface Collected {
  samples: Sample[];
  link: BenchResults["link"];
  failures: Failure[];
  notes: string[];
  guestKernel: string;
  criuVersion: string;
  cpus: number;
}

/** The programs the guests run, built, by their paths there. */
async function guestPrograms(): Promise<Measurer["bin"]> {
  const progs = await buildPrograms(join(stateDir(), "test-programs"));
  for (const p of ["bench_anon", "bench_stream", "bench_net", "echo_server"]) {
    if (!progs[p]) throw new Error(`tests/programs/${p}.c was not built`);
  }
  return {
    bench_anon: guestPath(progs.bench_anon),
    bench_stream: guestPath(progs.bench_stream),
    bench_net: guestPath(progs.bench_net),
    echo_server: guestPath(progs.echo_server),
  };
}

/** Runs `fn` as one measurement: timed, its failure noted, a series given up after a streak. */
function attempter(c: Collected): Attempt {
  const streak = new Map<string, number>();
  return async (kind, w, tool, round, fn) => {
    const key = `${kind}/${w?.id ?? ""}/${tool}`;
    if ((streak.get(key) ?? 0) >= GIVE_UP_AFTER) return;
    const t0 = performance.now();
    try {
      await fn();
      streak.set(key, 0);
      log(`  ${key} round ${round}: done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    } catch (e) {
      const n = (streak.get(key) ?? 0) + 1;
      streak.set(key, n);
      c.failures.push({ kind, workload: w?.id ?? "", tool, round, error: errorText(e) });
      log(`  ${key} round ${round} FAILED: ${errorText(e).split("\n")[0]}`);
      if (n === GIVE_UP_AFTER) {
        c.notes.push(`${key} failed ${n} rounds in a row and was not tried again in this run`);
      }
    }
  };
}

/** One round of every workload: each tool's migration, then (where there is one) local. */
async function oneRound(
  m: Measurer,
  mpi: MpiBench | undefined,
  workloads: Workload[],
  round: number,
  copyAll: boolean,
  attempt: Attempt,
  c: Collected,
): Promise<void> {
  await attempt("link", undefined, "", round, async () => {
    c.link.push(await m.link(round));
  });
  for (const w of workloads) {
    if (w.ranks && mpi) {
      c.samples.push(...await mpiRound(mpi, w, round, attempt));
      continue;
    }
    const tools: Tool[] = copyAll ? ["ppm", "ppm-copy-all", "criu"] : ["ppm", "criu"];
    for (const tool of tools) {
      await attempt("migrate", w, tool, round, async () => {
        c.samples.push(
          tool === "criu" ? await m.criuMigrate(w, round) : await m.ppmMigrate(w, tool, round),
        );
      });
    }
    if (!w.local) continue;
    for (const tool of ["ppm", "criu"] as const) {
      await attempt("local", w, tool, round, async () => {
        c.samples.push(tool === "criu" ? await m.criuLocal(w, round) : await m.ppmLocal(w, round));
      });
    }
  }
}

/** What a run measures, with what. */
interface RunPlan {
  args: BenchArgs;
  workloads: Workload[];
  nodes: number;
  /** The agents' secret file. */
  secret: string;
  /** The guest programs, by their paths in the guests. */
  bin: Measurer["bin"];
  /** The MPI programs, when a workload is an MPI job. */
  mpiProgs?: MpiPrograms;
}

/** Everything measured on the booted cluster `state`, into `c`. */
async function measureAll(state: ClusterState, p: RunPlan, c: Collected): Promise<void> {
  const { args, workloads, nodes, secret, bin, mpiProgs } = p;
  c.guestKernel = state.kernel.release;
  const g = new Guests(state);
  await startAgents(g, nodes, secret);
  c.criuVersion = (await g.ok(1, "criu --version")).trim().split("\n").join(", ");
  c.cpus = Number((await g.ok(1, "nproc")).trim());
  const help = await g.sh(1, "ppm migrate --help");
  const copyAll = hasCopyAll(help.stdout + help.stderr);
  if (!copyAll) {
    c.notes.push(
      "`ppm migrate --help` offers no --copy-all in this checkout: the ppm --copy-all series is skipped",
    );
  }
  const m = new Measurer(g, bin, { log, linkMiB: args.quick ? 16 : 64 });
  const mpi = mpiProgs && new MpiBench(g, m, mpiProgs, log);
  const attempt = attempter(c);
  await attempt("setup", undefined, "", -1, async () => {
    const root = guestPath(PROJECT_ROOT);
    const out = await g.ok(
      1,
      `cd ${root} && deno run -A --config deno.json bench/cipher_main.ts`,
      300_000,
    );
    c.notes.push(cipherNote(JSON.parse(out.trim().split("\n").at(-1)!)));
  });
  for (let round = 0; round < args.rounds; round++) {
    log(`round ${round + 1} of ${args.rounds}`);
    await oneRound(m, mpi, workloads, round, copyAll, attempt, c);
  }
  if (mpi) c.notes.push(...mpi.notes());
  for (const w of workloads.filter((x) => !x.local && !x.ranks)) {
    c.notes.push(
      `${w.id}: no local checkpoint + restore (ppm's image files hold no live connections by design)`,
    );
  }
  for (let n = 1; n <= nodes; n++) {
    await g.sh(n, `kill $(cat ${WORK}/agent.pid) 2>/dev/null; true`).catch(() => {});
  }
}

/** Boots the cluster, measures, and takes it down (also on a stop or ^C); console trouble noted. */
async function onCluster(p: RunPlan, c: Collected): Promise<void> {
  const state = await up({ name: CLUSTER, nodes: p.nodes, kernel: "6.1", memory: GUEST_MEMORY }, {
    progress: (s) => log(s),
  });
  // A stopped run (a test's time limit, ^C) takes its cluster down too.
  const onSignal = () => {
    log("stopped: taking the cluster down");
    down(CLUSTER).catch(() => {}).finally(() => Deno.exit(130));
  };
  for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, onSignal);
  try {
    await measureAll(state, p, c);
  } finally {
    for (const n of state.nodes) {
      const text = await Deno.readTextFile(n.console).catch(() => "");
      const trouble = consoleTrouble(text);
      if (trouble.length) {
        c.failures.push({
          kind: "setup",
          workload: "",
          tool: "",
          round: -1,
          error: `${n.name} console: ${trouble.join(" | ")} (log: ${n.console})`,
        });
      }
    }
    for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.removeSignalListener(sig, onSignal);
    await down(CLUSTER).catch((e) => log(`could not stop the cluster: ${errorText(e)}`));
  }
}

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs(Deno.args, join(PROJECT_ROOT, "bench", "results"));
  } catch (e) {
    console.error(errorText(e));
    return 2;
  }
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  if (!isRoot()) {
    console.error(
      "bench: needs root (it boots a virtual cluster and installs CRIU); run it as root",
    );
    return 2;
  }
  const mode = args.quick ? "quick" : args.workloads.length ? "partial" : "full";
  const workloads = workloadsFor(mode, args.workloads);
  const startedAt = new Date().toISOString();
  await ensurePackages(
    BENCH_PACKAGES.tools,
    "the benchmark (the guests run the host's CRIU and nft)",
    log,
  );
  const bin = await guestPrograms();
  const mpiProgs = await mpiPrograms(workloads);
  const nodes = nodesFor(workloads);
  const secret = join(stateDir(), "bench-secret");
  await Deno.remove(secret).catch(() => {});
  await generateSecret(secret);
  const c: Collected = {
    samples: [],
    link: [],
    failures: [],
    notes: [],
    guestKernel: "unknown",
    criuVersion: "unknown",
    cpus: 0,
  };
  const machine = await hostFacts();
  const qemu = await qemuVersion();
  const ppm = await ppmFacts();
  await onCluster({ args, workloads, nodes, secret, bin, mpiProgs }, c);

  const results: BenchResults = {
    schema: SCHEMA,
    mode,
    startedAt,
    finishedAt: new Date().toISOString(),
    rounds: args.rounds,
    workloads: workloads.map(workloadInfo),
    environment: {
      machine,
      guest: {
        kernel: c.guestKernel,
        qemu,
        accel: "TCG (software emulation, -cpu max)",
        nodes,
        memoryMiB: GUEST_MEMORY,
        cpus: c.cpus,
      },
      ppm,
      criu: { version: c.criuVersion },
      deno: Deno.version.deno,
    },
    samples: c.samples,
    link: c.link,
    failures: c.failures,
    notes: c.notes,
  };
  return await report(args, results);
}

/** Writes the run's files, prints the report (or the JSON), and checks them: 0, or 1 when bad. */
async function report(args: BenchArgs, results: BenchResults): Promise<number> {
  const files = await writeRun(args.out, results);
  const problems = await validateRunFiles(files);
  console.log(args.json ? JSON.stringify(results, null, 2) : await Deno.readTextFile(files.md));
  // The figures issues 18 and 19 ask for, also when the report is not printed (--json).
  for (const line of [...threadLines(results), ...mpiLines(results)]) log(line);
  log(`results: ${files.json}, ${files.md}${files.svg ? `, ${files.svg}` : ""}`);
  if (problems.length) {
    log(`the results are not well-formed:\n  ${problems.join("\n  ")}`);
    return 1;
  }
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (e) {
    console.error(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    Deno.exit(1);
  }
}
