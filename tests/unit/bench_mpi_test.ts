/**
 * The MPI workload's pure parts: the job helpers' parsing of mpiexec's output
 * (tests/support/mpi_job.ts) and their launch script run in sh against a
 * stand-in mpiexec, CRIU's refusals as notes, the digest and the report's
 * lines for mpi-64, and the validation of its records.
 */
import { join } from "node:path";
import { reference } from "../../bench/lib/mpi.ts";
import { MPI_SECTION, mpiLines, renderReport } from "../../bench/lib/report.ts";
import { validateRunFiles, writeRun } from "../../bench/lib/results.ts";
import {
  criuCannotNotes,
  criuCannotReasons,
  digest,
  mpiStats,
  threadTwin,
} from "../../bench/lib/summary.ts";
import { validateReport, validateResults } from "../../bench/lib/validate.ts";
import { WORKLOADS } from "../../bench/lib/workloads.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "../support/assert.ts";
import {
  endOf,
  jobFile,
  type JobNodes,
  jobProblem,
  launchLines,
  launchScript,
  resultLines,
  RING_DONE,
} from "../support/mpi_job.ts";
import { syntheticRun } from "./bench_fixture.ts";

const LAUNCH = [
  "HYDRA_LAUNCH: /usr/bin/hydra_pmi_proxy --control-port 10.77.0.1:41234 --rmk user " +
  "--launcher manual --demux poll --pgid 0 --retries 10 --usize -2 --pmi-port 0 " +
  "--gpus-per-proc -2 --gpu-subdevs-per-proc -2 --proxy-id 0 ",
  "HYDRA_LAUNCH: /usr/bin/hydra_pmi_proxy --control-port 10.77.0.1:41234 --proxy-id 1 ",
  "HYDRA_LAUNCH: /usr/bin/hydra_pmi_proxy --control-port 10.77.0.1:41234 --proxy-id 2 ",
  "HYDRA_LAUNCH_END",
];

Deno.test("mpi job: mpiexec's launch lines by proxy id, and the job's result lines", () => {
  const out = [...LAUNCH, "tick 0 00000000000000aa", "tick 1 00000000000000bb", "done 2 0f"]
    .join("\n");
  const lines = launchLines(out);
  assertEquals([...lines.keys()], [0, 1, 2]);
  assertEquals(lines.get(1), [
    "/usr/bin/hydra_pmi_proxy",
    "--control-port",
    "10.77.0.1:41234",
    "--proxy-id",
    "1",
  ]);
  assertEquals(lines.get(0)!.at(-1), "0");
  assertEquals(launchLines("HYDRA_LAUNCH: a b --proxy-id x\nnothing"), new Map());
  assertEquals(resultLines(out), [
    "tick 0 00000000000000aa",
    "tick 1 00000000000000bb",
    "done 2 0f",
  ]);
});

Deno.test("mpi job: a job's problem is its exit code, a missing tick or a wrong result", () => {
  const ticks = (n: number) => Array.from({ length: n }, (_, i) => `tick ${i} 0`);
  const good = [...LAUNCH, ...ticks(80), RING_DONE[64]].join("\n");
  assertEquals(jobProblem({ rc: "0", out: good }, 80, RING_DONE[64]), undefined);
  assertEquals(jobProblem({ rc: "124", out: good }, 80, RING_DONE[64]), "the job exited 124");
  assertEquals(
    jobProblem({ rc: "0", out: [...ticks(79), RING_DONE[64]].join("\n") }, 80, RING_DONE[64]),
    "the job printed 79 ticks, not 80",
  );
  assertEquals(
    jobProblem({ rc: "0", out: [...ticks(80), RING_DONE[0]].join("\n") }, 80, RING_DONE[64]),
    `the job ended with "${RING_DONE[0]}", not "${RING_DONE[64]}"`,
  );
  assertEquals(
    jobProblem({ rc: "0", out: ticks(80).join("\n") }, 80, RING_DONE[64]),
    `the job ended with "tick 79 0", not "${RING_DONE[64]}"`,
  );
  const mpi = WORKLOADS.find((w) => w.id === "mpi-64")!;
  assertEquals(reference(mpi), "done 80 9b1c8453907ff089");
  assertThrows(() => reference({ ...mpi, mib: 3 }), (e) => /no reference result/.test(String(e)));
});

/** JobNodes on this host: every node is a local sh, with `path` first in PATH. */
function localNodes(path: string): JobNodes {
  const env = { PATH: `${path}:${Deno.env.get("PATH")}` };
  const sh = async (_n: number, script: string, timeoutMs = 20_000) => {
    const child = new Deno.Command("sh", {
      args: ["-c", script],
      env,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    const r = await child.output().finally(() => clearTimeout(timer));
    const dec = new TextDecoder();
    return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
  };
  return {
    sh,
    ok: async (n, script, t) => {
      const r = await sh(n, script, t);
      if (r.code !== 0) throw new Error(`${script} exited ${r.code}: ${r.stderr}`);
      return r.stdout;
    },
    waitFor: async (n, cond, seconds) => {
      const r = await sh(
        n,
        `i=0; while ! (${cond}) && [ $i -lt ${
          seconds * 20
        } ]; do sleep 0.05; i=$((i+1)); done; ${cond}`,
        (seconds + 5) * 1000,
      );
      if (r.code !== 0) throw new Error(`timed out waiting for ${cond}`);
    },
  };
}

Deno.test("mpi job: the launch script runs mpiexec in the background, timed, its exit code after", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ppm-mpi-job-test-" });
  try {
    // A stand-in for mpiexec.hydra: the launch lines, two ticks, the result, a pause, RC.
    const fake = join(dir, "mpiexec.hydra");
    await Deno.writeTextFile(
      fake,
      `#!/bin/sh\nprintf '%s\\n' ${LAUNCH.map((l) => `'${l}'`).join(" ")}\n` +
        `echo "args $*" >&2\necho 'tick 0 1'; echo 'tick 1 2'; echo 'done 2 ff'\n` +
        `sleep 0.3\nexit \${FAKE_RC:-0}\n`,
    );
    await Deno.chmod(fake, 0o755);
    const nodes = localNodes(dir);
    const spec = { tag: "t1", ring: "/opt/ring", preload: "/a.so:/b.so", args: [2, 10, 64], dir };
    const script = launchScript(spec);
    assertMatch(script, /env MPIR_CVAR_NOLOCAL=1 UCX_TLS=tcp,self .*LD_PRELOAD=\/a\.so:\/b\.so /);
    assertMatch(
      script,
      /timeout 300 mpiexec\.hydra -launcher manual -iface eth0 -hosts 10\.77\.0\.1,10\.77\.0\.2,10\.77\.0\.3 -n 3 \/opt\/ring 2 10 64 /,
    );
    const pid = (await nodes.ok(1, script)).trim();
    assertMatch(pid, /^\d+$/);
    const job = { tag: "t1", dir, mpiexec: pid, proxies: [] };
    const end = await endOf(nodes, job, 10);
    assertEquals(end.rc, "0");
    assertEquals(resultLines(end.out), ["tick 0 1", "tick 1 2", "done 2 ff"]);
    assert(end.wallMs >= 250 && end.wallMs < 10_000, `wall time ${end.wallMs} ms`);
    assertEquals(jobProblem(end, 2, "done 2 ff"), undefined);
    assertMatch(await Deno.readTextFile(jobFile(job, "err")), /^args .*\/opt\/ring 2 10 64$/m);

    // A job that fails: its code, and still its time; a rerun of a tag starts afresh.
    const failing = localNodes(dir);
    const r = await failing.sh(1, `FAKE_RC=3; export FAKE_RC; ${script}`);
    assertEquals(r.code, 0);
    const end2 = await endOf(failing, job, 10);
    assertEquals(end2.rc, "3");
    assert(end2.wallMs >= 250);
    assertEquals(jobProblem(end2, 2, "done 2 ff"), "the job exited 3");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bench mpi: CRIU's refusals are one note per reason, numbers aside, with their rounds", () => {
  const notes = criuCannotNotes("mpi-64", [
    {
      round: 0,
      reason: "criu dump: Error (criu/sk-unix.c:862): unix: peer ino 0x1f3a; the job ran on",
    },
    {
      round: 1,
      reason: "criu dump: Error (criu/sk-unix.c:862): unix: peer ino 0x2b07; the job ran on",
    },
    { round: 2, reason: "criu dump: criu dump failed (exit 1)" },
  ]);
  assertEquals(notes, [
    "mpi-64: CRIU cannot: criu dump: Error (criu/sk-unix.c:862): unix: peer ino 0x1f3a; the job " +
    "ran on (rounds 0, 1)",
    "mpi-64: CRIU cannot: criu dump: criu dump failed (exit 1) (round 2)",
  ]);
  assertEquals(criuCannotReasons([...notes, "anon-1: something else"], "mpi-64"), [
    "criu dump: Error (criu/sk-unix.c:862): unix: peer ino 0x1f3a; the job ran on (rounds 0, 1)",
    "criu dump: criu dump failed (exit 1) (round 2)",
  ]);
  assertEquals(criuCannotReasons(notes, "anon-1"), []);
  assertEquals(criuCannotNotes("mpi-64", []), []);
});

Deno.test("bench mpi: the digest has the rank's freeze and the job's slowdown, round by round", () => {
  const r = syntheticRun(3);
  const [x, ...more] = mpiStats(r);
  assertEquals(more, []);
  assertEquals([x.workload, x.tool, x.n], ["mpi-64", "ppm", 3]);
  assertEquals(x.freezeMs, { n: 3, median: 20_001, min: 20_000, max: 20_002 });
  assertEquals(x.totalMs?.median, 30_001);
  // Round k: moved 80 s + 2k, unmoved 60 s + k.
  assertEquals(x.slowdownMs, { n: 3, median: 20_001, min: 20_000, max: 20_002 });
  assertEquals(x.slowdown.map((p) => [p.round, p.a, p.b]), [
    [0, 80_000, 60_000],
    [1, 80_002, 60_001],
    [2, 80_004, 60_002],
  ]);
  assert(Math.abs(x.slowdownRatio!.median - 80_002 / 60_001) < 1e-12);
  assertEquals(digest(r).mpi, [x]);
  // Not a one-thread twin of threads-64, though it has 64 MiB in one thread.
  const ws = r.workloads.filter((w) => w.id !== "anon-64");
  assertEquals(threadTwin(ws, ws.find((w) => w.id === "threads-64")!), undefined);
});

Deno.test("bench mpi: the report's section 7 and the runner's lines for mpi-64", () => {
  const r = syntheticRun(3);
  const md = renderReport(r);
  assertEquals(validateReport(md, { mpi: true }), []);
  assert(md.indexOf(MPI_SECTION) > md.indexOf("## 6."));
  assert(md.indexOf(MPI_SECTION) < md.indexOf("## Where ppm loses"));
  assertMatch(
    md,
    /\| mpi-64 \| ppm \| 20001 \(20000–20002\) \| 30001 \(30000–30002\) \| 70\.0 \(70\.0–70\.0\) \| 60\.0 \(60\.0–60\.0\) \| 80\.0 \(80\.0–80\.0\) \| \+20\.0 s \(\+20\.0–\+20\.0\) \| 1\.33× \(1\.33–1\.33\), 3 pairs \|/,
  );
  assertMatch(
    md,
    /- mpi-64, CRIU cannot: criu dump: Error \(criu\/sk-unix\.c:123\): unix: Can't dump half of stream unix connection \(inode 1000\); the job ran on \(rounds 0, 1, 2\)/,
  );
  assertMatch(md, /an MPI job's rank: node2 → node3, section 7/);
  // Not in the chart: it would sit on anon-64's point.
  assertEquals(mpiLines(r), [
    "mpi-64, ppm: rank frozen 20001 ms (20000–20002), migration 30001 ms (30000–30002); " +
    "the job +20.0 s (+20.0–+20.0) against unmoved, 1.33× (1.33–1.33), 3 pairs",
    "mpi-64: CRIU cannot: criu dump: Error (criu/sk-unix.c:123): unix: Can't dump half of " +
    "stream unix connection (inode 1000); the job ran on (rounds 0, 1, 2)",
  ]);

  // A run without it (--quick) has no section 7 and no lines.
  const quick = syntheticRun(2);
  quick.workloads = quick.workloads.filter((w) => w.id === "anon-1");
  quick.samples = quick.samples.filter((s) => s.workload === "anon-1");
  quick.notes = [];
  const qmd = renderReport(quick);
  assert(!qmd.includes(MPI_SECTION));
  assert(!qmd.includes("node2 → node3"));
  assertEquals(mpiLines(quick), []);
  assertEquals(validateReport(qmd), []);
  assertEquals(validateReport(qmd, { mpi: true }), [`report lacks "${MPI_SECTION}"`]);

  // Nothing measured and no note: said so.
  const none = syntheticRun(1, ["criu"]);
  none.notes = [];
  assertEquals(mpiLines(none), ["mpi-64: no move of a rank was measured"]);
  assertMatch(renderReport(none), new RegExp(`${MPI_SECTION}\\n\\n.*\\n\\n_No measurements\\._`));
});

Deno.test("bench mpi: validation of a rank's records: its job's times, its ranks, CRIU's note", () => {
  assertEquals(validateResults(syntheticRun(2), { complete: true }), []);
  const bad = syntheticRun(1) as unknown as {
    samples: Record<string, unknown>[];
    workloads: Record<string, unknown>[];
  };
  const mpiAt = bad.samples.findIndex((s) => s.workload === "mpi-64");
  const anonAt = bad.samples.findIndex((s) => s.workload === "anon-1");
  bad.samples[mpiAt].job = { unmovedMs: 0, movedMs: "slow" };
  bad.samples[mpiAt].totalMs = -1;
  bad.samples[anonAt].job = 5;
  bad.workloads[bad.workloads.findIndex((w) => w.id === "mpi-64")].ranks = 1;
  assertEquals(
    validateResults(bad).filter((p) => /job|ranks|totalMs/.test(p)).sort(),
    [
      `samples[${anonAt}].job: not an object`,
      `samples[${mpiAt}].job.movedMs: not a positive time`,
      `samples[${mpiAt}].job.unmovedMs: not a positive time`,
      `samples[${mpiAt}].totalMs: not a number ≥ 0`,
      "workloads[7].ranks: not an integer ≥ 2",
    ].sort(),
  );

  // A ppm move of a rank without the job's times says so.
  const nojob = syntheticRun(1);
  delete nojob.samples.find((s) => s.workload === "mpi-64")!.job;
  assert(validateResults(nojob).some((p) => /\.job: missing/.test(p)));

  // Complete: a ppm move of a rank, and a CRIU move or a note why CRIU cannot.
  const noNote = syntheticRun(2);
  noNote.notes = [];
  assertEquals(validateResults(noNote, { complete: true }), [
    "mpi-64: neither a CRIU migration of a rank nor a note why CRIU cannot",
  ]);
  const noPpm = syntheticRun(2);
  noPpm.samples = noPpm.samples.filter((s) => s.workload !== "mpi-64");
  assertEquals(validateResults(noPpm, { complete: true }), ["mpi-64: no ppm migration of a rank"]);

  // A file of schema 1 (before MPI) still reads.
  const old = syntheticRun(1) as unknown as Record<string, unknown> & BenchLike;
  old.schema = "ppm-bench/1";
  old.workloads = old.workloads.filter((w) => w.id !== "mpi-64");
  old.samples = old.samples.filter((s) => s.workload !== "mpi-64");
  assertEquals(validateResults(old), []);
});

type BenchLike = { workloads: { id: string }[]; samples: { workload: string }[] };

Deno.test("bench mpi: the files of a run with mpi-64 are written and validate, its section too", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ppm-bench-mpi-test-" });
  try {
    const files = await writeRun(dir, syntheticRun(2));
    assertEquals(await validateRunFiles(files, { complete: true }), []);
    const md = await Deno.readTextFile(files.md);
    await Deno.writeTextFile(files.md, md.replace(MPI_SECTION, "## 7. Something else"));
    assertEquals(await validateRunFiles(files), [
      `${files.md}: report lacks "${MPI_SECTION}"`,
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
