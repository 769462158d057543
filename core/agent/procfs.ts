/**
 * What the agent reads about one process from /proc: owner, state, CPU time,
 * start time, memory. The parsers are pure; {@link readProcFacts} reads.
 *
 * @module
 */

/** Clock ticks per second of /proc/PID/stat times (USER_HZ: 100 on every Linux ABI ppm runs on). */
export const CLK_TCK = 100;

export { parseProcStatLine, type ProcStatFields } from "../host/proc_stat.ts";
import { parseProcStatLine, type ProcStatFields } from "../host/proc_stat.ts";

/** Real, effective and saved user and group ids from /proc/PID/status. */
export interface ProcIds {
  /** Real, effective, saved, filesystem uid. */
  uids: number[];
  /** Real, effective, saved, filesystem gid. */
  gids: number[];
}

/** Parses the Uid: and Gid: lines of /proc/PID/status; null when they are missing. */
export function parseProcIds(text: string): ProcIds | null {
  const ids = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(.*)$`, "m").exec(text);
    const v = m ? m[1].trim().split(/\s+/).map(Number) : [];
    return v.length === 4 && v.every(Number.isInteger) ? v : null;
  };
  const uids = ids("Uid");
  const gids = ids("Gid");
  return uids && gids ? { uids, gids } : null;
}

/** Anonymous memory in bytes from /proc/PID/smaps_rollup; null when absent. */
export function parseAnonymous(rollup: string): number | null {
  const m = /^Anonymous:\s+(\d+) kB/m.exec(rollup);
  return m ? Number(m[1]) * 1024 : null;
}

/** The boot time (btime of /proc/stat), in seconds since the epoch; null when absent. */
export function parseBootTime(stat: string): number | null {
  const m = /^btime\s+(\d+)$/m.exec(stat);
  return m ? Number(m[1]) : null;
}

/** A process as the agent sees it. */
export interface ProcFacts extends ProcStatFields, ProcIds {
  /** Its PID. */
  pid: number;
  /** Owner of /proc/PID: root when the process is not dumpable (then only root may trace it). */
  procOwner: number;
  /** Anonymous memory in bytes (what a migration sends); 0 when unreadable. */
  memory: number;
}

/** Reads the facts of `pid`; null when there is no such process (or it is gone meanwhile). */
export async function readProcFacts(pid: number): Promise<ProcFacts | null> {
  try {
    const [stat, status, st] = await Promise.all([
      Deno.readTextFile(`/proc/${pid}/stat`),
      Deno.readTextFile(`/proc/${pid}/status`),
      Deno.stat(`/proc/${pid}`),
    ]);
    const s = parseProcStatLine(stat);
    const ids = parseProcIds(status);
    if (!s || !ids) return null;
    const rollup = await Deno.readTextFile(`/proc/${pid}/smaps_rollup`).catch(() => "");
    const out: ProcFacts = {
      pid,
      ...s,
      ...ids,
      procOwner: st.uid ?? 0,
      memory: parseAnonymous(rollup) ?? 0,
    };
    return out;
  } catch {
    return null;
  }
}

/** Reads only /proc/PID/stat (cheap, for the periodic checks); null when the process is gone. */
export async function readProcStat(pid: number): Promise<ProcStatFields | null> {
  try {
    return parseProcStatLine(await Deno.readTextFile(`/proc/${pid}/stat`));
  } catch {
    return null;
  }
}

let bootTime: number | undefined;

/** This node's boot time in seconds since the epoch (read once). */
export async function readBootTime(): Promise<number> {
  if (bootTime === undefined) {
    bootTime = parseBootTime(await Deno.readTextFile("/proc/stat")) ??
      Date.now() / 1000 - performance.now() / 1000;
  }
  return bootTime;
}

/** When a process started, in seconds since the epoch, from its start ticks. */
export function startedAtSeconds(boot: number, startTicks: number): number {
  return boot + startTicks / CLK_TCK;
}
