/**
 * The discovery announcement: what a node tells its peers every interval,
 * its msgpack encoding, and the checks every decoded field must pass, as one
 * valibot schema (the announcement's type is the schema's). The framing and
 * the MAC around it are in wire.ts.
 *
 * @module
 */
import { Decoder, Encoder } from "@msgpack/msgpack";
import * as v from "valibot";
import type { Announcement as BalanceAnnouncement } from "../balance/types.ts";
import { ipv4Bytes, isObject, NODE_NAME } from "../config/values.ts";

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

/** Why a body was refused; thrown by the checks. */
export class MalformedAnnouncement extends Error {
  /** @param why the first field that failed, e.g. "seq is -1" */
  constructor(why: string) {
    super(why);
    this.name = "MalformedAnnouncement";
  }
}

const SAFE = Number.MAX_SAFE_INTEGER;
const PRINTABLE = (max: number) => new RegExp(`^[\\x21-\\x7e]{1,${max}}$`);
const ID = /^[0-9a-f]{16}$/;
const FLAG = /^[a-z0-9_.]{1,24}$/;

/** A number; 64-bit integers (bigint from the decoder) within the safe range count too. */
function numeric(x: unknown): unknown {
  if (typeof x !== "bigint" || x > BigInt(SAFE) || x < -BigInt(SAFE)) return x;
  return Number(x);
}

/** A decoded number (see {@link numeric}). */
const Num = v.pipe(v.unknown(), v.transform(numeric), v.number());
/** A whole number from `min` to `max`. */
const Int = (min: number, max: number) =>
  v.pipe(Num, v.integer(), v.minValue(min), v.maxValue(max));
/** A finite number, 0 or more. */
const Real = v.pipe(Num, v.finite(), v.minValue(0));
/** A string matching `re`. */
const Text = (re: RegExp) => v.pipe(v.string(), v.regex(re));
/** A unicast IPv4 address (not 0.x, multicast or broadcast). */
const Unicast = v.pipe(
  v.string(),
  v.check((s) => {
    const b = ipv4Bytes(s);
    return b !== undefined && b[0] !== 0 && b[0] < 224;
  }),
);
/** An object (not null, not an array) with `entries`; other keys are dropped. */
const Obj = <E extends v.ObjectEntries>(entries: E) =>
  v.pipe(v.custom<Record<string, unknown>>(isObject), v.object(entries));
/** An array of at most `max` items, each checked by `item` once the array's shape is right. */
const List = <T>(item: v.GenericSchema<unknown, T>, max: number) =>
  v.pipe(v.custom<unknown[]>((a) => Array.isArray(a) && a.length <= max), v.array(item));

/** The bytes `flags` count against {@link MAX_CPU_FLAG_BYTES}. */
export function flagBytes(flags: readonly string[]): number {
  return flags.reduce((n, f) => n + f.length + 1, 0);
}

/** CPU features: a hash of every flag, and the flags that matter to migrated code. */
export const CpuFeaturesSchema = Obj({
  /** First 16 hex digits of SHA-256 over the sorted, space-separated /proc/cpuinfo flags. */
  hash: Text(ID),
  /**
   * The user-visible flags (avx2, sse4_2, ...), sorted; see core/restore/compat.ts.
   * At most {@link MAX_CPU_FLAG_BYTES}; the migration offer carries the full list.
   */
  flags: v.pipe(
    List(Text(FLAG), MAX_CPU_FLAGS),
    v.rawCheck(({ dataset, addIssue }) => {
      // Refused as "N flags": the whole list would not say why.
      const flags = dataset.value as string[];
      if (flagBytes(flags) > MAX_CPU_FLAG_BYTES) addIssue({ input: `${flags.length} flags` });
    }),
  ),
});

/** CPU features: a hash of every flag, and the flags that matter to migrated code. */
export type CpuFeatures = v.InferOutput<typeof CpuFeaturesSchema>;

/**
 * The load a node announces: the balancing announcement (see
 * core/balance/types.ts, less the id, which the announcement carries) plus
 * the run queue and the kernel's load averages of the sample it came from.
 */
export const LoadVectorSchema = v.pipe(
  Obj({
    /** The exported load: normalised, rises at once and decays slowly. */
    load: Real,
    /** Online CPUs. */
    cpus: Int(1, 1 << 20),
    /** Relative CPU speed. */
    speed: Real,
    /** Total memory in bytes. */
    memTotal: Real,
    /** Available memory in bytes, less memory reserved for incoming migrations. */
    memAvailable: Real,
    /** True when the node is draining: it sends work away and accepts none. */
    drain: v.boolean(),
    /** When the node measured what it announces, in seconds. */
    at: Real,
    /** Runnable tasks when measured (LoadSample.runnable). */
    runnable: Real,
    /** The 1, 5 and 15 minute load averages (LoadSample.loadavg). */
    loadavg: v.pipe(
      v.custom<unknown[]>((a) => Array.isArray(a) && a.length === 3),
      v.tuple([Real, Real, Real]),
    ),
    /** CPU pressure "some avg10" in percent; absent without PSI. */
    cpuPressure: v.optional(Real),
  }),
  v.transform((load) => {
    if (load.cpuPressure === undefined) delete load.cpuPressure;
    return load;
  }),
) satisfies v.GenericSchema<unknown, Omit<BalanceAnnouncement, "id">>;

/** The load a node announces (see {@link LoadVectorSchema}). */
export type LoadVector = v.InferOutput<typeof LoadVectorSchema>;

/** What a node announces. Times are milliseconds since the epoch on the sender's clock. */
export const PeerAnnouncementSchema = Obj({
  /** Random id of this agent run: 16 hex digits, new at every start. */
  id: Text(ID),
  /** The node's name (configured; default its hostname). */
  name: Text(NODE_NAME),
  /** The node's hostname. */
  hostname: Text(PRINTABLE(MAX_NAME)),
  /** IPv4 addresses peers may use to reach it, best first (at most {@link MAX_ADDRESSES}). */
  addresses: List(Unicast, MAX_ADDRESSES),
  /** TCP port for incoming migrations. */
  migrationPort: Int(1, 65535),
  /** ppm's version. */
  version: Text(PRINTABLE(MAX_VERSION)),
  /** The kernel module ABI version ppm speaks. */
  abi: Int(0, 0x7fffffff),
  /** Kernel release (uname -r). */
  kernel: Text(PRINTABLE(MAX_NAME)),
  /** CPU features. */
  cpu: CpuFeaturesSchema,
  /** The node's load. */
  load: LoadVectorSchema,
  /** Sequence number: 1 for the first announcement of a run, one more for each next. */
  seq: Int(1, SAFE),
  /** When it was sent. */
  timestamp: Int(0, SAFE),
  /** When the agent started. */
  startedAt: Int(0, SAFE),
  /** Milliseconds between its announcements (peers expire it after a few missed ones). */
  interval: Int(INTERVAL_RANGE_MS[0], INTERVAL_RANGE_MS[1]),
  /** True on the last announcement of a run: the node is shutting down. */
  leaving: v.boolean(),
});

/** What a node announces (see {@link PeerAnnouncementSchema}). */
export type PeerAnnouncement = v.InferOutput<typeof PeerAnnouncementSchema>;

/** How a value is shown in a refusal: JSON (bigints as `5n`), at most 40 characters. */
function shown(value: unknown): string {
  const s = typeof value === "bigint" ? `${value}n` : JSON.stringify(value) ?? String(value);
  return s.slice(0, 40);
}

/** The refusal of an issue: the field (array items count as their array) and the value, e.g. `seq is -1`. */
function refusal(issue: v.BaseIssue<unknown>, root: string[]): MalformedAnnouncement {
  const keys = (issue.path ?? []).map((p) => p.key).filter((k) => typeof k === "string");
  const field = [...root, ...keys].join(".") || "the announcement";
  return new MalformedAnnouncement(`${field} is ${shown(issue.input)}`);
}

/** `value` checked by `schema`; throws {@link MalformedAnnouncement} for the first bad field. */
function checked<T>(schema: v.GenericSchema<unknown, T>, value: unknown, root: string[]): T {
  const r = v.safeParse(schema, value, { abortEarly: true });
  if (!r.success) throw refusal(r.issues[0], root);
  return r.output;
}

/** Checks a decoded load vector and returns a clean copy. */
export function checkLoad(value: unknown): LoadVector {
  return checked(LoadVectorSchema, value, ["load"]);
}

/**
 * Checks a decoded announcement and returns a clean copy holding only the
 * known fields (unknown ones, from a newer ppm, are dropped). Throws
 * {@link MalformedAnnouncement} naming the first bad field.
 */
export function checkAnnouncement(value: unknown): PeerAnnouncement {
  return checked(PeerAnnouncementSchema, value, []);
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
