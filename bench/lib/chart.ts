/**
 * The chart of a run: migration freeze time against the memory the process
 * wrote, for ppm, ppm --copy-all and CRIU, drawn with Vega-Lite and
 * rendered to SVG headless (no canvas, no DOM).
 *
 * @module
 */
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import { isMpi } from "./summary.ts";
import type { BenchResults, Tool } from "./types.ts";

/** Legend names of the series. */
export const SERIES_NAMES: Record<Tool, string> = {
  "ppm": "ppm",
  "ppm-copy-all": "ppm --copy-all",
  "criu": "CRIU",
};

/** One point of the chart: one sample. */
export interface ChartPoint {
  /** Memory written, MiB. */
  mib: number;
  /** Freeze time, ms. */
  ms: number;
  /** Series name. */
  series: string;
}

/**
 * The chart's points: every migration sample of a one-thread workload that
 * writes memory (a threaded one, e.g. threads-64, or an MPI job's rank would
 * sit at the same size as a one-thread process and bend the line; the report
 * shows them on their own).
 */
export function chartPoints(r: BenchResults): ChartPoint[] {
  const mib = new Map(
    r.workloads.filter((w) => w.mib > 0 && (w.threads ?? 1) === 1 && !isMpi(w))
      .map((w) => [w.id, w.mib]),
  );
  return r.samples.flatMap((s) =>
    s.kind === "migrate" && mib.has(s.workload)
      ? [{ mib: mib.get(s.workload)!, ms: s.freezeMs, series: SERIES_NAMES[s.tool] }]
      : []
  );
}

/** The Vega-Lite specification: median lines over the individual samples. */
export function chartSpec(points: ChartPoint[], title: string): TopLevelSpec {
  // Fixed colours per series; the legend names only the series measured.
  const colours: Record<string, string> = {
    [SERIES_NAMES.ppm]: "#1f77b4",
    [SERIES_NAMES["ppm-copy-all"]]: "#9467bd",
    [SERIES_NAMES.criu]: "#d62728",
  };
  const present = Object.values(SERIES_NAMES).filter((n) => points.some((p) => p.series === n));
  const color = {
    field: "series",
    type: "nominal" as const,
    title: null,
    scale: { domain: present, range: present.map((n) => colours[n]) },
  };
  const x = {
    field: "mib",
    type: "quantitative" as const,
    title: "anonymous memory written (MiB)",
  };
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title,
    width: 520,
    height: 320,
    data: { values: points },
    layer: [
      {
        mark: { type: "line", point: { filled: true, size: 60 } },
        encoding: {
          x,
          y: {
            aggregate: "median",
            field: "ms",
            type: "quantitative",
            title: "freeze time (ms), median; dots: each round",
          },
          color,
        },
      },
      {
        mark: { type: "point", opacity: 0.5, size: 25 },
        encoding: { x, y: { field: "ms", type: "quantitative" }, color },
      },
    ],
  } as TopLevelSpec;
}

/** Renders the chart of a run to SVG text; throws when there is nothing to draw. */
export async function renderChart(r: BenchResults): Promise<string> {
  const points = chartPoints(r);
  if (!points.length) {
    throw new Error(
      "cannot draw the chart: no migration of a memory workload was measured in this run",
    );
  }
  const spec = compile(
    chartSpec(points, `Migration freeze time against memory size (${r.startedAt.slice(0, 10)})`),
  ).spec;
  const view = new vega.View(vega.parse(spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
