/**
 * What a node keeps about the relays of the processes that arrived on it,
 * one JSON file each under the runtime directory (`/run/ppm/relays`), so an
 * agent that restarts finds them and takes the relays up again. The files
 * are root's (0700 directory), and still read as untrusted: a bad one is
 * skipped with the reason, never used.
 *
 * @module
 */
import { join } from "node:path";
import { dropPidRecord, loadPidRecords, savePidRecord } from "../host/pid_records.ts";
import { NODE_NAME } from "../config/values.ts";
import { runRoot } from "../paths.ts";
import type { KeeperId } from "./keeper.ts";

/** The relays of one arrived process. */
export interface RelayRecord {
  /** The process's PID here. */
  pid: number;
  /** Its start time (field 22 of /proc/PID/stat): tells it from a later process with its PID. */
  startTicks: string;
  /** Names the relay to the source's agent (32 hex digits, given by the source). */
  token: string;
  /** The node it came from (where its output goes). */
  from: string;
  /** Where its FIFOs are: a directory `in-*` of the runtime directory. */
  dir: string;
  /** Its stdin is relayed too (else it is /dev/null). */
  stdin: boolean;
  /** The keeper holding its FIFOs, if one started. */
  keeper?: KeeperId;
  /** What the process table showed of it (a new agent lists it again). */
  arrival?: {
    /** Its command name. */
    name: string;
    /** Where it started. */
    origin: { node: string; pid: number };
    /** Moves including the last one. */
    moves: number;
    /** When it arrived (ISO). */
    at: string;
  };
}

/** Where the records are. */
export function relaysDir(): string {
  return join(runRoot(), "relays");
}

/** A relay token: 128 random bits in hex. */
export function newRelayToken(): string {
  return [...crypto.getRandomValues(new Uint8Array(16))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** True when `t` is a relay token. */
export function isRelayToken(t: unknown): t is string {
  return typeof t === "string" && /^[0-9a-f]{32}$/.test(t);
}

const TICKS = /^[0-9]{1,20}$/;

function isPid(n: unknown): n is number {
  return Number.isSafeInteger(n) && (n as number) > 1 && (n as number) <= 4194304;
}

/**
 * Checks a record read from disk; returns why it is unusable, or "" when it
 * is fine. Its FIFO directory must be a direct child `in-*` of `root`.
 */
export function badRecord(r: unknown, root = runRoot()): string {
  const x = r as Partial<RelayRecord> | null;
  if (typeof x !== "object" || x === null) return "not an object";
  if (!isPid(x.pid)) return `bad pid ${JSON.stringify(x.pid)}`;
  if (typeof x.startTicks !== "string" || !TICKS.test(x.startTicks)) return "bad startTicks";
  if (!isRelayToken(x.token)) return "bad token";
  if (typeof x.from !== "string" || !NODE_NAME.test(x.from)) return "bad node name";
  if (
    typeof x.dir !== "string" || !x.dir.startsWith(`${root}/`) ||
    !/^in-[0-9]+-[A-Za-z0-9_]+$/.test(x.dir.slice(root.length + 1))
  ) {
    return `bad FIFO directory ${JSON.stringify(x.dir)}`;
  }
  if (typeof x.stdin !== "boolean") return "bad stdin";
  if (
    x.keeper !== undefined &&
    (typeof x.keeper !== "object" || x.keeper === null || !isPid(x.keeper.pid) ||
      typeof x.keeper.startTicks !== "string" ||
      !(x.keeper.startTicks === "" || TICKS.test(x.keeper.startTicks)))
  ) {
    return "bad keeper";
  }
  if (x.arrival !== undefined && badArrival(x.arrival)) return "bad arrival";
  return "";
}

function badArrival(a: unknown): boolean {
  const x = a as RelayRecord["arrival"];
  return typeof x !== "object" || x === null || typeof x.name !== "string" ||
    x.name.length > 64 || typeof x.origin !== "object" || x.origin === null ||
    typeof x.origin.node !== "string" || !NODE_NAME.test(x.origin.node) ||
    !isPid(x.origin.pid) || !Number.isSafeInteger(x.moves) || x.moves < 1 ||
    x.moves > 1_000_000 || typeof x.at !== "string" || x.at.length > 40 ||
    !Number.isFinite(Date.parse(x.at));
}

/** Writes (replaces) the record of `r.pid`, atomically. */
export function saveRecord(r: RelayRecord, dir = relaysDir()): void {
  savePidRecord(dir, r.pid, r);
}

/** Removes the record of `pid` (gone already: fine). */
export function dropRecord(pid: number, dir = relaysDir()): void {
  dropPidRecord(dir, pid);
}

/** The records there, and why each unusable file was left out (and removed). */
export function loadRecords(
  dir = relaysDir(),
  root = runRoot(),
): { records: RelayRecord[]; bad: string[] } {
  return loadPidRecords<RelayRecord>(dir, 65536, (r) => badRecord(r, root));
}
