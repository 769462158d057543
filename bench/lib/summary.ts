/**
 * Digests a run's raw samples into what the report shows: per series
 * medians with ranges, ratios against CRIU pair by pair, what threads cost
 * (a threaded workload's freeze time against its one-thread twin's, pair by
 * pair), ppm's per-phase medians, the link's throughput and ppm's transfer
 * as a fraction of it, and an MPI job's slowdown when one of its ranks
 * moves. Pure.
 *
 * @module
 */
import { type PairRatio, pairRatios, phaseMedians, summarize, type Summary } from "./stats.ts";
import type { BenchResults, Kind, Sample, Tool, WorkloadInfo } from "./types.ts";
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

/**
 * The goal for ppm's migration freeze time of a threaded process against a
 * one-thread process of the same memory (issue 18: 8 threads within 1.2×).
 */
export const THREAD_GOAL = 1.2;

/**
 * One tool's migration freeze time of a threaded workload over that of its
 * one-thread twin (same memory and connections), round by round: both are
 * measured in the same round, minutes apart, so drifts of the machine
 * cancel as in the ratios against CRIU.
 */
export interface ThreadRatioStats {
  /** The threaded workload (e.g. threads-64). */
  workload: string;
  /** Its threads. */
  threads: number;
  /** Its one-thread twin (e.g. anon-64). */
  base: string;
  tool: Tool;
  /** Per round: a = the threaded workload's freeze, b = the twin's. */
  pairs: PairRatio[];
  /** Summary of the ratios (undefined when no round has both). */
  summary?: Summary;
}

/**
 * An MPI workload's figures with one tool: the rank's freeze and whole migration, and the job's
 * wall time moved against unmoved, taken round by round (both runs of a round are minutes apart).
 */
export interface MpiStats {
  workload: string;
  tool: Tool;
  /** Rounds measured. */
  n: number;
  freezeMs?: Summary;
  totalMs?: Summary;
  bytes?: Summary;
  /** The job's wall time, unmoved and moved, ms. */
  unmovedMs?: Summary;
  movedMs?: Summary;
  /** Per round: moved − unmoved, ms. */
  slowdownMs?: Summary;
  /** Per round: moved / unmoved (a = moved, b = unmoved). */
  slowdown: PairRatio[];
  slowdownRatio?: Summary;
}

/** Whether a recorded workload is one rank of an MPI job. */
export function isMpi(w: WorkloadInfo): boolean {
  return (w.ranks ?? 0) > 0;
}

/** What a note says before the reason CRIU could not move an MPI workload's rank. */
const CANNOT = "CRIU cannot";

/**
 * The notes of CRIU's refusals to move an MPI workload's rank, one per reason: "ID: CRIU cannot:
 * REASON (rounds R, ...)". Reasons that differ only in numbers (PIDs, inodes, ports) are one,
 * told as in its first round.
 */
export function criuCannotNotes(
  workload: string,
  refusals: readonly { round: number; reason: string }[],
): string[] {
  const byKey = new Map<string, { reason: string; rounds: number[] }>();
  for (const x of refusals) {
    const key = x.reason.replace(/0x[0-9a-f]+|\d+/gi, "#");
    const seen = byKey.get(key);
    if (seen) seen.rounds.push(x.round);
    else byKey.set(key, { reason: x.reason, rounds: [x.round] });
  }
  return [...byKey.values()].map((x) =>
    `${workload}: ${CANNOT}: ${x.reason} (round${x.rounds.length > 1 ? "s" : ""} ${
      x.rounds.join(", ")
    })`
  );
}

/** The reasons (with their rounds) of the notes {@link criuCannotNotes} wrote for `workload`. */
export function criuCannotReasons(notes: readonly string[], workload: string): string[] {
  const head = `${workload}: ${CANNOT}: `;
  return notes.filter((n) => n.startsWith(head)).map((n) => n.slice(head.length));
}

/** Threads of a recorded workload (results written before threads were recorded: 1). */
export function threadsOf(w: WorkloadInfo): number {
  return w.threads ?? 1;
}

/**
 * The one-thread twin of a threaded workload among `workloads`: the first
 * one-thread workload with the same memory and connections. Undefined for
 * a one-thread workload, or when the run has no twin.
 */
export function threadTwin(
  workloads: readonly WorkloadInfo[],
  w: WorkloadInfo,
): WorkloadInfo | undefined {
  if (threadsOf(w) <= 1 || isMpi(w)) return undefined;
  return workloads.find((x) =>
    threadsOf(x) === 1 && !isMpi(x) && x.mib === w.mib && x.connections === w.connections
  );
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
  /** Threaded workloads against their one-thread twins, per tool that measured both. */
  threads: ThreadRatioStats[];
  phases: PhaseStats[];
  /** Raw TCP throughput between the guests, MiB/s. */
  linkMiBs?: Summary;
  /** Image transfer throughput as a fraction of the link's median, per ppm series. */
  linkFraction: { workload: string; tool: Tool; summary: Summary }[];
  /** MPI workloads, per tool that moved a rank. */
  mpi: MpiStats[];
}

const MIB = 1024 * 1024;

/** Transfer throughput of a sample in MiB/s, when it has bytes and a transfer time. */
export function throughputMiBs(s: Sample): number | undefined {
  if (s.bytes === undefined || s.transferMs === undefined || s.transferMs <= 0) return undefined;
  // Pre-copy rounds move their bytes before the freeze, in their own time.
  return s.bytes / MIB / ((s.transferMs + (s.precopyMs ?? 0)) / 1000);
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

  const threads: ThreadRatioStats[] = [];
  for (const w of r.workloads) {
    const base = threadTwin(r.workloads, w);
    if (!base) continue;
    for (const tool of TOOLS) {
      const mine = groups.get(`migrate/${w.id}/${tool}`);
      const twin = groups.get(`migrate/${base.id}/${tool}`);
      if (!mine || !twin) continue;
      const pairs = pairRatios(byRound(mine, "freezeMs"), byRound(twin, "freezeMs"));
      if (!pairs.length) continue;
      threads.push({
        workload: w.id,
        threads: threadsOf(w),
        base: base.id,
        tool,
        pairs,
        summary: summarize(pairs.map((p) => p.ratio)),
      });
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
  return { series, ratios, threads, phases, linkMiBs, linkFraction, mpi: mpiStats(r) };
}

/** The figures of the MPI workloads' samples that carry the job's times. */
export function mpiStats(r: BenchResults): MpiStats[] {
  return r.workloads.filter(isMpi).flatMap((w) =>
    TOOLS.flatMap((tool) => {
      const list = r.samples.filter((s) =>
        s.kind === "migrate" && s.workload === w.id && s.tool === tool && s.job
      );
      if (!list.length) return [];
      const job = (f: (j: NonNullable<Sample["job"]>) => number) => values(list, (s) => f(s.job!));
      const slowdown = pairRatios(
        new Map(list.map((s) => [s.round, s.job!.movedMs])),
        new Map(list.map((s) => [s.round, s.job!.unmovedMs])),
      );
      return [{
        workload: w.id,
        tool,
        n: list.length,
        freezeMs: summarize(values(list, (s) => s.freezeMs)),
        totalMs: summarize(values(list, (s) => s.totalMs)),
        bytes: summarize(values(list, (s) => s.bytes)),
        unmovedMs: summarize(job((j) => j.unmovedMs)),
        movedMs: summarize(job((j) => j.movedMs)),
        slowdownMs: summarize(job((j) => j.movedMs - j.unmovedMs)),
        slowdown,
        slowdownRatio: summarize(slowdown.map((p) => p.ratio)),
      }];
    })
  );
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
