/**
 * Reads this node's load from /proc: the one place the agent and discovery
 * take their samples from.
 *
 * The runnable count is, when the kernel keeps schedstat times and an
 * earlier look exists ({@link LoadReader}), the mean run-queue length since
 * that look (runqueue.ts), over user tasks only: kernel threads (khugepaged,
 * ksoftirqd, kworkers) are the kernel's housekeeping, not work to move;
 * nor are ppm's own processes: its commands (`ppm peers`, a `ppm run`
 * starting) are short and stay where they are, and under TCG one of them
 * kept four threads busy for seconds, which moved a node's work away.
 * Otherwise it is the count of runnable tasks at this instant.
 *
 * The agent's own runnable threads are not the node's load: a migration in
 * or out keeps several of them busy for seconds (under TCG for many), and
 * counting them made a node that was receiving or sending work look
 * overloaded, so it sent work on. The count of runnable tasks and the
 * agent's runnable threads are read together, synchronously, so that the
 * reading thread is counted in both and nothing else of the agent's runs
 * because of the reading.
 *
 * @module
 */
import { basename, isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseProcStatLine } from "../host/proc_stat.ts";
import { runnableThreads, sampleFromProc } from "./measure.ts";
import { DemandRates, parseSchedstat, pidOf, RunqueueMeter } from "./runqueue.ts";
import type { LoadSample, RunqueueShare } from "./types.ts";

function readOptional(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

/** The stat texts of this process's threads (those that end while read are left out). */
function ownTaskStats(): string[] {
  const out: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync("/proc/self/task")];
  } catch {
    return out;
  }
  for (const e of entries) {
    const t = readOptional(`/proc/self/task/${e.name}/stat`);
    if (t !== undefined) out.push(t);
  }
  return out;
}

/** Is the /proc/PID/stat text a kernel thread's? (Unreadable: no.) */
function isKernelThread(stat: string): boolean {
  return parseProcStatLine(stat)?.kernelThread ?? false;
}

/** Tells ppm's own processes: the same executable, and for `deno run` the same script. */
export class OwnProcesses {
  readonly #exe: string;
  readonly #script?: string;

  /** @param exe this process's executable; @param script its main module's path under `deno run` */
  constructor(exe = Deno.execPath(), script = scriptOf(Deno.mainModule)) {
    this.#exe = exe;
    // A compiled ppm is its own executable; under `deno run` the script tells ppm apart.
    if (basename(exe) === "deno") this.#script = script;
  }

  /** True when `pid` runs ppm (unreadable: no). */
  has(pid: string): boolean {
    let exe: string;
    try {
      exe = Deno.readLinkSync(`/proc/${pid}/exe`);
    } catch {
      return false;
    }
    if (exe !== this.#exe) return false;
    if (this.#script === undefined) return true;
    const script = this.#script;
    const args = (readOptional(`/proc/${pid}/cmdline`) ?? "").split("\0");
    return args.some((a) => {
      if (a === script) return true;
      if (!a.endsWith(basename(script)) || isAbsolute(a)) return false;
      try {
        return resolve(Deno.readLinkSync(`/proc/${pid}/cwd`), a) === script;
      } catch {
        return false;
      }
    });
  }
}

function scriptOf(mainModule: string): string | undefined {
  try {
    return mainModule.startsWith("file:") ? fileURLToPath(mainModule) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Run plus wait time (ns) of every user task on this node but ppm's own, by
 * "pid/tid"; undefined when the kernel keeps no schedstat times.
 */
export function readTaskTimes(own = new OwnProcesses()): Map<string, number> | undefined {
  const out = new Map<string, number>();
  const self = String(Deno.pid);
  let seen = false;
  for (const p of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(p.name) || p.name === self) continue;
    const stat = readOptional(`/proc/${p.name}/stat`);
    if (stat === undefined || isKernelThread(stat) || own.has(p.name)) continue;
    let tasks: string[];
    try {
      tasks = [...Deno.readDirSync(`/proc/${p.name}/task`)].map((t) => t.name);
    } catch {
      continue;
    }
    for (const tid of tasks) {
      const text = readOptional(`/proc/${p.name}/task/${tid}/schedstat`);
      if (text === undefined) continue;
      seen = true;
      const t = parseSchedstat(text);
      if (t !== null) out.set(`${p.name}/${tid}`, t);
    }
  }
  return seen ? out : undefined;
}

/** How many processes a sample names as the run queue's largest parts. */
const RUNQUEUE_TOP = 4;

/** The `n` processes with the largest parts of the run queue ("pid/tid" shares), with names. */
function topProcesses(shares: ReadonlyMap<string, number>, n: number): RunqueueShare[] {
  const byPid = new Map<number, number>();
  for (const [task, share] of shares) {
    const pid = pidOf(task);
    byPid.set(pid, (byPid.get(pid) ?? 0) + share);
  }
  return [...byPid].filter(([, v]) => v >= 0.05).sort((a, b) => b[1] - a[1]).slice(0, n)
    .map(([pid, v]) => ({
      pid,
      comm: (readOptional(`/proc/${pid}/comm`) ?? "?").trim(),
      runnable: Math.round(v * 100) / 100,
    }));
}

/**
 * Samples this node, averaging the run queue between its looks: one per
 * agent, since each look is measured against the one before.
 */
export class LoadReader {
  readonly #meter = new RunqueueMeter();
  readonly #own = new OwnProcesses();
  /** The processes' CPU demands, from the same looks (see {@link DemandRates}). */
  readonly demands = new DemandRates();

  /** One sample now (see {@link readLoadSample}), averaged when it can be. */
  sample(speed = 1): LoadSample {
    const times = readTaskTimes(this.#own);
    const at = performance.now() / 1000;
    const mean = times ? this.#meter.update(times, at) : undefined;
    if (times) this.demands.update(times, at);
    // The instant count (and the reader's own threads it leaves out) only without a mean.
    const s = readLoadSample(speed, mean === undefined);
    if (mean !== undefined) {
      s.runnable = mean;
      s.averaged = true;
      s.runqueue = topProcesses(this.#meter.shares, RUNQUEUE_TOP);
    }
    return s;
  }
}

/**
 * One sample of this node now: runnable tasks at this instant less this
 * process's runnable threads (at least the reader; only the reader when
 * `countSelf` is false), CPUs, `speed`, memory and PSI.
 */
export function readLoadSample(speed = 1, countSelf = true): LoadSample {
  const stat = Deno.readTextFileSync("/proc/stat");
  const self = countSelf ? Math.max(1, runnableThreads(ownTaskStats())) : 1;
  return sampleFromProc(
    {
      loadavg: Deno.readTextFileSync("/proc/loadavg"),
      stat,
      meminfo: Deno.readTextFileSync("/proc/meminfo"),
      pressureCpu: readOptional("/proc/pressure/cpu"),
      cpuinfo: readOptional("/proc/cpuinfo"),
    },
    { at: Date.now() / 1000, speed, self },
  );
}
