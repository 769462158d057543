/**
 * The benchmark's report and validator driven by synthetic records:
 * medians and pair ratios in the tables, where ppm loses, what failed, the
 * files of a run and their validation.
 */
import { join } from "node:path";
import { cell, losses, ratioCell, renderReport } from "../../bench/lib/report.ts";
import { stampOf, validateRunFiles, writeRun } from "../../bench/lib/results.ts";
import { digest, findRatio, findSeries } from "../../bench/lib/summary.ts";
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
