/**
 * The records a benchmark run produces. Every number in them comes from a
 * measurement taken in the run; what could not be measured is a
 * {@link Failure} or a note, never a made-up value.
 *
 * @module
 */

/**
 * The JSON schema tag of a results file. 2 added an MPI job's figures (a sample's `totalMs` and
 * `job`, a workload's `ranks`); a file of schema 1 is one of schema 2 without them.
 */
export const SCHEMA = "ppm-bench/2";

/** Every schema tag a results file may carry (older first). */
export const SCHEMAS: readonly string[] = ["ppm-bench/1", SCHEMA];

/** Who moved or checkpointed the process. */
export type Tool = "ppm" | "ppm-copy-all" | "criu";

/** Every tool, in report order. */
export const TOOLS: readonly Tool[] = ["ppm", "ppm-copy-all", "criu"];

/** What was measured: a migration between two nodes, or a checkpoint + restore on one node. */
export type Kind = "migrate" | "local";

/** One measurement of one tool on one workload in one round. */
export interface Sample {
  /** Migration or local checkpoint + restore. */
  kind: Kind;
  /** Workload id (see workloads.ts). */
  workload: string;
  /** The tool. */
  tool: Tool;
  /** Round number (0-based); samples of the same round form a pair. */
  round: number;
  /**
   * migrate: from the process stopped on node1 to it running on node2, ms;
   * local: checkpoint plus restore, ms.
   */
  freezeMs: number;
  /** migrate: bytes that went over the wire for the process (image, pages). */
  bytes?: number;
  /** Anonymous memory the workload wrote, bytes (what must be carried). */
  writtenBytes?: number;
  /** Time the image spent on the wire, ms (for the throughput against the link). */
  transferMs?: number;
  /**
   * migrate, ppm: of `bytes`, those the pre-copy rounds sent while the process ran (before
   * the freeze), and the rounds' time, ms.
   */
  precopyBytes?: number;
  precopyMs?: number;
  /** TCP workloads: the longest time a peer received nothing, across the migration, ms. */
  stallMs?: number;
  /**
   * migrate, MPI workloads: the whole migration, ms (ppm: from the offer to the end, the deputy
   * standing in included).
   */
  totalMs?: number;
  /** MPI workloads: the job's wall time, from mpiexec's start to its exit, in this round. */
  job?: JobTimes;
  /** Per-phase times, ms (names depend on the tool). */
  phasesMs?: Record<string, number>;
}

/** An MPI job's wall times in one round, ms: run alone, and with this migration of a rank. */
export interface JobTimes {
  /** The same job with no rank moved, in the same round. */
  unmovedMs: number;
  /** The job whose rank was moved. */
  movedMs: number;
}

/** One raw TCP throughput measurement between the two guests. */
export interface LinkSample {
  /** Round number. */
  round: number;
  /** Bytes sent. */
  bytes: number;
  /** From the first byte received to the end of the stream at the receiver, ms. */
  ms: number;
}

/** A measurement that did not happen, and why. */
export interface Failure {
  /** What was being measured. */
  kind: Kind | "link" | "setup";
  /** Workload id ("" for link and setup). */
  workload: string;
  /** Tool ("" for link and setup). */
  tool: Tool | "";
  /** Round (-1 when not tied to one). */
  round: number;
  /** What failed and why (one line, then details). */
  error: string;
}

/** Where the run happened. */
export interface Environment {
  /** The host machine. */
  machine: { cpuModel: string; cores: number; kernel: string; memoryMiB: number };
  /** The guests. */
  guest: {
    kernel: string;
    qemu: string;
    accel: string;
    nodes: number;
    memoryMiB: number;
    cpus: number;
  };
  /** This checkout. */
  ppm: { version: string; commit: string; dirty: boolean };
  /** CRIU in the guests (a host package: guests run the host's filesystem). */
  criu: { version: string };
  /** Deno running the benchmark. */
  deno: string;
}

/** A workload as recorded in the results. */
export interface WorkloadInfo {
  /** Id (e.g. "anon-64"). */
  id: string;
  /** What it is. */
  title: string;
  /** Anonymous memory written, MiB (0 when it is not about memory). */
  mib: number;
  /** TCP connections the process holds. */
  connections: number;
  /**
   * Threads the process runs (the main thread included). Results written
   * before it was recorded lack it: their workloads ran one thread.
   */
  threads?: number;
  /**
   * MPI workloads: the ranks of the job, one per node; the process measured is one of them.
   * Absent for a single process.
   */
  ranks?: number;
}

/** The whole output of one run. */
export interface BenchResults {
  /** {@link SCHEMA} (one of {@link SCHEMAS} in a file read back). */
  schema: typeof SCHEMA;
  /** "full" or "quick" (one workload, two rounds). */
  mode: "full" | "quick" | "partial";
  /** ISO times. */
  startedAt: string;
  finishedAt: string;
  /** Rounds per workload and tool. */
  rounds: number;
  /** Workloads measured. */
  workloads: WorkloadInfo[];
  /** Where. */
  environment: Environment;
  /** Every measurement. */
  samples: Sample[];
  /** Raw TCP throughput between the guests. */
  link: LinkSample[];
  /** Every measurement that did not happen. */
  failures: Failure[];
  /** Series skipped on purpose, with why (e.g. no --copy-all in this ppm). */
  notes: string[];
}
