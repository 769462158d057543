/**
 * Pure parsers for the /proc files an agent reads to measure its load. Each
 * takes the file's text; {@link sampleFromProc} combines them into a
 * {@link LoadSample}. No file is read here.
 *
 * @module
 */
import { EXIT, PpmError } from "../errors.ts";
import type { LoadSample } from "./types.ts";

function malformed(file: string, why: string): PpmError {
  return new PpmError(
    `cannot parse ${file}`,
    why,
    "check that /proc is mounted and the kernel is Linux ≥ 4.20 for PSI",
    EXIT.FAILURE,
  );
}

function num(file: string, text: string | undefined, what: string): number {
  const n = Number(text);
  if (text === undefined || text.trim() === "" || !Number.isFinite(n)) {
    throw malformed(file, `${what} is ${JSON.stringify(text ?? "missing")}`);
  }
  return n;
}

/** /proc/loadavg: the three load averages and the runnable/total scheduling entities. */
export interface Loadavg {
  /** 1, 5 and 15 minute averages. */
  avg: [number, number, number];
  /** Runnable entities now (includes the reader). */
  running: number;
  /** All entities. */
  total: number;
}

/** Parses /proc/loadavg, e.g. "0.52 0.58 0.59 3/812 12345". */
export function parseLoadavg(text: string): Loadavg {
  const f = text.trim().split(/\s+/);
  const file = "/proc/loadavg";
  if (f.length < 4) throw malformed(file, `expected 5 fields, got ${JSON.stringify(text.trim())}`);
  const [running, total] = f[3].split("/");
  return {
    avg: [num(file, f[0], "avg1"), num(file, f[1], "avg5"), num(file, f[2], "avg15")],
    running: num(file, running, "running"),
    total: num(file, total, "total"),
  };
}

/** The parts of /proc/stat the load needs. */
export interface ProcStat {
  /** procs_running: runnable tasks (includes the reader). */
  procsRunning: number;
  /** procs_blocked: tasks waiting for I/O. */
  procsBlocked: number;
  /** Number of "cpuN" lines: online CPUs. */
  cpus: number;
}

/** Parses /proc/stat. */
export function parseProcStat(text: string): ProcStat {
  const file = "/proc/stat";
  let running: string | undefined;
  let blocked: string | undefined;
  let cpus = 0;
  for (const line of text.split("\n")) {
    const [key, value] = line.trim().split(/\s+/);
    if (/^cpu\d+$/.test(key)) cpus++;
    else if (key === "procs_running") running = value;
    else if (key === "procs_blocked") blocked = value;
  }
  if (running === undefined) throw malformed(file, "no procs_running line");
  return {
    procsRunning: num(file, running, "procs_running"),
    procsBlocked: blocked === undefined ? 0 : num(file, blocked, "procs_blocked"),
    cpus,
  };
}

/** One line of a PSI file. */
export interface PressureLine {
  /** Percent of time stalled over the last 10, 60 and 300 seconds. */
  avg10: number;
  /** Over the last 60 s. */
  avg60: number;
  /** Over the last 300 s. */
  avg300: number;
  /** Total stall time in microseconds. */
  total: number;
}

/** /proc/pressure/cpu (or memory, io). */
export interface Pressure {
  /** Some task stalled. */
  some: PressureLine;
  /** All tasks stalled; absent for CPU on older kernels. */
  full?: PressureLine;
}

/** Parses a PSI file such as /proc/pressure/cpu. */
export function parsePressure(text: string, file = "/proc/pressure/cpu"): Pressure {
  const lines: Partial<Pressure> = {};
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f[0] !== "some" && f[0] !== "full") continue;
    const kv = new Map(f.slice(1).map((p) => p.split("=") as [string, string]));
    lines[f[0]] = {
      avg10: num(file, kv.get("avg10"), `${f[0]} avg10`),
      avg60: num(file, kv.get("avg60"), `${f[0]} avg60`),
      avg300: num(file, kv.get("avg300"), `${f[0]} avg300`),
      total: num(file, kv.get("total"), `${f[0]} total`),
    };
  }
  if (!lines.some) throw malformed(file, 'no "some" line');
  return lines.full ? { some: lines.some, full: lines.full } : { some: lines.some };
}

/** Memory figures from /proc/meminfo, in bytes. */
export interface Meminfo {
  /** MemTotal. */
  memTotal: number;
  /** MemFree. */
  memFree: number;
  /** MemAvailable, or MemFree + Buffers + Cached on kernels without it. */
  memAvailable: number;
}

/** Parses /proc/meminfo ("MemTotal:  16384000 kB" lines). */
export function parseMeminfo(text: string): Meminfo {
  const file = "/proc/meminfo";
  const kb = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^(\w+(?:\(\w+\))?):\s+(\d+)(?:\s+kB)?\s*$/.exec(line.trim());
    if (m) kb.set(m[1], Number(m[2]) * (/kB\s*$/.test(line) ? 1024 : 1));
  }
  const get = (k: string): number => {
    const v = kb.get(k);
    if (v === undefined) throw malformed(file, `no ${k} line`);
    return v;
  };
  const memTotal = get("MemTotal");
  const memFree = get("MemFree");
  const memAvailable = kb.get("MemAvailable") ??
    memFree + (kb.get("Buffers") ?? 0) + (kb.get("Cached") ?? 0);
  return { memTotal, memFree, memAvailable: Math.min(memAvailable, memTotal) };
}

/** CPU facts from /proc/cpuinfo. */
export interface Cpuinfo {
  /** "processor" entries. */
  cpus: number;
  /** Mean "cpu MHz", when given (x86). */
  mhz?: number;
  /** Mean "bogomips"/"BogoMIPS", when given. */
  bogomips?: number;
  /** The first "model name", when given. */
  model?: string;
}

/** Parses /proc/cpuinfo (x86 and arm64 layouts). */
export function parseCpuinfo(text: string): Cpuinfo {
  let cpus = 0;
  const mhz: number[] = [];
  const bogo: number[] = [];
  let model: string | undefined;
  for (const line of text.split("\n")) {
    const i = line.indexOf(":");
    if (i < 0) continue;
    const key = line.slice(0, i).trim().toLowerCase();
    const value = line.slice(i + 1).trim();
    if (key === "processor") cpus++;
    else if (key === "cpu mhz" && Number.isFinite(Number(value))) mhz.push(Number(value));
    else if (key === "bogomips" && Number.isFinite(Number(value))) bogo.push(Number(value));
    else if (key === "model name" && model === undefined) model = value;
  }
  if (cpus === 0) throw malformed("/proc/cpuinfo", "no processor entries");
  const mean = (xs: number[]) => xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined;
  const out: Cpuinfo = { cpus };
  const m = mean(mhz);
  const b = mean(bogo);
  if (m !== undefined) out.mhz = m;
  if (b !== undefined) out.bogomips = b;
  if (model !== undefined) out.model = model;
  return out;
}

/** Parses the output of `nproc`. */
export function parseNproc(text: string): number {
  const n = num("nproc output", text.trim(), "the CPU count");
  if (!Number.isInteger(n) || n < 1) throw malformed("nproc output", `${n} is not a CPU count`);
  return n;
}

/** The texts {@link sampleFromProc} combines; cpus come from nproc, else cpuinfo, else stat. */
export interface ProcTexts {
  /** /proc/loadavg. */
  loadavg: string;
  /** /proc/stat. */
  stat: string;
  /** /proc/meminfo. */
  meminfo: string;
  /** /proc/pressure/cpu; absent when the kernel has no PSI. */
  pressureCpu?: string;
  /** /proc/cpuinfo. */
  cpuinfo?: string;
  /** The output of `nproc`. */
  nproc?: string;
}

/** Options of {@link sampleFromProc}. */
export interface SampleOptions {
  /** The time of the reading, in seconds. */
  at: number;
  /** Relative CPU speed of this node (configured; default 1). */
  speed?: number;
  /** Runnable tasks to subtract for the reader itself (default 1). */
  self?: number;
}

/** A {@link LoadSample} from the texts of the /proc files. */
export function sampleFromProc(texts: ProcTexts, options: SampleOptions): LoadSample {
  const loadavg = parseLoadavg(texts.loadavg);
  const stat = parseProcStat(texts.stat);
  const mem = parseMeminfo(texts.meminfo);
  const cpus = texts.nproc !== undefined
    ? parseNproc(texts.nproc)
    : texts.cpuinfo !== undefined
    ? parseCpuinfo(texts.cpuinfo).cpus
    : Math.max(stat.cpus, 1);
  const sample: LoadSample = {
    at: options.at,
    runnable: Math.max(0, stat.procsRunning - (options.self ?? 1)),
    cpus,
    speed: options.speed ?? 1,
    loadavg: loadavg.avg,
    memTotal: mem.memTotal,
    memAvailable: mem.memAvailable,
  };
  if (texts.pressureCpu !== undefined) {
    sample.cpuPressure = parsePressure(texts.pressureCpu).some.avg10;
  }
  return sample;
}

/**
 * How many of a process's threads are runnable, from the texts of its
 * /proc/PID/task/TID/stat files: state R after the command's closing
 * parenthesis. Texts that cannot be parsed (a thread that ended) count 0.
 */
export function runnableThreads(taskStats: readonly string[]): number {
  let n = 0;
  for (const text of taskStats) {
    const close = text.lastIndexOf(")");
    if (close < 0) continue;
    if (text.slice(close + 1).trimStart().startsWith("R")) n++;
  }
  return n;
}
