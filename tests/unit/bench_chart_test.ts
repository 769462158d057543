/** bench/lib/chart.ts: a well-formed SVG with the three series, drawn headless. */
import { chartPoints, renderChart } from "../../bench/lib/chart.ts";
import { validateSvg } from "../../bench/lib/validate.ts";
import { assert, assertEquals, assertRejects } from "../support/assert.ts";
import { syntheticRun } from "./bench_fixture.ts";

Deno.test("bench chart: points are the memory migrations only", () => {
  const r = syntheticRun(2);
  const pts = chartPoints(r);
  // 4 one-thread memory workloads × 3 tools × 2 rounds; threads-64 (at 64 MiB too) is not
  // drawn: it would bend anon-64's line.
  assertEquals(pts.length, 24);
  assertEquals(pts.filter((p) => p.mib === 64).length, 6);
  assertEquals([...new Set(pts.map((p) => p.mib))].sort((a, b) => a - b), [1, 64, 256, 1024]);
  assertEquals(new Set(pts.map((p) => p.series)), new Set(["ppm", "ppm --copy-all", "CRIU"]));
});

Deno.test("bench chart: renders a well-formed SVG naming ppm, ppm --copy-all and CRIU", async () => {
  const svg = await renderChart(syntheticRun(3));
  assertEquals(validateSvg(svg), []);
  assert(svg.includes("freeze time"), "the axis title is missing");
  // Three lines (one path per series) at least.
  assert((svg.match(/<path/g) ?? []).length >= 3);
});

Deno.test("bench chart: the validator catches a broken SVG and a missing series", async () => {
  const svg = await renderChart(syntheticRun(2, ["ppm", "criu"]));
  assertEquals(validateSvg(svg, ["ppm", "CRIU"]), []);
  assert(validateSvg(svg).some((x) => x.includes("ppm --copy-all")));
  assert(validateSvg(svg.replace("</svg>", "")).length > 0);
  assert(validateSvg("<svg><a></b></svg>").some((x) => x.includes("closes")));
  assert(validateSvg("<svg x=1></svg>").length > 0);
});

Deno.test("bench chart: nothing to draw is an error that says so", async () => {
  const r = syntheticRun(1);
  r.samples = r.samples.filter((s) => s.workload === "tcp-1");
  await assertRejects(() => renderChart(r));
});
