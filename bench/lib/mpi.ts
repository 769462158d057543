/**
 * The MPI workload (mpi-64, docs/mpi.md "Figures"): `ring 80 MS 64` on 3
 * ranks, one per node, launched as the MPI guest test launches it
 * (tests/support/mpi_job.ts). Per round: the job unmoved; the job with rank
 * 1 moved node2 → node3 by `ppm migrate` a few ticks in; and the same move
 * tried with CRIU, which is expected to refuse (rank 1's parent, the proxy,
 * stays behind with the other ends of its PMI socket and pipes). Every job
 * must end with exit 0 and the reference result; every wait is bounded, and
 * only what a job started is killed.
 *
 * @module
 */
import {
  endOf,
  type Job,
  JOB_S,
  type JobEnd,
  jobFile,
  jobProblem,
  jobReport,
  rank1,
  RING_DONE,
  RING_N,
  startJob,
  stopJob,
  ticks,
} from "../../tests/support/mpi_job.ts";
import type { Guests } from "./guest.ts";
import {
  type CriuMove,
  CriuRefused,
  criuSample,
  lives,
  type Measurer,
  portOf,
  PORTS,
  WORK,
} from "./measure.ts";
import { criuErrorLine, ppmMigrationSample } from "./scripts.ts";
import { criuCannotNotes } from "./summary.ts";
import { type Sample, TOOLS } from "./types.ts";
import { type Workload, WORKLOADS } from "./workloads.ts";

/**
 * How the job runs and moves: `ring N MS MIB`, rank 1 moved at tick TICK from node FROM to TO.
 * 80 iterations 500 ms apart last 40 s after the ranks start: enough for the offer and a freeze
 * of tens of seconds under TCG (the job cannot end without rank 1), and a round of the three
 * jobs stays near 3 minutes.
 */
export const MPI_RUN = { n: RING_N, ms: 500, tick: 3, from: 2, to: 3 } as const;

/** The last line of `ring 80 MS MIB` for workload `w`'s MiB; throws when none is known. */
export function reference(w: Workload): string {
  const done = RING_DONE[w.mib];
  if (!done) throw new Error(`${w.id}: no reference result of ring for ${w.mib} MiB`);
  return done;
}

/** The ring program and its shims (host paths, from buildMpi). */
export interface MpiPrograms {
  ring: string;
  preload: string;
}

/** What the CRIU attempt came to: a sample when CRIU moved the rank, else why it could not. */
export type CriuAttempt = { sample: Sample } | { cannot: string };

/** The MPI workload's measurements on a cluster of three nodes whose agents run. */
export class MpiBench {
  /** CRIU's refusals so far, per workload. */
  private refusals = new Map<string, { round: number; reason: string }[]>();

  constructor(
    private g: Guests,
    private m: Measurer,
    private prog: MpiPrograms,
    private log: (s: string) => void,
  ) {}

  private start(w: Workload, tag: string): Promise<Job> {
    return startJob(this.g, {
      tag,
      ring: this.prog.ring,
      preload: this.prog.preload,
      args: [MPI_RUN.n, MPI_RUN.ms, w.mib],
      dir: WORK,
      log: this.log,
    });
  }

  /** Waits for the job's end; throws unless it exited 0 with the reference result. */
  private async finish(w: Workload, job: Job, rank?: string): Promise<JobEnd> {
    const end = await endOf(this.g, job, JOB_S + 30);
    const problem = jobProblem(end, MPI_RUN.n, reference(w));
    if (problem) throw new Error(`${job.tag}: ${problem}\n${await jobReport(this.g, job, rank)}`);
    return end;
  }

  /** The job with no rank moved: its wall time, ms. */
  async unmoved(w: Workload, round: number): Promise<number> {
    const job = await this.start(w, `j-${w.id}-unmoved-${round}`);
    try {
      return (await this.finish(w, job)).wallMs;
    } finally {
      await stopJob(this.g, job);
    }
  }

  /**
   * A round of ppm: the job unmoved, then the job with rank 1 moved by `ppm migrate --json`; the
   * sample has the move's figures and both wall times.
   */
  async ppm(w: Workload, round: number): Promise<Sample> {
    const unmovedMs = await this.unmoved(w, round);
    await this.m.waitPeers(MPI_RUN.from, MPI_RUN.to);
    const job = await this.start(w, `j-${w.id}-ppm-${round}`);
    let pid: string | undefined;
    try {
      pid = await rank1(this.g, job, MPI_RUN.tick);
      const r = await this.g.exec(MPI_RUN.from, [
        "ppm",
        "migrate",
        pid,
        "--to",
        `node${MPI_RUN.to}`,
        "--json",
        "--timeout",
        "300",
      ], 900_000);
      if (r.code !== 0) {
        throw new Error(
          `ppm migrate exited ${r.code}: ${r.stderr.trim()}\n${await jobReport(this.g, job, pid)}`,
        );
      }
      const sample = ppmMigrationSample(r.stdout, {
        workload: w.id,
        tool: "ppm",
        round,
        writtenBytes: w.mib * 1048576,
        total: true,
      });
      // No deputy could stand in, say: the job is then likely to end badly.
      const warnings = (JSON.parse(r.stdout) as { warnings?: string[] }).warnings ?? [];
      for (const x of warnings) this.log(`  ${job.tag}: ppm migrate warned: ${x}`);
      await this.g.waitFor(MPI_RUN.to, lives(pid, "ring"), 30, `rank 1 (${pid}) on node3`);
      const end = await this.finish(w, job, pid);
      sample.job = { unmovedMs, movedMs: end.wallMs };
      return sample;
    } finally {
      await stopJob(this.g, job, pid);
    }
  }

  /**
   * The same move with CRIU (bench/lib/measure.ts's criuMove, rank 1 node2 → node3): a refusal
   * of its dump or restore is recorded as a reason (see {@link notes}), and the job, left
   * running, is checked to go on; a move that happens is a sample when the job then ends well
   * (against `unmovedMs`, the same round's unmoved job, when there is one).
   */
  async criu(w: Workload, round: number, unmovedMs?: number): Promise<CriuAttempt> {
    const tag = `j-${w.id}-criu-${round}`;
    const job = await this.start(w, tag);
    const k = WORKLOADS.findIndex((x) => x.id === w.id), t = TOOLS.indexOf("criu");
    let pid: string | undefined;
    let move: CriuMove | undefined;
    try {
      pid = await rank1(this.g, job, MPI_RUN.tick);
      move = {
        pid: Number(pid),
        from: MPI_RUN.from,
        to: MPI_RUN.to,
        tag,
        psPort: portOf(PORTS.pageServer, round, k, t),
        cpPort: portOf(PORTS.copy, round, k, t),
        tcp: true,
        carry: [],
      };
      let moved;
      try {
        moved = await this.m.criuMove(move);
      } catch (e) {
        if (!(e instanceof CriuRefused)) throw e;
        // Unlocked first: a failed dump should have let its connections go, but make sure.
        await this.m.criuCleanup(move);
        const reason = `criu ${e.step}: ${criuErrorLine(e.message)}` +
          (e.step === "dump" ? await this.ranOn(job, pid) : "");
        this.refused(w, round, reason);
        return { cannot: reason };
      }
      await this.g.waitFor(MPI_RUN.to, lives(pid, "ring"), 30, `rank 1 (${pid}) on node3`);
      const end = await endOf(this.g, job, JOB_S + 30);
      const problem = jobProblem(end, MPI_RUN.n, reference(w));
      if (problem) {
        const reason = `criu dump and restore succeeded, but ${problem}`;
        this.refused(w, round, reason);
        return { cannot: reason };
      }
      const sample: Sample = {
        ...criuSample(w, round, moved),
        ...(unmovedMs ? { job: { unmovedMs, movedMs: end.wallMs } } : {}),
      };
      return { sample };
    } finally {
      await stopJob(this.g, job, pid);
      if (move) await this.m.criuCleanup(move);
    }
  }

  private refused(w: Workload, round: number, reason: string): void {
    const list = this.refusals.get(w.id) ?? [];
    list.push({ round, reason });
    this.refusals.set(w.id, list);
  }

  /** After a refused dump: whether rank 1 still runs on node2 and the job goes on (2 ticks). */
  private async ranOn(job: Job, pid: string): Promise<string> {
    try {
      await this.g.waitFor(MPI_RUN.from, lives(pid, "ring"), 10, `rank 1 (${pid}) on node2`);
      const want = (await ticks(this.g, job)) + 2;
      await this.g.waitFor(1, `[ $(grep -c '^tick ' ${jobFile(job, "out")}) -ge ${want} ]`, 60);
      return "; the job ran on";
    } catch (e) {
      return `; the job did not run on: ${(e as Error).message.split("\n")[0]}`;
    }
  }

  /** The notes of CRIU's refusals, one per workload and reason, with their rounds. */
  notes(): string[] {
    return [...this.refusals].flatMap(([id, list]) => criuCannotNotes(id, list));
  }
}
