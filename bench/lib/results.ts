/**
 * Writes a run's results under a results folder (default bench/results/):
 * `<stamp>.json` (every sample), `<stamp>.md` (the report), `<stamp>.svg`
 * (the chart) and, for a full run, `latest.md` pointing at them; and reads
 * them back to validate them.
 *
 * @module
 */
import { join } from "node:path";
import { chartPoints, renderChart } from "./chart.ts";
import { renderReport } from "./report.ts";
import { isMpi } from "./summary.ts";
import type { BenchResults } from "./types.ts";
import { type ValidateOptions, validateReport, validateResults, validateSvg } from "./validate.ts";

/** A file-name-safe stamp of an ISO time: 2025-01-02T03-04-05Z. */
export function stampOf(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) throw new Error(`not a time: ${JSON.stringify(iso)}`);
  return d.toISOString().replace(/\.\d+Z$/, "Z").replaceAll(":", "-");
}

/** Paths of one run's files. */
export interface RunFiles {
  json: string;
  md: string;
  /** Undefined when the run had nothing to chart. */
  svg?: string;
  /** latest.md, when it was updated. */
  latest?: string;
}

/**
 * Writes the files of run `r` into `dir` (created if missing). `latest`
 * (default: full runs only) also rewrites `dir/latest.md`.
 */
export async function writeRun(
  dir: string,
  r: BenchResults,
  opts: { latest?: boolean } = {},
): Promise<RunFiles> {
  await Deno.mkdir(dir, { recursive: true });
  const stamp = `${stampOf(r.startedAt)}${r.mode === "full" ? "" : `-${r.mode}`}`;
  const files: RunFiles = { json: join(dir, `${stamp}.json`), md: join(dir, `${stamp}.md`) };
  await Deno.writeTextFile(files.json, JSON.stringify(r, null, 2) + "\n");
  let chart: string | undefined;
  if (chartPoints(r).length) {
    chart = `${stamp}.svg`;
    files.svg = join(dir, chart);
    await Deno.writeTextFile(files.svg, await renderChart(r));
  }
  const md = renderReport(r, chart);
  await Deno.writeTextFile(files.md, md);
  if (opts.latest ?? r.mode === "full") {
    files.latest = join(dir, "latest.md");
    await Deno.writeTextFile(
      files.latest,
      `<!-- the latest full run: ${stamp}.md, raw samples in ${stamp}.json -->\n${md}`,
    );
  }
  return files;
}

/**
 * Problems of a written run (empty when all is well-formed): the JSON
 * against its schema, the report's sections, and the chart when the run
 * has memory migrations to draw, with one series per tool measured.
 */
export async function validateRunFiles(
  files: Pick<RunFiles, "json" | "md" | "svg">,
  opts: ValidateOptions = {},
): Promise<string[]> {
  const problems: string[] = [];
  let data: unknown;
  try {
    data = JSON.parse(await Deno.readTextFile(files.json));
  } catch (e) {
    return [`${files.json}: cannot read it as JSON: ${(e as Error).message}`];
  }
  problems.push(...validateResults(data, opts).map((x) => `${files.json}: ${x}`));
  const mpi = (data as Partial<BenchResults>).workloads?.some((w) => isMpi(w)) ?? false;
  try {
    problems.push(
      ...validateReport(await Deno.readTextFile(files.md), { mpi }).map((x) => `${files.md}: ${x}`),
    );
  } catch (e) {
    problems.push(`${files.md}: cannot read it: ${(e as Error).message}`);
  }
  if (problems.length) return problems;
  const series = [...new Set(chartPoints(data as BenchResults).map((p) => p.series))];
  if (series.length) {
    if (!files.svg) return [...problems, "there are memory migrations but no chart"];
    try {
      problems.push(
        ...validateSvg(await Deno.readTextFile(files.svg), series).map((x) => `${files.svg}: ${x}`),
      );
    } catch (e) {
      problems.push(`${files.svg}: cannot read it: ${(e as Error).message}`);
    }
  }
  return problems;
}
