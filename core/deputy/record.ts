/**
 * What the agent keeps about the deputies on its node, one JSON file each
 * under the runtime directory (`/run/ppm/deputies`), so that an agent that
 * restarts expects them again (a deputy connects again for its reconnect
 * window, 600 s by default) and takes up the relay of their process when
 * the node it went to asks. The files are root's (0700 directory), and
 * still read as untrusted: a bad one is skipped with the reason and
 * removed, never used.
 *
 * @module
 */
import { join } from "node:path";
import { dropPidRecord, loadPidRecords, savePidRecord } from "../host/pid_records.ts";
import { NODE_NAME } from "../config/values.ts";
import { runRoot } from "../paths.ts";

/** One deputy: the process that left, kept here in its own place. */
export interface DeputyRecord {
  /** Its PID (the deputy's, the process's here and wherever it runs). */
  pid: number;
  /** Its start time (field 22 of /proc/PID/stat): tells it from a later process with its PID. */
  startTicks: string;
  /** The process's name. */
  name: string;
  /** The node it went to from here (its relay's other end). */
  to: string;
  /** The node it runs on now, as last heard (it may have moved on). */
  runsOn: string;
  /** Names its relay to the agent of `to` (32 hex digits), "" when it has none. */
  token: string;
  /** When it became the deputy (ISO). */
  since: string;
  /** How its process ended, once the news came (the deputy is being told). */
  end?: { code?: number; signal?: number };
}

/** The prefix of a deputy's /proc/PID/cmdline (its argv[0], core/deputy/become.ts). */
export const DEPUTY_ARGV0 = "ppm-deputy:";

/** Where the records are. */
export function deputiesDir(): string {
  return join(runRoot(), "deputies");
}

const TICKS = /^[0-9]{1,20}$/;

/**
 * Checks a record read from disk; returns why it is unusable, or "" when it
 * is fine.
 */
export function badDeputyRecord(r: unknown): string {
  const x = r as Partial<DeputyRecord> | null;
  if (typeof x !== "object" || x === null || Array.isArray(x)) return "not an object";
  if (!Number.isSafeInteger(x.pid) || x.pid! <= 1 || x.pid! > 4194304) {
    return `bad pid ${JSON.stringify(x.pid)}`;
  }
  if (typeof x.startTicks !== "string" || !TICKS.test(x.startTicks)) return "bad startTicks";
  if (typeof x.name !== "string" || x.name.length > 64) return "bad name";
  for (const k of ["to", "runsOn"] as const) {
    if (typeof x[k] !== "string" || !NODE_NAME.test(x[k]!)) return `bad node name in ${k}`;
  }
  if (typeof x.token !== "string" || !/^([0-9a-f]{32})?$/.test(x.token)) return "bad token";
  if (
    typeof x.since !== "string" || x.since.length > 40 || !Number.isFinite(Date.parse(x.since))
  ) {
    return "bad since";
  }
  if (x.end !== undefined && badEnd(x.end)) return "bad end";
  return "";
}

function badEnd(e: unknown): boolean {
  if (typeof e !== "object" || e === null || Array.isArray(e)) return true;
  const x = e as { code?: unknown; signal?: unknown };
  const inRange = (v: unknown, lo: number, hi: number) =>
    v === undefined || (Number.isInteger(v) && (v as number) >= lo && (v as number) <= hi);
  return Object.keys(x).some((k) => k !== "code" && k !== "signal") ||
    !inRange(x.code, 0, 255) || !inRange(x.signal, 1, 127);
}

/** Writes (replaces) the record of `r.pid`, atomically. */
export function saveDeputyRecord(r: DeputyRecord, dir = deputiesDir()): void {
  savePidRecord(dir, r.pid, r);
}

/** Removes the record of `pid` (gone already: fine). */
export function dropDeputyRecord(pid: number, dir = deputiesDir()): void {
  dropPidRecord(dir, pid);
}

/** The records there, and why each unusable file was left out (and removed). */
export function loadDeputyRecords(dir = deputiesDir()): { records: DeputyRecord[]; bad: string[] } {
  return loadPidRecords<DeputyRecord>(dir, 4096, badDeputyRecord);
}

/** Whether process `pid` runs the deputy program now (its argv[0] says so). */
export function isDeputyProcess(pid: number): boolean {
  try {
    const cmdline = Deno.readFileSync(`/proc/${pid}/cmdline`);
    return new TextDecoder("latin1").decode(cmdline.subarray(0, DEPUTY_ARGV0.length)) ===
      DEPUTY_ARGV0;
  } catch {
    return false;
  }
}
