/**
 * Checking values that come from outside (another node's messages): valibot
 * building blocks with their bounds (integers, strings, lists, absolute
 * paths, PIDs), a walk that refuses anything but plain data, and the first
 * issue of a failed check as one line naming where it is
 * (`restored.pid: expected an integer, got 1.5`).
 *
 * @module
 */
import * as v from "valibot";

/** The kernel's largest PID (PID_MAX_LIMIT). */
export const PID_MAX = 4_194_304;

/** An integer in `min..max` (a number: NaN, infinities and fractions are refused). */
export function int(min: number, max: number) {
  return v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max));
}

/** A PID: 1 to {@link PID_MAX}. */
export const Pid = int(1, PID_MAX);

/** A string of at most `max` characters. */
export function text(max: number) {
  return v.pipe(v.string(), v.maxLength(max));
}

/** Why something failed, as another node says it: at most 64 Ki characters. */
export const Reason = text(65536);

/** A list of at most `max` items, its length checked before any item. */
export function list<T extends v.GenericSchema>(item: T, max: number) {
  return v.pipe(
    v.custom<unknown[]>(
      (x) => Array.isArray(x) && x.length <= max,
      `expected a list of at most ${max} items`,
    ),
    v.array(item),
  );
}

/** `schema`, or absent: null (what msgpack makes of undefined) reads as absent. */
export function opt<T extends v.GenericSchema>(schema: T) {
  return v.pipe(v.nullish(schema), v.transform((x) => x ?? undefined));
}

/** True for an absolute path of 1..4095 bytes of UTF-8 without NUL (a name is data, never syntax). */
export function isAbsPath(s: string): boolean {
  return s.startsWith("/") && !s.includes("\0") && new TextEncoder().encode(s).length <= 4095;
}

/** An absolute path (see {@link isAbsPath}). */
export const AbsPath = v.pipe(
  v.string(),
  v.maxLength(4095),
  v.check(isAbsPath, "expected an absolute path of at most 4095 bytes without NUL"),
);

/** How deep plain data may nest. */
const MAX_DEPTH = 32;

/** Where something is that is not plain data, and what. */
interface Foreign {
  /** Its path (`""`: the value itself). */
  at: string;
  /** What it is. */
  what: string;
}

/**
 * Where `x` holds something other than plain data (an object with another
 * prototype, an own `__proto__` key, nesting deeper than 32), or undefined
 * when it is plain data throughout. Each object is looked at once.
 */
export function foreignPart(x: unknown): Foreign | undefined {
  const seen = new Set<object>();
  const walk = (y: unknown, at: string, depth: number): Foreign | undefined => {
    if (typeof y !== "object" || y === null || y instanceof Uint8Array || seen.has(y)) {
      return undefined;
    }
    seen.add(y);
    if (depth >= MAX_DEPTH) return { at, what: `nested deeper than ${MAX_DEPTH}` };
    const proto = Object.getPrototypeOf(y);
    const isArray = Array.isArray(y);
    if (isArray ? proto !== Array.prototype : proto !== Object.prototype && proto !== null) {
      return { at, what: "expected plain data, got an object of another kind" };
    }
    if (Object.hasOwn(y, "__proto__")) return { at, what: "expected no key __proto__" };
    const keys = isArray ? y.keys() : Object.keys(y);
    const rec = y as Record<string | number, unknown>;
    for (const k of keys) {
      const inner = walk(rec[k], at ? `${at}.${k}` : String(k), depth + 1);
      if (inner) return inner;
    }
    return undefined;
  };
  return walk(x, "", 0);
}

/** The `op` that `raw` says it is, when it is one of `known` (a hostile op is never echoed). */
export function claimedOp<T extends string>(raw: unknown, known: readonly T[]): T | undefined {
  const op = typeof raw === "object" && raw !== null ? (raw as { op?: unknown }).op : undefined;
  return known.find((k) => k === op);
}

/** How much of a received value an error shows. */
const SHOWN = 60;

const WORDS: Record<string, string> = {
  min_value: "a value",
  max_value: "a value",
  min_length: "a length",
  max_length: "a length",
  integer: "an integer",
};

/** What `issue` says, without where: `expected X, got Y`. */
function issueText(issue: v.BaseIssue<unknown>): string {
  const got = issue.received.length > SHOWN
    ? `${issue.received.slice(0, SHOWN)}...`
    : issue.received;
  if (issue.message.startsWith("expected ")) return `${issue.message}, got ${got}`;
  const isKey = issue.kind === "schema" && issue.message.startsWith("Invalid key");
  if (isKey) return "missing";
  const word = WORDS[issue.type];
  if (word) return `expected ${word}${issue.expected ? ` ${issue.expected}` : ""}, got ${got}`;
  return `expected ${issue.expected ?? issue.type}, got ${got}`;
}

/** The issue as one line under `root`: `root.path: expected X, got Y`. */
export function describeIssue(issue: v.BaseIssue<unknown>, root: string): string {
  const path = v.getDotPath(issue);
  return `${path ? `${root}.${path}` : root}: ${issueText(issue)}`;
}

/**
 * `raw` checked against `schema`: the value it gives, or why not as one line
 * naming where, under `root` (the first issue only). Beyond the schema, `raw`
 * must be plain data throughout (see {@link foreignPart}).
 */
export function checkUntrusted<T extends v.GenericSchema>(
  schema: T,
  raw: unknown,
  root: string,
): { ok: true; value: v.InferOutput<T> } | { ok: false; why: string } {
  const r = v.safeParse(schema, raw, { abortEarly: true });
  if (!r.success) return { ok: false, why: describeIssue(r.issues[0], root) };
  // The schema read what it knows; nothing else may be there but plain data.
  const foreign = foreignPart(raw);
  if (foreign) {
    return { ok: false, why: `${foreign.at ? `${root}.${foreign.at}` : root}: ${foreign.what}` };
  }
  return { ok: true, value: r.output };
}
