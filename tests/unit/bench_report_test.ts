/**
 * The benchmark's report and validator driven by synthetic records:
 * medians and pair ratios in the tables, threads against one thread, where
 * ppm loses, what failed, the files of a run and their validation.
 */
import { join } from "node:path";
import {
  cell,
  losses,
  ratioCell,
  renderReport,
  threadLines,
  threadVerdict,
} from "../../bench/lib/report.ts";
import { stampOf, validateRunFiles, writeRun } from "../../bench/lib/results.ts";
import { digest, findRatio, findSeries, threadTwin } from "../../bench/lib/summary.ts";
import { validateReport, validateResults } from "../../bench/lib/validate.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { syntheticRun } from "./bench_fixture.ts";

Deno.test("bench digest: medians per series, ratios pair by pair, phases, link fraction", () => {
  const d = digest(syntheticRun(5));
  const ppm = findSeries(d, "migrate", "anon-64", "ppm")!;
  // base = 100 + 64*4 + round = 356..360; ppm at half: 178..180.
  assertEquals(ppm.freezeMs, { n: 5, median: 179, min: 178, max: 180 });
  const ratio = findRatio(d, "migrate", "anon-64", "ppm", "freezeMs")!;
  assertEquals(ratio.pairs.length, 5);
  assertEquals(ratio.summary?.median, 0.5);
  assertEquals(findRatio(d, "migrate", "listen-8", "ppm", "stallMs")!.pairs.length, 5);
  const ph = d.phases.find((p) => p.workload === "anon-1" && p.tool === "ppm")!;
  assertEquals(ph.phases.map((p) => p.phase), [
    "freeze",
    "dump memory",
    "transfer",
    "restore memory",
  ]);
  assertEquals(ph.phases[0].summary.median, 3);
  assert(d.linkMiBs && d.linkMiBs.n === 5);
  assert(d.linkFraction.some((f) => f.workload === "anon-256" && f.tool === "ppm-copy-all"));
  assert(!d.linkFraction.some((f) => f.tool === "criu"));
});

Deno.test("bench digest: threads-64 over anon-64, per tool, round by round", () => {
  const r = syntheticRun(5);
  // A round anon-64's ppm migration failed: that round has no pair.
  r.samples = r.samples.filter((s) =>
    !(s.kind === "migrate" && s.workload === "anon-64" && s.tool === "ppm" && s.round === 2)
  );
  const d = digest(r);
  assertEquals(d.threads.map((x) => x.tool), ["ppm", "ppm-copy-all", "criu"]);
  const ppm = d.threads.find((x) => x.tool === "ppm")!;
  assertEquals([ppm.workload, ppm.base, ppm.threads], ["threads-64", "anon-64", 8]);
  assertEquals(ppm.pairs.map((p) => p.round), [0, 1, 3, 4]);
  // threads-64's round k against anon-64's round k: base 356 + k, ×1.1, both at half for ppm.
  assertEquals(ppm.pairs[0].a, 356 * 1.1 * 0.5);
  assertEquals(ppm.pairs[0].b, 356 * 0.5);
  assertEquals(ppm.summary!.n, 4);
  assert(Math.abs(ppm.summary!.median - 1.1) < 1e-9);
  const criu = d.threads.find((x) => x.tool === "criu")!;
  assert(Math.abs(criu.summary!.median - 1.3) < 1e-9);
  // Local checkpoint + restore is not a freeze: no thread ratio from it.
  assertEquals(d.threads.length, 3);
});

Deno.test("bench digest: a threaded workload's twin has its memory, its connections and one thread", () => {
  const ws = syntheticRun(1).workloads;
  const t = ws.find((w) => w.id === "threads-64")!;
  assertEquals(threadTwin(ws, t)?.id, "anon-64");
  assertEquals(threadTwin(ws, ws.find((w) => w.id === "anon-64")!), undefined);
  assertEquals(threadTwin(ws.filter((w) => w.id !== "anon-64"), t), undefined);
  // Results written before threads were recorded: every workload ran one thread.
  const old = ws.filter((w) => w.id !== "threads-64").map(({ threads: _, ...w }) => w);
  assertEquals(threadTwin([...old, t], t)?.id, "anon-64");
});

Deno.test("bench report: threads-64 against anon-64 with ppm's goal, met or missed", () => {
  const r = syntheticRun(5);
  const md = renderReport(r);
  assertMatch(md, /\*\*With threads, against one thread\.\*\*.*ppm's goal is ≤ 1\.2×/);
  assertMatch(
    md,
    /\| threads-64 \(8 threads\) \| anon-64 \(1 thread\) \| 1\.10× \(1\.10–1\.10\), 5 pairs \| 1\.10× \(1\.10–1\.10\), 5 pairs \| 1\.30× \(1\.30–1\.30\), 5 pairs \| ≤ 1\.2×: met \|/,
  );
  // In section 1, before section 2.
  assert(md.indexOf("With threads") < md.indexOf("## 2."));
  assertEquals(threadLines(r), [
    "threads-64 (8 threads) / anon-64 (1 thread), migration freeze time: " +
    "ppm 1.10× (1.10–1.10), 5 pairs; ppm --copy-all 1.10× (1.10–1.10), 5 pairs; " +
    "CRIU 1.30× (1.30–1.30), 5 pairs; goal for ppm ≤ 1.2×: met",
  ]);

  // ppm at 1.5× one thread misses the goal; without CRIU there is no CRIU ratio.
  const slow = syntheticRun(3, ["ppm"]);
  for (const s of slow.samples) if (s.workload === "threads-64") s.freezeMs *= 1.5 / 1.1;
  assertMatch(
    renderReport(slow),
    /\| threads-64 \(8 threads\) \| anon-64 \(1 thread\) \| 1\.50×.* \| ≤ 1\.2×: missed \|/,
  );
  assertEquals(threadLines(slow), [
    "threads-64 (8 threads) / anon-64 (1 thread), migration freeze time: " +
    "ppm 1.50× (1.50–1.50), 3 pairs; goal for ppm ≤ 1.2×: missed",
  ]);
  assertEquals(threadVerdict({ n: 1, median: 1.2, min: 1.2, max: 1.2 }), "met");
  assertEquals(threadVerdict(undefined), "not measured");
});

Deno.test("bench report: no threads row without a threaded workload; none measured says so", () => {
  const quick = syntheticRun(2);
  quick.workloads = quick.workloads.filter((w) => w.id === "anon-1");
  quick.samples = quick.samples.filter((s) => s.workload === "anon-1");
  assert(!renderReport(quick).includes("With threads"));
  assertEquals(threadLines(quick), []);

  // A partial run of threads-64 alone has no twin to compare with.
  const alone = syntheticRun(2);
  alone.workloads = alone.workloads.filter((w) => w.id === "threads-64");
  alone.samples = alone.samples.filter((s) => s.workload === "threads-64");
  assertMatch(
    renderReport(alone),
    /\| threads-64 \(8 threads\) \| – \(not in this run\) \| – \|.*≤ 1\.2×: not measured \|/,
  );
  assertEquals(threadLines(alone), [
    "threads-64 (8 threads): no one-thread workload of 64 MiB in this run, so no ratio " +
    "(goal for ppm ≤ 1.2×)",
  ]);

  // Every ppm migration of threads-64 failed: CRIU's ratio is there, ppm's is not measured.
  const failed = syntheticRun(2);
  failed.samples = failed.samples.filter((s) =>
    !(s.workload === "threads-64" && s.tool === "ppm" && s.kind === "migrate")
  );
  assertEquals(threadLines(failed), [
    "threads-64 (8 threads) / anon-64 (1 thread), migration freeze time: " +
    "ppm –; ppm --copy-all 1.10× (1.10–1.10), 2 pairs; CRIU 1.30× (1.30–1.30), 2 pairs; " +
    "goal for ppm ≤ 1.2×: not measured",
  ]);
});

Deno.test("bench report: cells show median and range; ratio cells count pairs", () => {
  assertEquals(cell(undefined), "–");
  assertEquals(cell({ n: 3, median: 1234.4, min: 1000, max: 2000 }), "1234 (1000–2000)");
  assertEquals(cell({ n: 1, median: 5, min: 5, max: 5 }, 1, "ms"), "5.00 ms (n=1)");
  assertEquals(
    ratioCell({ n: 5, median: 0.5, min: 0.25, max: 0.75 }),
    "0.50× (0.25–0.75), 5 pairs",
  );
});

Deno.test("bench report: every section, the chart link, and where ppm loses", () => {
  const r = syntheticRun(5);
  const md = renderReport(r, "run.svg");
  assertEquals(validateReport(md), []);
  assertMatch(md, /!\[freeze time against memory size\]\(run\.svg\)/);
  assertMatch(md, /\| anon-64 \| 179 \(178–180\) \|/);
  assertMatch(md, /0\.50× \(0\.50–0\.50\), 5 pairs/);
  const lost = losses(r);
  assert(lost.length > 0);
  assert(lost.every((l) => l.includes("listen-8")), lost.join("\n"));
  assertMatch(md, /ppm loses on listen-8 \(migration, freeze time\): 1\.20×/);
  assertMatch(md, /costliest phase there is transfer/);
});

Deno.test("bench report: failures and notes are listed; a run without CRIU has no ratios", () => {
  const r = syntheticRun(2, ["ppm"]);
  r.failures.push({
    kind: "migrate",
    workload: "tcp-1",
    tool: "criu",
    round: 1,
    error: "criu dump failed (exit 1): a | pipe\nmore lines",
  });
  r.notes.push("ppm migrate has no --copy-all here: that series is skipped");
  const md = renderReport(r);
  assertMatch(md, /## What failed/);
  assertMatch(md, /criu dump failed \(exit 1\): a \\\| pipe \|/);
  assert(!md.includes("more lines"));
  assertMatch(md, /no --copy-all here/);
  assert(!md.includes("/ CRIU"));
  assertMatch(md, /Nowhere in this run/);
});

Deno.test("bench validator: a synthetic run is well-formed and complete", () => {
  assertEquals(validateResults(syntheticRun(2), { complete: true }), []);
});

Deno.test("bench validator: names each broken field", () => {
  const r = syntheticRun(1) as unknown as Record<string, unknown>;
  const bad = structuredClone(r) as Record<string, unknown> & {
    samples: Record<string, unknown>[];
    environment: { machine: Record<string, unknown> };
  };
  bad.schema = "other";
  bad.samples[0].freezeMs = -1;
  bad.samples[1].workload = "nope";
  bad.samples[2].bytes = "many";
  bad.environment.machine.cpuModel = "";
  bad.link = [{ bytes: 0, ms: 1 }];
  const p = validateResults(bad);
  for (
    const want of [
      /^schema/,
      /samples\[0\]\.freezeMs/,
      /samples\[1\]\.workload/,
      /samples\[2\]\.bytes/,
      /environment\.machine\.cpuModel/,
      /link\[0\]/,
    ]
  ) assert(p.some((x) => want.test(x)), `${want} not in ${p.join("; ")}`);
  assertEquals(validateResults(null), ["the results are not a JSON object"]);
});

Deno.test("bench validator: a workload's threads is optional (older files) and a positive integer", () => {
  const old = syntheticRun(1);
  old.workloads = old.workloads.map(({ threads: _, ...w }) => w);
  assertEquals(validateResults(old, { complete: true }), []);
  const bad = syntheticRun(1) as unknown as { workloads: Record<string, unknown>[] };
  bad.workloads[0].threads = 0;
  bad.workloads[1].threads = 1.5;
  bad.workloads[2].threads = "8";
  assertEquals(validateResults(bad), [
    "workloads[0].threads: not a positive integer",
    "workloads[1].threads: not a positive integer",
    "workloads[2].threads: not a positive integer",
  ]);
});

Deno.test("bench validator: complete needs a round with both tools and the link", () => {
  const r = syntheticRun(2, ["ppm"]);
  r.link = [];
  const p = validateResults(r, { complete: true });
  assert(p.some((x) => /anon-1: no round has both/.test(x)));
  assert(p.some((x) => /link: the raw TCP throughput was not measured/.test(x)));
  assertEquals(validateResults(r), []);
});

Deno.test("bench results: files of a run are written, named by time, and validate", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ppm-bench-test-" });
  try {
    assertEquals(stampOf("2025-03-04T05:06:07.123Z"), "2025-03-04T05-06-07Z");
    const full = syntheticRun(2);
    const files = await writeRun(dir, full);
    assertEquals(files.json, join(dir, "2025-03-04T05-06-07Z.json"));
    assert(files.svg && files.latest);
    assertEquals(await validateRunFiles(files, { complete: true }), []);
    assertMatch(await Deno.readTextFile(files.latest), /2025-03-04T05-06-07Z\.md/);

    const quick = { ...syntheticRun(2), mode: "quick" as const };
    quick.workloads = quick.workloads.filter((w) => w.id === "anon-1");
    quick.samples = quick.samples.filter((s) => s.workload === "anon-1");
    const qf = await writeRun(dir, quick);
    assertEquals(qf.latest, undefined);
    assertMatch(qf.json, /-quick\.json$/);
    assertEquals(await validateRunFiles(qf, { complete: true }), []);

    await Deno.writeTextFile(qf.svg!, "<svg><g></svg>");
    assert((await validateRunFiles(qf)).some((x) => x.includes("closes <g>")));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
