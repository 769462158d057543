/**
 * Parsers for the /proc files a checkpoint reads. Pure functions of the
 * file text, so every format quirk is tested on the host.
 *
 * @module
 */

import { parseProcStatLine } from "../host/proc_stat.ts";

/** One line of /proc/PID/maps. */
export interface MapsEntry {
  /** First address. */
  start: bigint;
  /** Address past the end. */
  end: bigint;
  /** "rwxp"-style permissions. */
  perms: string;
  /** File offset in bytes. */
  offset: bigint;
  /** Device "major:minor" in hex. */
  dev: string;
  /** Inode number. */
  ino: number;
  /** Path or pseudo-name ([heap], [stack], [vdso], ...), "" for anonymous. */
  name: string;
  /** True when the path ends with " (deleted)". */
  deleted: boolean;
}

/** Parses /proc/PID/maps. */
export function parseMaps(text: string): MapsEntry[] {
  const out: MapsEntry[] = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    const m = line.match(/^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) (\S+) (\d+)\s*(.*)$/);
    if (!m) throw new Error(`unparsable maps line: ${line}`);
    let name = m[7];
    const deleted = name.endsWith(" (deleted)");
    if (deleted) name = name.slice(0, -" (deleted)".length);
    out.push({
      start: BigInt("0x" + m[1]),
      end: BigInt("0x" + m[2]),
      perms: m[3],
      offset: BigInt("0x" + m[4]),
      dev: m[5],
      ino: Number(m[6]),
      name,
      deleted,
    });
  }
  return out;
}

/** Credentials and identity from /proc/PID/status. */
export interface ProcStatus {
  /** Name (comm). */
  name: string;
  /** Real, effective, saved, filesystem uid. */
  uid: [number, number, number, number];
  /** Real, effective, saved, filesystem gid. */
  gid: [number, number, number, number];
  /** Supplementary groups. */
  groups: number[];
  /** Threads in the group. */
  threads: number;
  /** umask. */
  umask: number;
  /** Capability sets, as hex strings. */
  caps: { inh: string; prm: string; eff: string; bnd: string; amb: string };
  /** Process state letter. */
  state: string;
  /** Tracer pid, 0 when not traced. */
  tracerPid: number;
  /** no_new_privs. */
  noNewPrivs: boolean;
  /** Seccomp mode: 0 off, 1 strict, 2 filter. */
  seccomp: number;
}

/** Parses /proc/PID/status. */
export function parseStatus(text: string): ProcStatus {
  const f = new Map<string, string>();
  for (const line of text.split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) f.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  const nums = (k: string) => (f.get(k) ?? "").split(/\s+/).filter(Boolean).map(Number);
  const four = (k: string) => {
    const v = nums(k);
    return [v[0] ?? 0, v[1] ?? 0, v[2] ?? 0, v[3] ?? 0] as [number, number, number, number];
  };
  return {
    name: f.get("Name") ?? "",
    uid: four("Uid"),
    gid: four("Gid"),
    groups: nums("Groups"),
    threads: Number(f.get("Threads") ?? "1"),
    umask: parseInt(f.get("Umask") ?? "022", 8),
    caps: {
      inh: f.get("CapInh") ?? "0",
      prm: f.get("CapPrm") ?? "0",
      eff: f.get("CapEff") ?? "0",
      bnd: f.get("CapBnd") ?? "0",
      amb: f.get("CapAmb") ?? "0",
    },
    state: (f.get("State") ?? "?").charAt(0),
    tracerPid: Number(f.get("TracerPid") ?? "0"),
    noNewPrivs: f.get("NoNewPrivs") === "1",
    seccomp: Number(f.get("Seccomp") ?? "0"),
  };
}

/** /proc/PID/fdinfo/N. */
export interface FdInfo {
  /** File position. */
  pos: bigint;
  /** Open flags (octal in the file). */
  flags: number;
  /** Mount id. */
  mntId: number;
}

/** Parses /proc/PID/fdinfo/N. */
export function parseFdInfo(text: string): FdInfo {
  const get = (k: string) => text.match(new RegExp(`^${k}:\\s*(\\S+)`, "m"))?.[1];
  return {
    pos: BigInt(get("pos") ?? "0"),
    flags: parseInt(get("flags") ?? "0", 8),
    mntId: Number(get("mnt_id") ?? "0"),
  };
}

/** Resource names in the order of RLIMIT_* numbers. */
export const RLIMIT_NAMES = [
  "cpu",
  "fsize",
  "data",
  "stack",
  "core",
  "rss",
  "nproc",
  "nofile",
  "memlock",
  "as",
  "locks",
  "sigpending",
  "msgqueue",
  "nice",
  "rtprio",
  "rttime",
] as const;

/** The nice value (field 19) of a /proc/PID/stat text; 0 when it cannot be read. */
export function parseNice(stat: string): number {
  return parseProcStatLine(stat)?.nice ?? 0;
}

/** A limit; -1 is unlimited. */
export interface Rlimit {
  /** RLIMIT_* number. */
  resource: number;
  /** Soft limit (-1 = unlimited). */
  soft: number;
  /** Hard limit (-1 = unlimited). */
  hard: number;
}

/** Parses /proc/PID/limits (rows in RLIMIT order). */
export function parseLimits(text: string): Rlimit[] {
  const rows = text.split("\n").slice(1).filter((l) => l.trim());
  return rows.slice(0, RLIMIT_NAMES.length).map((row, resource) => {
    const cols = row.slice(26).trim().split(/\s+/);
    const v = (s: string) => (s === "unlimited" ? -1 : Number(s));
    return { resource, soft: v(cols[0]), hard: v(cols[1]) };
  });
}
