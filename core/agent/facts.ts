/**
 * The facts of the processes on this node as the policy takes them
 * ({@link ProcessView}): memory from /proc, CPU demand from the load
 * reader's looks at the tasks' run and wait times (else from the CPU time
 * they got between two looks), age and residency from the process table.
 *
 * @module
 */
import type { ProcessView } from "../balance/types.ts";
import type { ProcessEntry } from "./processes.ts";
import { DEMAND_WINDOW, type DemandRate, LookWindow } from "../balance/runqueue.ts";
import { CLK_TCK, type ProcFacts } from "./procfs.ts";

/** What the load reader knows of a process's run and wait times (core/balance/runqueue.ts DemandRates). */
export interface Schedstats {
  /** Its demand over the reader's window; undefined until seen twice. */
  demand(pid: number): DemandRate | undefined;
  /** Its run plus wait time at the last look, ns; undefined when unseen. */
  runWait(pid: number): number | undefined;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** The CPU time of one process at one look. */
interface Look {
  ticks: number;
  runWaitNs?: number;
  at: number;
}

/**
 * Estimates CPU demand, the CPUs a process would use alone, where the load
 * reader has no window of looks at it (a process first seen now, or a kernel
 * without schedstat).
 *
 * Given schedstat times, the demand is the time the process was running or
 * waiting for a CPU per second (see DemandRates), here since the reference
 * look or, at the first look, since it started here.
 *
 * Otherwise it is the CPU time it got per second, its share: while the node
 * is loaded (load > 1) that share is cut by the load, so it is scaled back
 * up: a CPU-bound process sharing one CPU with five others gets 1/6 of it at
 * load 6, demand 1.
 *
 * It is never more than its thread count.
 */
export class DemandMeter {
  #looks = new Map<number, LookWindow<Look>>();

  /** @param window seconds a demand is measured over, at least, once the process was seen that long */
  constructor(readonly window = DEMAND_WINDOW) {}

  /**
   * The demand of `pid` at `now` (seconds) with `ticks` of CPU time and,
   * when known, `runWaitNs` of run plus wait time (/proc/PID/schedstat);
   * `since` is when it started here (for the first look: its average since
   * then), `load` the node's instantaneous normalised load.
   */
  demand(
    pid: number,
    ticks: number,
    threads: number,
    now: number,
    since: number,
    load: number,
    runWaitNs?: number,
  ): number {
    let looks = this.#looks.get(pid);
    if (!looks) this.#looks.set(pid, looks = new LookWindow(this.window));
    const prev = looks.push({ ticks, runWaitNs, at: now });
    const fresh = prev && prev.ticks <= ticks && prev.at < now;
    const from = fresh ? prev : { ticks: 0, runWaitNs: 0, at: Math.min(since, now - 1e-3) };
    const span = Math.max(1e-3, now - from.at);
    let demand: number;
    if (runWaitNs !== undefined && from.runWaitNs !== undefined && runWaitNs >= from.runWaitNs) {
      demand = (runWaitNs - from.runWaitNs) / 1e9 / span;
    } else {
      demand = (ticks - from.ticks) / CLK_TCK / span * Math.max(1, load);
    }
    return round3(Math.min(Math.max(1, threads), Math.max(0, demand)));
  }

  /** Forgets the processes not in `pids`. */
  keep(pids: Iterable<number>): void {
    const live = new Set(pids);
    for (const pid of this.#looks.keys()) if (!live.has(pid)) this.#looks.delete(pid);
  }
}

/**
 * The views of the table's processes running here. `facts` reads a process
 * (null when gone); `startedHere` gives when it started or arrived here, in
 * seconds; `load` is the node's instantaneous normalised load; `schedstats`
 * the load reader's run and wait times, which give the demand wherever they
 * cover a process (`meter` estimates it elsewhere).
 */
export async function processViews(
  entries: readonly ProcessEntry[],
  opts: {
    facts: (pid: number) => Promise<ProcFacts | null>;
    startedHere: (f: ProcFacts) => number;
    meter: DemandMeter;
    schedstats?: Schedstats;
    busy: ReadonlySet<number>;
    now: number;
    load: number;
  },
): Promise<ProcessView[]> {
  const out: ProcessView[] = [];
  for (const e of entries) {
    if (e.direction === "left" || e.exit) continue;
    const f = await opts.facts(e.current.pid);
    if (!f || f.state === "Z" || f.state === "X") continue;
    if (e.startTicks !== undefined && f.startTicks !== e.startTicks) continue;
    // The meter looks at every process each round, so that it has a window where the reader has none.
    const estimate = opts.meter.demand(
      f.pid,
      f.cpuTicks,
      f.threads,
      opts.now,
      opts.startedHere(f),
      opts.load,
      opts.schedstats?.runWait(f.pid),
    );
    const rate = opts.schedstats?.demand(f.pid);
    const view: ProcessView = {
      pid: e.current.pid,
      managed: e.managed,
      demand: rate ? round3(Math.min(Math.max(1, f.threads), rate.demand)) : estimate,
      memory: f.memory,
      startedAt: e.startedAt,
      arrivedAt: e.arrivedAt,
      moves: e.moves,
      busy: opts.busy.has(e.current.pid),
    };
    if (rate) view.demandSpan = Math.round(rate.span * 10) / 10;
    if (e.cameFrom) view.cameFrom = e.cameFrom;
    out.push(view);
  }
  opts.meter.keep(out.map((v) => v.pid));
  return out;
}
