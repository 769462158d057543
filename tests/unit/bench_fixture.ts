/**
 * Synthetic benchmark records for the unit tests of bench/lib: made-up
 * numbers with a known shape, never written to bench/results.
 *
 * @module
 */
import type { BenchResults, Sample, Tool } from "../../bench/lib/types.ts";
import { criuCannotNotes } from "../../bench/lib/summary.ts";
import { SCHEMA } from "../../bench/lib/types.ts";
import { workloadInfo, WORKLOADS } from "../../bench/lib/workloads.ts";

/**
 * A run of `rounds` rounds over every workload, ppm twice as fast as CRIU on
 * memory. With threads (threads-64) the freeze takes 1.1 times that of the
 * one-thread twin (anon-64) for ppm and ppm --copy-all, `criuThreads` (1.3)
 * times for CRIU. The MPI job (mpi-64) is moved by ppm alone (when among
 * `tools`): frozen 20 s + round, migration 30 s + round, the job 60 s + round
 * unmoved and 80 s + 2 × round moved; CRIU cannot, says a note.
 */
export function syntheticRun(
  rounds = 5,
  tools: Tool[] = ["ppm", "ppm-copy-all", "criu"],
  criuThreads = 1.3,
) {
  const samples: Sample[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const w of WORKLOADS) {
      if (w.ranks) {
        if (tools.includes("ppm")) samples.push(mpiSample(w.id, round));
        continue;
      }
      for (const tool of tools) {
        const threads = w.threads > 1 ? (tool === "criu" ? criuThreads : 1.1) : 1;
        const base = (100 + w.mib * 4 + round) * threads; // ms
        const factor = tool === "ppm" ? 0.5 : tool === "ppm-copy-all" ? 0.7 : 1;
        // ppm loses on the 8-connection listener, to exercise "where ppm loses".
        const f = w.id === "listen-8" && tool === "ppm" ? 1.2 : factor;
        const bytes = (w.mib + (tool === "ppm" ? 0.2 : tool === "ppm-copy-all" ? 3 : 0.5)) *
          1048576;
        samples.push({
          kind: "migrate",
          workload: w.id,
          tool,
          round,
          freezeMs: base * f,
          bytes,
          writtenBytes: w.mib * 1048576,
          transferMs: tool === "criu" ? undefined : base * f / 2,
          stallMs: w.connections ? base * f + 200 : undefined,
          phasesMs: tool === "criu"
            ? { dump: base * 0.4, copy: base * 0.2, restore: base * 0.4 }
            : {
              freeze: 1 + round,
              "dump memory": base * f * 0.3,
              transfer: base * f / 2,
              "restore memory": base * f * 0.2,
            },
        });
        if (w.local && tool !== "ppm-copy-all") {
          samples.push({
            kind: "local",
            workload: w.id,
            tool,
            round,
            freezeMs: base * (tool === "ppm" ? 0.6 : 1),
          });
        }
      }
    }
  }
  const r: BenchResults = {
    schema: SCHEMA,
    mode: "full",
    startedAt: "2025-03-04T05:06:07.000Z",
    finishedAt: "2025-03-04T06:06:07.000Z",
    rounds,
    workloads: WORKLOADS.map(workloadInfo),
    environment: {
      machine: { cpuModel: "Test CPU", cores: 2, kernel: "6.1.0-test", memoryMiB: 4096 },
      guest: {
        kernel: "6.1.0-56-amd64",
        qemu: "QEMU emulator version 7.2.0",
        accel: "TCG",
        nodes: 2,
        memoryMiB: 1536,
        cpus: 2,
      },
      ppm: { version: "0.1.0", commit: "abc1234", dirty: false },
      criu: { version: "Version: 3.17.1" },
      deno: "2.9.6",
    },
    samples,
    link: Array.from({ length: rounds }, (_, i) => ({
      round: i,
      bytes: 64 * 1048576,
      ms: 1000 + 10 * i,
    })),
    failures: [],
    notes: criuCannotNotes(
      "mpi-64",
      Array.from({ length: rounds }, (_, round) => ({
        round,
        reason: "criu dump: Error (criu/sk-unix.c:123): unix: Can't dump half of stream " +
          `unix connection (inode ${1000 + round}); the job ran on`,
      })),
    ),
  };
  return r;
}

/** mpi-64's ppm sample of one round (see {@link syntheticRun}). */
export function mpiSample(workload: string, round: number): Sample {
  return {
    kind: "migrate",
    workload,
    tool: "ppm",
    round,
    freezeMs: 20_000 + round,
    bytes: 70 * 1048576,
    writtenBytes: 64 * 1048576,
    totalMs: 30_000 + round,
    phasesMs: { freeze: 5, "dump memory": 9000 },
    job: { unmovedMs: 60_000 + round, movedMs: 80_000 + 2 * round },
  };
}
