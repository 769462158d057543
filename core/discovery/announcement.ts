/**
 * The discovery announcement: what a node tells its peers every interval,
 * its msgpack encoding, and the checks every decoded field must pass. The
 * framing and the MAC around it are in wire.ts.
 *
 * @module
 */
import { Decoder, Encoder } from "@msgpack/msgpack";
import type { Announcement as BalanceAnnouncement, LoadSample } from "../balance/types.ts";
import { ipv4Bytes, NODE_NAME } from "../config/values.ts";

/**
 * The load a node announces: the balancing announcement (see
 * core/balance/types.ts, less the id, which the announcement carries) plus
 * the run queue and the kernel's load averages of the sample it came from.
 */
export interface LoadVector extends Omit<BalanceAnnouncement, "id"> {
  /** Runnable tasks when measured ({@link LoadSample.runnable}). */
  runnable: LoadSample["runnable"];
  /** The 1, 5 and 15 minute load averages ({@link LoadSample.loadavg}). */
  loadavg: LoadSample["loadavg"];
  /** CPU pressure "some avg10" in percent; absent without PSI. */
  cpuPressure?: number;
}

/** CPU features: a hash of every flag, and the flags that matter to migrated code. */
export interface CpuFeatures {
  /** First 16 hex digits of SHA-256 over the sorted, space-separated /proc/cpuinfo flags. */
  hash: string;
  /**
   * The user-visible flags (avx2, sse4_2, ...), sorted; see core/restore/compat.ts.
   * At most {@link MAX_CPU_FLAG_BYTES}; the migration offer carries the full list.
   */
  flags: string[];
}

/** What a node announces. Times are milliseconds since the epoch on the sender's clock. */
export interface PeerAnnouncement {
  /** Random id of this agent run: 16 hex digits, new at every start. */
  id: string;
  /** The node's name (configured; default its hostname). */
  name: string;
  /** The node's hostname. */
  hostname: string;
  /** IPv4 addresses peers may use to reach it, best first (at most {@link MAX_ADDRESSES}). */
  addresses: string[];
  /** TCP port for incoming migrations. */
  migrationPort: number;
  /** ppm's version. */
  version: string;
  /** The kernel module ABI version ppm speaks. */
  abi: number;
  /** Kernel release (uname -r). */
  kernel: string;
  /** CPU features. */
  cpu: CpuFeatures;
  /** The node's load. */
  load: LoadVector;
  /** Sequence number: 1 for the first announcement of a run, one more for each next. */
  seq: number;
  /** When it was sent. */
  timestamp: number;
  /** When the agent started. */
  startedAt: number;
  /** Milliseconds between its announcements (peers expire it after a few missed ones). */
  interval: number;
  /** True on the last announcement of a run: the node is shutting down. */
  leaving: boolean;
}

/** Most addresses an announcement carries. */
export const MAX_ADDRESSES = 4;
/** Most CPU flags an announcement carries. */
export const MAX_CPU_FLAGS = 80;
/**
 * Most bytes of CPU flags: the sum of each flag's length plus one. With every
 * other field at its limit, a packet then stays within MAX_PACKET_BYTES
 * (checked by a test); real CPUs need about 350.
 */
export const MAX_CPU_FLAG_BYTES = 480;
/** Longest name, hostname and kernel release. */
export const MAX_NAME = 64;
/** Longest version string. */
export const MAX_VERSION = 32;
/** Shortest and longest announced interval, in milliseconds. */
export const INTERVAL_RANGE_MS = [50, 3_600_000] as const;

const encoder = new Encoder({ useBigInt64: true });
const decoder = new Decoder({
  useBigInt64: true,
  maxStrLength: 256,
  maxBinLength: 0,
  maxArrayLength: MAX_CPU_FLAGS,
  maxMapLength: 32,
  maxExtLength: 0,
});

/** Why a body was refused; thrown by the field checks. */
export class MalformedAnnouncement extends Error {
  /** @param why the first field that failed, e.g. "seq is -1" */
  constructor(why: string) {
    super(why);
    this.name = "MalformedAnnouncement";
  }
}

type Obj = Record<string, unknown>;

function fail(field: string, value: unknown): never {
  const shown = typeof value === "bigint" ? `${value}n` : JSON.stringify(value) ?? String(value);
  throw new MalformedAnnouncement(`${field} is ${shown.slice(0, 40)}`);
}

function obj(v: unknown, field: string): Obj {
  if (v === null || typeof v !== "object" || Array.isArray(v)) fail(field, v);
  return v as Obj;
}

function str(o: Obj, k: string, re: RegExp, field = k): string {
  const v = o[k];
  if (typeof v !== "string" || !re.test(v)) fail(field, v);
  return v;
}

/** A number; 64-bit integers (bigint from the decoder) within the safe range count too. */
function numeric(v: unknown): unknown {
  if (typeof v !== "bigint" || v > BigInt(SAFE) || v < -BigInt(SAFE)) return v;
  return Number(v);
}

function int(o: Obj, k: string, min: number, max: number, field = k): number {
  const v = numeric(o[k]);
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) fail(field, v);
  return v;
}

function real(o: Obj, k: string, field: string): number {
  const v = numeric(o[k]);
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) fail(field, v);
  return v;
}

function bool(o: Obj, k: string, field = k): boolean {
  const v = o[k];
  if (typeof v !== "boolean") fail(field, v);
  return v;
}

const PRINTABLE = (max: number) => new RegExp(`^[\\x21-\\x7e]{1,${max}}$`);
const HOSTNAME = PRINTABLE(MAX_NAME);
const KERNEL = PRINTABLE(MAX_NAME);
const VERSION_RE = PRINTABLE(MAX_VERSION);
const ID = /^[0-9a-f]{16}$/;
const FLAG = /^[a-z0-9_.]{1,24}$/;
const SAFE = Number.MAX_SAFE_INTEGER;

function unicast(v: unknown, field: string): string {
  const b = typeof v === "string" ? ipv4Bytes(v) : undefined;
  if (!b || b[0] === 0 || b[0] >= 224) fail(field, v);
  return v as string;
}

/** The bytes `flags` count against {@link MAX_CPU_FLAG_BYTES}. */
export function flagBytes(flags: readonly string[]): number {
  return flags.reduce((n, f) => n + f.length + 1, 0);
}

/** Checks a decoded load vector and returns a clean copy. */
export function checkLoad(v: unknown): LoadVector {
  const o = obj(v, "load");
  const avg = o.loadavg;
  if (!Array.isArray(avg) || avg.length !== 3) fail("load.loadavg", avg);
  const loadavg = [0, 1, 2].map((i) => real(avg as unknown as Obj, String(i), "load.loadavg"));
  const out: LoadVector = {
    load: real(o, "load", "load.load"),
    cpus: int(o, "cpus", 1, 1 << 20, "load.cpus"),
    speed: real(o, "speed", "load.speed"),
    memTotal: real(o, "memTotal", "load.memTotal"),
    memAvailable: real(o, "memAvailable", "load.memAvailable"),
    drain: bool(o, "drain", "load.drain"),
    at: real(o, "at", "load.at"),
    runnable: real(o, "runnable", "load.runnable"),
    loadavg: loadavg as [number, number, number],
  };
  if (o.cpuPressure !== undefined) out.cpuPressure = real(o, "cpuPressure", "load.cpuPressure");
  return out;
}

/**
 * Checks a decoded announcement and returns a clean copy holding only the
 * known fields (unknown ones, from a newer ppm, are dropped). Throws
 * {@link MalformedAnnouncement} naming the first bad field.
 */
export function checkAnnouncement(v: unknown): PeerAnnouncement {
  const o = obj(v, "the announcement");
  const addrs = o.addresses;
  if (!Array.isArray(addrs) || addrs.length > MAX_ADDRESSES) fail("addresses", addrs);
  const cpu = obj(o.cpu, "cpu");
  const flags = cpu.flags;
  if (!Array.isArray(flags) || flags.length > MAX_CPU_FLAGS) fail("cpu.flags", flags);
  for (const f of flags) if (typeof f !== "string" || !FLAG.test(f)) fail("cpu.flags", f);
  if (flagBytes(flags as string[]) > MAX_CPU_FLAG_BYTES) fail("cpu.flags", `${flags.length} flags`);
  return {
    id: str(o, "id", ID),
    name: str(o, "name", NODE_NAME),
    hostname: str(o, "hostname", HOSTNAME),
    addresses: addrs.map((a) => unicast(a, "addresses")),
    migrationPort: int(o, "migrationPort", 1, 65535),
    version: str(o, "version", VERSION_RE),
    abi: int(o, "abi", 0, 0x7fffffff),
    kernel: str(o, "kernel", KERNEL),
    cpu: { hash: str(cpu, "hash", ID, "cpu.hash"), flags: [...flags] as string[] },
    load: checkLoad(o.load),
    seq: int(o, "seq", 1, SAFE),
    timestamp: int(o, "timestamp", 0, SAFE),
    startedAt: int(o, "startedAt", 0, SAFE),
    interval: int(o, "interval", INTERVAL_RANGE_MS[0], INTERVAL_RANGE_MS[1]),
    leaving: bool(o, "leaving"),
  };
}

/**
 * The msgpack body of `a`. The announcement is checked first, so that a node
 * never sends what its peers would refuse; throws {@link MalformedAnnouncement}.
 */
export function encodeAnnouncement(a: PeerAnnouncement): Uint8Array {
  return encoder.encode(checkAnnouncement(a));
}

/** The announcement in a msgpack body; throws {@link MalformedAnnouncement} for anything else. */
export function decodeAnnouncement(body: Uint8Array): PeerAnnouncement {
  let value: unknown;
  try {
    value = decoder.decode(body);
  } catch (e) {
    throw new MalformedAnnouncement(`not msgpack: ${(e as Error).message}`);
  }
  return checkAnnouncement(value);
}
