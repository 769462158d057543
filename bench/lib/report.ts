/**
 * The markdown report of a run: the environment, one table per question of
 * the benchmark (freeze time, with threads against one thread, local
 * checkpoint + restore, bytes, the link, ppm's phases, the TCP stall, an MPI
 * job's slowdown when a rank moves), where ppm loses, and what failed. Pure.
 *
 * @module
 */
import { CRIU_PRE_DUMPS, DIRTY_WORKLOAD } from "./workloads.ts";
import type { Summary } from "./stats.ts";
import {
  criuCannotReasons,
  type Digest,
  digest,
  findRatio,
  findSeries,
  isMpi,
  type Metric,
  type MpiStats,
  THREAD_GOAL,
  threadsOf,
  threadTwin,
} from "./summary.ts";
import type { BenchResults, Kind, Tool, WorkloadInfo } from "./types.ts";

const MIB = 1024 * 1024;

/** Formats a number with a precision that suits its size. */
export function num(x: number): string {
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

/** "median (min–max)" of a summary, scaled by `scale`; "–" when there is none. */
export function cell(s: Summary | undefined, scale = 1, unit = ""): string {
  if (!s) return "–";
  const u = unit ? ` ${unit}` : "";
  if (s.n === 1) return `${num(s.median / scale)}${u} (n=1)`;
  return `${num(s.median / scale)}${u} (${num(s.min / scale)}–${num(s.max / scale)})`;
}

/** A ratio cell: "0.82× (0.75–0.90), 5 pairs". */
export function ratioCell(s: Summary | undefined): string {
  if (!s) return "–";
  const range = s.n > 1 ? ` (${num(s.min)}–${num(s.max)})` : "";
  return `${num(s.median)}×${range}, ${s.n} pair${s.n === 1 ? "" : "s"}`;
}

function table(head: string[], rows: string[][]): string {
  return [
    `| ${head.join(" | ")} |`,
    `| ${head.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

const TOOL_NAMES: Record<Tool, string> = {
  "ppm": "ppm",
  "ppm-copy-all": "ppm --copy-all",
  "criu": "CRIU",
};

function toolColumns(d: Digest, kind: Kind): Tool[] {
  return (["ppm", "ppm-copy-all", "criu"] as Tool[]).filter((t) =>
    d.series.some((s) => s.kind === kind && s.tool === t)
  );
}

function metricTable(
  r: BenchResults,
  d: Digest,
  kind: Kind,
  metric: Metric,
  scale: number,
  unit: string,
  extra?: { head: string; value: (workload: string) => string },
): string {
  const tools = toolColumns(d, kind);
  const workloads = r.workloads.filter((w) =>
    d.series.some((s) => s.kind === kind && s.workload === w.id && s[metric])
  );
  if (!workloads.length) return "_No measurements._";
  const head = ["workload", ...(extra ? [extra.head] : []), ...tools.map((t) => TOOL_NAMES[t])];
  const ratioTools = tools.filter((t): t is "ppm" | "ppm-copy-all" => t !== "criu");
  if (tools.includes("criu")) head.push(...ratioTools.map((t) => `${TOOL_NAMES[t]} / CRIU`));
  const rows = workloads.map((w) => [
    w.id,
    ...(extra ? [extra.value(w.id)] : []),
    ...tools.map((t) => cell(findSeries(d, kind, w.id, t)?.[metric], scale, unit)),
    ...(tools.includes("criu")
      ? ratioTools.map((t) => ratioCell(findRatio(d, kind, w.id, t, metric)?.summary))
      : []),
  ]);
  return table(head, rows);
}

/** The goal of a threaded workload against its one-thread twin, as the report writes it. */
export const THREAD_GOAL_TEXT = `≤ ${THREAD_GOAL}×`;

/** "met" or "missed" for ppm's median thread ratio; "not measured" without one. */
export function threadVerdict(s: Summary | undefined): string {
  if (!s) return "not measured";
  return s.median <= THREAD_GOAL ? "met" : "missed";
}

function threadName(w: WorkloadInfo): string {
  const n = threadsOf(w);
  return `${w.id} (${n} thread${n === 1 ? "" : "s"})`;
}

/** The threaded workloads of a run (e.g. threads-64). */
function threaded(r: BenchResults): WorkloadInfo[] {
  return r.workloads.filter((w) => threadsOf(w) > 1);
}

function threadRatio(d: Digest, workload: string, tool: Tool) {
  return d.threads.find((x) => x.workload === workload && x.tool === tool);
}

/**
 * One line per threaded workload of the run: each tool's migration freeze
 * time of it over that of its one-thread twin, pair by pair, and whether
 * ppm meets {@link THREAD_GOAL}. The runner prints them after the run;
 * empty when the run has no threaded workload.
 */
export function threadLines(r: BenchResults, d: Digest = digest(r)): string[] {
  return threaded(r).map((w) => {
    const base = threadTwin(r.workloads, w);
    if (!base) {
      return `${threadName(w)}: no one-thread workload of ${w.mib} MiB in this run, ` +
        `so no ratio (goal for ppm ${THREAD_GOAL_TEXT})`;
    }
    const ppm = threadRatio(d, w.id, "ppm")?.summary;
    const tools = (["ppm", "ppm-copy-all", "criu"] as Tool[]).flatMap((t) => {
      const s = threadRatio(d, w.id, t)?.summary;
      return s || t === "ppm" ? [`${TOOL_NAMES[t]} ${ratioCell(s)}`] : [];
    });
    return `${threadName(w)} / ${threadName(base)}, migration freeze time: ${
      tools.join("; ")
    }; goal for ppm ${THREAD_GOAL_TEXT}: ${threadVerdict(ppm)}`;
  });
}

/** The table of threaded workloads against their one-thread twins; undefined without any. */
function threadTable(r: BenchResults, d: Digest): string | undefined {
  const ws = threaded(r);
  if (!ws.length) return undefined;
  const tools = toolColumns(d, "migrate");
  const rows = ws.map((w) => {
    const base = threadTwin(r.workloads, w);
    return [
      threadName(w),
      base ? threadName(base) : "– (not in this run)",
      ...tools.map((t) => ratioCell(threadRatio(d, w.id, t)?.summary)),
      `${THREAD_GOAL_TEXT}: ${threadVerdict(threadRatio(d, w.id, "ppm")?.summary)}`,
    ];
  });
  return table(["workload", "against", ...tools.map((t) => TOOL_NAMES[t]), "goal for ppm"], rows);
}

/** The heading of the MPI section, in a report of a run with an MPI workload only. */
export const MPI_SECTION = "## 7. An MPI job: one rank moved";

/** "+12.3 s" for a signed difference in ms. */
function signedSeconds(s: Summary | undefined): string {
  if (!s) return "–";
  const f = (ms: number) => `${ms >= 0 ? "+" : "−"}${num(Math.abs(ms) / 1000)}`;
  return s.n === 1 ? `${f(s.median)} s (n=1)` : `${f(s.median)} s (${f(s.min)}–${f(s.max)})`;
}

function mpiRow(x: MpiStats): string[] {
  return [
    x.workload,
    TOOL_NAMES[x.tool],
    cell(x.freezeMs),
    cell(x.totalMs),
    cell(x.bytes, MIB),
    cell(x.unmovedMs, 1000),
    cell(x.movedMs, 1000),
    signedSeconds(x.slowdownMs),
    ratioCell(x.slowdownRatio),
  ];
}

/**
 * One line per MPI workload and tool of the run: the rank's freeze, the whole migration and the
 * job's slowdown against the same job unmoved; or why CRIU could not move the rank. The runner
 * prints them after the run; empty when the run has no MPI workload.
 */
export function mpiLines(r: BenchResults, d: Digest = digest(r)): string[] {
  return r.workloads.filter(isMpi).flatMap((w) => {
    const measured = d.mpi.filter((x) => x.workload === w.id).map((x) =>
      `${w.id}, ${TOOL_NAMES[x.tool]}: rank frozen ${cell(x.freezeMs, 1, "ms")}, migration ` +
      `${cell(x.totalMs, 1, "ms")}; the job ${signedSeconds(x.slowdownMs)} against unmoved, ` +
      `${ratioCell(x.slowdownRatio)}`
    );
    const cannot = criuCannotReasons(r.notes, w.id).map((c) => `${w.id}: CRIU cannot: ${c}`);
    return measured.length || cannot.length
      ? [...measured, ...cannot]
      : [`${w.id}: no move of a rank was measured`];
  });
}

/** The MPI section's parts; none for a run without an MPI workload. */
function mpiSection(r: BenchResults, d: Digest): string[] {
  const ws = r.workloads.filter(isMpi);
  if (!ws.length) return [];
  const rows = d.mpi.map(mpiRow);
  const cannot = ws.flatMap((w) =>
    criuCannotReasons(r.notes, w.id).map((c) => `- ${w.id}, CRIU cannot: ${c}`)
  );
  return [
    MPI_SECTION,
    "Rank 1 of a 3-rank MPICH job (one rank per node, 64 MiB each, docs/mpi.md) moved node2 → " +
    "node3 while the job runs, a few ticks in. The rank's freeze and the whole migration (ms); " +
    "the job's wall time, from mpiexec's start to its exit (s), unmoved and with the move, in " +
    "the same round; the slowdown is moved − unmoved and moved / unmoved, round by round. " +
    "Every job ended with exit 0 and the reference result, or it is under what failed.",
    rows.length
      ? table([
        "workload",
        "tool",
        "rank freeze (ms)",
        "migration total (ms)",
        "MiB sent",
        "job unmoved (s)",
        "job moved (s)",
        "slowdown",
        "slowdown ×",
      ], rows)
      : "_No measurements._",
    ...(cannot.length ? [cannot.join("\n")] : []),
  ];
}

function environment(r: BenchResults): string {
  const e = r.environment;
  return table(["", ""], [
    ["host CPU", `${e.machine.cpuModel}, ${e.machine.cores} cores`],
    ["host kernel", e.machine.kernel],
    ["host memory", `${e.machine.memoryMiB} MiB`],
    [
      "guests",
      `${e.guest.nodes} × kernel ${e.guest.kernel}, ${e.guest.memoryMiB} MiB, ${e.guest.cpus} vCPUs`,
    ],
    ["emulator", `${e.guest.qemu}, ${e.guest.accel}`],
    [
      "ppm",
      `${e.ppm.version}, commit ${e.ppm.commit}${e.ppm.dirty ? " (uncommitted changes)" : ""}`,
    ],
    ["CRIU", e.criu.version],
    ["Deno", e.deno],
    ["rounds", `${r.rounds} per workload and tool, interleaved (ppm, CRIU, ppm, CRIU, …)`],
  ]);
}

/**
 * Where ppm is slower or heavier than CRIU (median ratio above 1), each
 * with ppm's costliest phase on that workload. Empty when it never is.
 */
export function losses(r: BenchResults, d: Digest = digest(r)): string[] {
  const out: string[] = [];
  const what: Record<Metric, string> = {
    freezeMs: "freeze time",
    bytes: "bytes on the wire",
    stallMs: "TCP stall",
  };
  for (const x of d.ratios) {
    if (x.tool !== "ppm" || !x.summary || x.summary.median <= 1) continue;
    const kindName = x.kind === "migrate" ? "migration" : "local checkpoint + restore";
    const ph = d.phases.find((p) =>
      p.kind === x.kind && p.workload === x.workload && p.tool === "ppm"
    );
    const top = ph?.phases.filter((p) => !/^total|^frozen/.test(p.phase))
      .sort((a, b) => b.summary.median - a.summary.median)[0];
    out.push(
      `ppm loses on ${x.workload} (${kindName}, ${what[x.metric]}): ${
        ratioCell(x.summary)
      } of CRIU` +
        (top && x.metric !== "bytes"
          ? `; ppm's costliest phase there is ${top.phase} (median ${num(top.summary.median)} ms)`
          : ""),
    );
  }
  return out;
}

/** Renders the markdown report of a run; `chart` is the SVG's file name next to it, if any. */
export function renderReport(r: BenchResults, chart?: string): string {
  const d = digest(r);
  const parts: string[] = [];
  parts.push(`# ppm benchmark, ${r.startedAt} (${r.mode})`);
  parts.push(
    "Absolute times under TCG are slow and noisy; the ratios, taken pair by pair within this " +
      "one run, are what count. Cells are median (min–max) over the rounds. " +
      "How it is measured: docs/bench.md.",
  );
  parts.push("## Environment", environment(r));

  parts.push(
    "## 1. Migration freeze time (ms)",
    "From the process stopped on node1 to it running on node2" +
      (r.workloads.some(isMpi) ? ` (an MPI job's rank: node2 → node3, section 7).` : ".") +
      (r.workloads.some((w) => w.id === DIRTY_WORKLOAD)
        ? ` ${DIRTY_WORKLOAD} moves after copies made while it runs: ppm's pre-copy rounds, and ` +
          `CRIU's iterative migration (${CRIU_PRE_DUMPS} \`criu pre-dump\`s to page servers, ` +
          "then the dump, as P.Haul does); its freeze is the last step's."
        : ""),
    metricTable(r, d, "migrate", "freezeMs", 1, ""),
  );
  if (chart) parts.push(`![freeze time against memory size](${chart})`);
  const threads = threadTable(r, d);
  if (threads) {
    parts.push(
      "**With threads, against one thread.** The freeze time of a process with threads over " +
        "that of a one-thread process with the same memory, pair by pair within each round; " +
        `ppm's goal is ${THREAD_GOAL_TEXT}.`,
      threads,
    );
  }

  parts.push(
    "## 2. Local checkpoint + restore (ms)",
    "Checkpoint to a file and restore from it on one node (ppm: `ppm checkpoint --kill` + " +
      "`ppm restore`; CRIU: `criu dump` + `criu restore`).",
    metricTable(r, d, "local", "freezeMs", 1, ""),
  );

  parts.push(
    "## 3. Bytes on the wire (MiB)",
    "What crossed the network to move the process, against the anonymous memory it wrote.",
    metricTable(r, d, "migrate", "bytes", MIB, "", {
      head: "written",
      value: (id) => {
        const w = r.workloads.find((x) => x.id === id);
        return w && w.mib ? `${w.mib}` : "–";
      },
    }),
  );

  const linkRows = d.linkFraction.map((f) => [
    f.workload,
    TOOL_NAMES[f.tool],
    cell(findSeries(d, "migrate", f.workload, f.tool)?.throughputMiBs),
    cell(f.summary, 0.01, "%"),
  ]);
  parts.push(
    "## 4. The link",
    `Raw TCP throughput between the guests: ${
      cell(d.linkMiBs, 1, "MiB/s")
    } (${r.link.length} runs).`,
    linkRows.length
      ? table(["workload", "tool", "image transfer MiB/s", "of the link"], linkRows)
      : "_No transfer to compare._",
  );

  parts.push("## 5. Where the freeze goes (ms, medians)");
  const phaseSets = d.phases.filter((p) => p.kind === "migrate");
  if (!phaseSets.length) parts.push("_No per-phase figures._");
  for (const p of phaseSets) {
    parts.push(
      `**${p.workload}, ${TOOL_NAMES[p.tool]}**`,
      table(["phase", "median (min–max)"], p.phases.map((x) => [x.phase, cell(x.summary)])),
    );
  }

  parts.push(
    "## 6. The stall a TCP peer sees (ms)",
    "The longest time the peer on node2 received no echoed byte while it had bytes outstanding, " +
      "across the migration.",
    metricTable(r, d, "migrate", "stallMs", 1, ""),
  );

  parts.push(...mpiSection(r, d));

  const lost = losses(r, d);
  parts.push(
    "## Where ppm loses",
    lost.length
      ? lost.map((l) => `- ${l}`).join("\n")
      : "Nowhere in this run: every median ratio ppm/CRIU is at most 1.",
  );

  if (r.notes.length) parts.push("## Notes", r.notes.map((n) => `- ${n}`).join("\n"));
  if (r.failures.length) {
    parts.push(
      "## What failed",
      table(
        ["what", "workload", "tool", "round", "error"],
        r.failures.map((f) => [
          f.kind,
          f.workload || "–",
          f.tool ? TOOL_NAMES[f.tool] : "–",
          f.round >= 0 ? String(f.round) : "–",
          f.error.split("\n")[0].replaceAll("|", "\\|"),
        ]),
      ),
    );
  }
  return parts.join("\n\n") + "\n";
}
