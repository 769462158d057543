/**
 * The workloads of the benchmark: what runs on node1 before it is moved
 * (an MPI job's rank: on node2, moved to node3). Pure definitions; the
 * runner starts them (bench/lib/measure.ts, bench/lib/mpi.ts).
 *
 * @module
 */
import type { WorkloadInfo } from "./types.ts";

/** A workload and how to run it. */
export interface Workload extends WorkloadInfo {
  /** Threads of the process (bench_anon's THREADS; 1 for the others). */
  threads: number;
  /** Whether a local checkpoint + restore applies (ppm's image files hold no live sockets). */
  local: boolean;
  /** MiB bench_anon writes anew each 200 ms tick (its STRIPES; default 1). */
  stripes?: number;
}

/** Every workload, in report order. */
export const WORKLOADS: readonly Workload[] = [
  {
    id: "anon-1",
    title: "1 MiB anonymous memory written",
    mib: 1,
    connections: 0,
    threads: 1,
    local: true,
  },
  {
    id: "anon-64",
    title: "64 MiB anonymous memory",
    mib: 64,
    connections: 0,
    threads: 1,
    local: true,
  },
  // anon-64's memory in a process of 8 threads: its freeze time against anon-64's is
  // what threads cost (summary.ts, Digest.threads). Next to anon-64, so the
  // two of a round are measured minutes apart.
  {
    id: "threads-64",
    title: "64 MiB anonymous memory, 8 threads",
    mib: 64,
    connections: 0,
    threads: 8,
    local: true,
  },
  {
    id: "anon-256",
    title: "256 MiB anonymous memory",
    mib: 256,
    connections: 0,
    threads: 1,
    local: true,
  },
  // Pre-copy's case: a large process that keeps writing, 1 % of its memory a second (2 MiB
  // every 200 ms). ppm's rounds against CRIU's plain dump; its freeze against anon-1's is what
  // pre-copy is for (within 2x of a 1 MiB process's, the goal of issue 20).
  {
    id: "dirty-1g",
    title: "1 GiB anonymous memory, 1 % of it written each second",
    mib: 1024,
    connections: 0,
    threads: 1,
    stripes: 2,
    local: false,
  },
  {
    id: "tcp-1",
    title: "one established TCP connection, a stream from node2",
    mib: 0,
    connections: 1,
    threads: 1,
    local: false,
  },
  {
    id: "listen-8",
    title: "a listener with 8 established connections",
    mib: 0,
    connections: 8,
    threads: 1,
    local: false,
  },
  // Rank 1 of `ring 80 MS 64` on 3 ranks, one per node (MPICH over TCP, docs/mpi.md): moved
  // node2 → node3 while the job runs, against the same job unmoved (bench/lib/mpi.ts). Its
  // connections are to its two peers (UCX may hold more than one to each); its one thread is
  // ring's own (MPICH and UCX may start more). Needs a third node.
  {
    id: "mpi-64",
    title: "one rank of a 3-rank MPI job, 64 MiB per rank",
    mib: 64,
    connections: 2,
    threads: 1,
    local: false,
    ranks: 3,
  },
];

/** The workload pre-copy is for (a large process that keeps writing). */
export const DIRTY_WORKLOAD = "dirty-1g";

/** `criu pre-dump`s before CRIU's dump of a workload that keeps writing (its iterative migration). */
export const CRIU_PRE_DUMPS = 3;

/** The one workload of `--quick`. */
export const QUICK_WORKLOAD = "anon-1";

/** Rounds (pairs) of a full run, and of `--quick`. */
export const ROUNDS = { full: 5, quick: 2 } as const;

/** The workloads of a run; a partial run's are `only`, in the order of WORKLOADS. */
export function workloadsFor(mode: "full" | "quick" | "partial", only: string[] = []): Workload[] {
  if (mode === "quick") return WORKLOADS.filter((w) => w.id === QUICK_WORKLOAD);
  return mode === "partial" ? WORKLOADS.filter((w) => only.includes(w.id)) : [...WORKLOADS];
}

/** The nodes a run of `workloads` needs: two, or one per rank of its largest MPI job. */
export function nodesFor(workloads: readonly Workload[]): number {
  return Math.max(2, ...workloads.map((w) => w.ranks ?? 0));
}

/** Plain record of a workload for the results file. */
export function workloadInfo(w: Workload): WorkloadInfo {
  return {
    id: w.id,
    title: w.title,
    mib: w.mib,
    connections: w.connections,
    threads: w.threads,
    ...(w.ranks ? { ranks: w.ranks } : {}),
  };
}
