/**
 * Digests a run's raw samples into what the report shows: per series
 * medians with ranges, ratios against CRIU pair by pair, ppm's per-phase
 * medians, the link's throughput and ppm's transfer as a fraction of it.
 * Pure.
 *
 * @module
 */
import { type PairRatio, pairRatios, phaseMedians, summarize, type Summary } from "./stats.ts";
import type { BenchResults, Kind, Sample, Tool } from "./types.ts";
import { TOOLS } from "./types.ts";

/** A numeric field of a sample that is compared across tools. */
export type Metric = "freezeMs" | "bytes" | "stallMs";

/** One series: one kind, workload and tool. */
export interface SeriesStats {
  kind: Kind;
  workload: string;
  tool: Tool;
  /** Rounds measured. */
  n: number;
  freezeMs?: Summary;
  bytes?: Summary;
  stallMs?: Summary;
  /** Image transfer throughput, MiB/s. */
  throughputMiBs?: Summary;
}

/** Ratios tool/CRIU of one metric, pair by pair. */
export interface RatioStats {
  kind: Kind;
  workload: string;
  tool: Exclude<Tool, "criu">;
  metric: Metric;
  pairs: PairRatio[];
  /** Summary of the ratios (undefined when no round has both). */
  summary?: Summary;
}

/** Per-phase medians of one tool on one workload. */
export interface PhaseStats {
  kind: Kind;
  workload: string;
  tool: Tool;
  phases: { phase: string; summary: Summary }[];
}

/** Everything the report shows. */
export interface Digest {
  series: SeriesStats[];
  ratios: RatioStats[];
  phases: PhaseStats[];
  /** Raw TCP throughput between the guests, MiB/s. */
  linkMiBs?: Summary;
  /** Image transfer throughput as a fraction of the link's median, per ppm series. */
  linkFraction: { workload: string; tool: Tool; summary: Summary }[];
}

const MIB = 1024 * 1024;

/** Transfer throughput of a sample in MiB/s, when it has bytes and a transfer time. */
export function throughputMiBs(s: Sample): number | undefined {
  if (s.bytes === undefined || s.transferMs === undefined || s.transferMs <= 0) return undefined;
  return s.bytes / MIB / (s.transferMs / 1000);
}

function values(samples: Sample[], f: (s: Sample) => number | undefined): number[] {
  return samples.map(f).filter((v): v is number => v !== undefined && Number.isFinite(v));
}

function byRound(samples: Sample[], metric: Metric): Map<number, number> {
  const m = new Map<number, number>();
  for (const s of samples) {
    const v = s[metric];
    if (v !== undefined) m.set(s.round, v);
  }
  return m;
}

/** Digests a run. */
export function digest(r: BenchResults): Digest {
  const groups = new Map<string, Sample[]>();
  const keys: { kind: Kind; workload: string; tool: Tool }[] = [];
  const kinds: Kind[] = ["migrate", "local"];
  for (const kind of kinds) {
    for (const w of r.workloads) {
      for (const tool of TOOLS) {
        const list = r.samples.filter((s) =>
          s.kind === kind && s.workload === w.id && s.tool === tool
        );
        if (!list.length) continue;
        groups.set(`${kind}/${w.id}/${tool}`, list);
        keys.push({ kind, workload: w.id, tool });
      }
    }
  }
  const series: SeriesStats[] = keys.map((k) => {
    const list = groups.get(`${k.kind}/${k.workload}/${k.tool}`)!;
    return {
      ...k,
      n: list.length,
      freezeMs: summarize(values(list, (s) => s.freezeMs)),
      bytes: summarize(values(list, (s) => s.bytes)),
      stallMs: summarize(values(list, (s) => s.stallMs)),
      throughputMiBs: summarize(values(list, throughputMiBs)),
    };
  });

  const ratios: RatioStats[] = [];
  for (const kind of kinds) {
    for (const w of r.workloads) {
      const criu = groups.get(`${kind}/${w.id}/criu`);
      if (!criu) continue;
      for (const tool of ["ppm", "ppm-copy-all"] as const) {
        const mine = groups.get(`${kind}/${w.id}/${tool}`);
        if (!mine) continue;
        for (const metric of ["freezeMs", "bytes", "stallMs"] as const) {
          const pairs = pairRatios(byRound(mine, metric), byRound(criu, metric));
          if (!pairs.length) continue;
          ratios.push({
            kind,
            workload: w.id,
            tool,
            metric,
            pairs,
            summary: summarize(pairs.map((p) => p.ratio)),
          });
        }
      }
    }
  }

  const phases: PhaseStats[] = keys.flatMap((k) => {
    const recs = groups.get(`${k.kind}/${k.workload}/${k.tool}`)!.flatMap((s) =>
      s.phasesMs ? [s.phasesMs] : []
    );
    return recs.length ? [{ ...k, phases: phaseMedians(recs) }] : [];
  });

  const linkMiBs = summarize(
    r.link.filter((l) => l.ms > 0).map((l) => l.bytes / MIB / (l.ms / 1000)),
  );
  const linkFraction = linkMiBs && linkMiBs.median > 0
    ? series.flatMap((s) => {
      if (s.kind !== "migrate" || s.tool === "criu") return [];
      const list = groups.get(`${s.kind}/${s.workload}/${s.tool}`)!;
      const sum = summarize(values(list, throughputMiBs).map((t) => t / linkMiBs.median));
      return sum ? [{ workload: s.workload, tool: s.tool, summary: sum }] : [];
    })
    : [];
  return { series, ratios, phases, linkMiBs, linkFraction };
}

/** The series of `kind`, `workload` and `tool`, if measured. */
export function findSeries(
  d: Digest,
  kind: Kind,
  workload: string,
  tool: Tool,
): SeriesStats | undefined {
  return d.series.find((s) => s.kind === kind && s.workload === workload && s.tool === tool);
}

/** The ratios of `tool` against CRIU for one metric, if any round has both. */
export function findRatio(
  d: Digest,
  kind: Kind,
  workload: string,
  tool: Exclude<Tool, "criu">,
  metric: Metric,
): RatioStats | undefined {
  return d.ratios.find((x) =>
    x.kind === kind && x.workload === workload && x.tool === tool && x.metric === metric
  );
}
