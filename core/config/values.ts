/**
 * The kinds of configuration value, as valibot schemas. Each kind checks a
 * raw value two ways: as written in the configuration file (JSON types) and
 * as text (an environment variable or a command-line flag, where every value
 * is a string; numbers given as numbers pass too). An issue's message says
 * why the value is wrong ("not a port"); the kind's `fix` says what to give
 * instead. The caller adds where the value came from (sources.ts).
 *
 * @module
 */
import * as v from "valibot";

/** A schema that takes any raw value and gives a `T`. */
export type ValueSchema<T> = v.GenericSchema<unknown, T>;

/** How one kind of value is checked, and what to give when it is wrong. */
export interface ValueKind<T> {
  /** The check of a value from the configuration file. */
  file: ValueSchema<T>;
  /** The check of a value given as text (an environment variable or a flag). */
  text: ValueSchema<T>;
  /** What to give instead of a bad value. */
  fix: string;
}

/** A kind checked the same way in the file and as text. */
function anywhere<T>(schema: ValueSchema<T>, fix: string): ValueKind<T> {
  return { file: schema, text: schema, fix };
}

/** Decimal text, as an environment variable or a flag gives a number. */
const DECIMAL = /^\s*[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?\s*$/i;

/** A whole number from `min` to `max`; `what` names it in the message ("a port"). */
export function wholeNumber(what: string, min: number, max: number): ValueKind<number> {
  const why = `not ${what}`;
  const bounded = (n: ValueSchema<number>) =>
    v.pipe(n, v.integer(why), v.minValue(min, why), v.maxValue(max, why));
  const decimal = v.pipe(v.string(), v.regex(DECIMAL, why), v.transform(Number));
  return {
    file: bounded(v.number(why)),
    text: bounded(v.union([v.number(), decimal], why)),
    fix: `give a whole number from ${min} to ${max}`,
  };
}

/** A TCP or UDP port, 1–65535. */
export const port: ValueKind<number> = wholeNumber("a port", 1, 65535);

/** A multicast time-to-live, 1–255 (1 keeps packets on the local network). */
export const ttl: ValueKind<number> = wholeNumber("a TTL", 1, 255);

/** Missed announce intervals before a peer is dropped, 2–1000. */
export const missedIntervals: ValueKind<number> = wholeNumber(
  "a number of missed intervals",
  2,
  1000,
);

/** The four bytes of a dotted-quad IPv4 address, or undefined. */
export function ipv4Bytes(s: string): [number, number, number, number] | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  const b = m.slice(1).map(Number);
  if (b.some((x, i) => x > 255 || (m[i + 1].length > 1 && m[i + 1][0] === "0"))) return undefined;
  return b as [number, number, number, number];
}

/** A string, trimmed; anything else is refused as `why`, asking for a string. */
function trimmed(why: string) {
  return v.pipe(v.string(`${why} (give a string)`), v.trim());
}

/** Whether `s` is an IPv4 multicast address (224.0.0.0–239.255.255.255). */
function isMulticast(s: string): boolean {
  const b = ipv4Bytes(s);
  return b !== undefined && b[0] >= 224 && b[0] <= 239;
}

/** Whether the IPv4 address `s` is one other nodes can reach (not 0.x, multicast or broadcast). */
function isReachable(s: string): boolean {
  const b = ipv4Bytes(s);
  return b === undefined || (b[0] !== 0 && b[0] < 224);
}

/** An IPv4 multicast group address (224.0.0.0–239.255.255.255). */
export const multicastGroup: ValueKind<string> = anywhere(
  v.pipe(
    trimmed("not an IPv4 multicast address"),
    v.check(isMulticast, "not an IPv4 multicast address"),
  ),
  "give an IPv4 multicast address; 239.0.0.0/8 is for local use, e.g. 239.77.0.1",
);

/** A unicast IPv4 address other nodes can reach (not 0.0.0.0, multicast or broadcast). */
export const unicastAddress: ValueKind<string> = anywhere(
  v.pipe(
    trimmed("not an IPv4 address"),
    v.check((s) => ipv4Bytes(s) !== undefined, "not an IPv4 address"),
    v.check(isReachable, "not a unicast address other nodes can reach"),
  ),
  "give this node's IPv4 address on the cluster network, e.g. 10.0.0.5",
);

/** Text that is written like an address (digits and dots), not like an interface name. */
const ADDRESS_LIKE = /^[\d.]+$/;
/** What Linux allows in an interface name. */
const INTERFACE_NAME = /^[^/:\s]{1,15}$/;

/**
 * A network interface: an IPv4 address of this node, or an interface name
 * (1–15 characters, no "/", ":" or blanks, as Linux allows).
 */
export const networkInterface: ValueKind<string> = anywhere(
  v.pipe(
    trimmed("not an interface"),
    v.check((s) => !ADDRESS_LIKE.test(s) || ipv4Bytes(s) !== undefined, "not an IPv4 address"),
    v.check(
      (s) => ADDRESS_LIKE.test(s) || (INTERFACE_NAME.test(s) && s !== "." && s !== ".."),
      "not an interface name (at most 15 characters, no / : or blanks)",
    ),
  ),
  'give an interface name such as "br0", or one of its IPv4 addresses',
);

/** What a node name may be: 1–64 letters, digits, ".", "_" or "-", starting with a letter or digit. */
export const NODE_NAME: RegExp = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A node name (see {@link NODE_NAME}). */
export const nodeName: ValueKind<string> = anywhere(
  v.pipe(trimmed("not a node name"), v.regex(NODE_NAME, "not a node name")),
  'use 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit',
);

/** A file path (any non-empty string without NUL). */
export const filePath: ValueKind<string> = anywhere(
  v.pipe(
    trimmed("not a file path"),
    v.check((s) => s !== "" && !s.includes("\0"), "not a file path"),
  ),
  "give the path of a file, e.g. /etc/ppm/secret",
);

/** Bytes a unix socket path may have (sun_path is 108 bytes with the terminating NUL). */
export const MAX_SOCKET_PATH = 107;

/** An absolute path for a unix socket, at most {@link MAX_SOCKET_PATH} bytes. */
export const socketPath: ValueKind<string> = anywhere(
  v.pipe(
    trimmed("not an absolute path"),
    v.check((s) => s.startsWith("/") && !s.includes("\0"), "not an absolute path"),
    v.maxBytes(
      MAX_SOCKET_PATH,
      `longer than ${MAX_SOCKET_PATH} bytes, the limit of a unix socket path`,
    ),
  ),
  `give an absolute path of at most ${MAX_SOCKET_PATH} bytes, such as /run/ppm/ppm.sock`,
);

/** Shortest accepted announce interval in seconds. */
export const MIN_INTERVAL = 0.05;
/** Longest accepted announce interval in seconds. */
export const MAX_INTERVAL = 3600;

/** A duration as text: a number with a unit ("250ms", "1.5s"), or without one when `unit` is "?". */
function durationText(unit: "" | "?"): ValueSchema<number> {
  const re = new RegExp(`^\\s*(\\d+\\.?\\d*|\\.\\d+)\\s*(ms|s)${unit}\\s*$`);
  return v.pipe(
    v.string(),
    v.regex(re, "not a duration"),
    v.transform((s) => {
      const [, n, u] = re.exec(s)!;
      return Number(n) / (u === "ms" ? 1000 : 1);
    }),
  );
}

/** A duration in seconds within {@link MIN_INTERVAL} and {@link MAX_INTERVAL}; `unit` as above. */
function duration(unit: "" | "?"): ValueSchema<number> {
  return v.pipe(
    v.union([v.number(), durationText(unit)], "not a duration"),
    v.finite("not a duration"),
    v.minValue(MIN_INTERVAL, "out of range"),
    v.maxValue(MAX_INTERVAL, "out of range"),
  );
}

/**
 * A duration in seconds: a number of seconds, or text "250ms", "1.5s" or
 * "2" (seconds; in the file a string needs its unit), from
 * {@link MIN_INTERVAL} to {@link MAX_INTERVAL}.
 */
export const interval: ValueKind<number> = {
  file: duration(""),
  text: duration("?"),
  fix: `give seconds (1, 0.5) or milliseconds ("250ms"), from ${
    MIN_INTERVAL * 1000
  }ms to ${MAX_INTERVAL}s`,
};

/** One of `choices`; `what` names it in the message ("a log level"). */
export function oneOf<T extends string>(what: string, choices: readonly T[]): ValueKind<T> {
  return anywhere(
    v.pipe(trimmed(`not ${what}`), v.picklist(choices, `not ${what}`)),
    `use ${choices.slice(0, -1).join(", ")} or ${choices[choices.length - 1]}`,
  );
}

/** Whether `raw` is a plain object (not null, not an array). */
export function isObject(raw: unknown): raw is Record<string, unknown> {
  return raw !== null && typeof raw === "object" && !Array.isArray(raw);
}

/** A JSON object, passed on as it is (the same object, unchecked inside). */
export const object: ValueKind<Record<string, unknown>> = anywhere(
  v.custom<Record<string, unknown>>(isObject, "not an object"),
  'give an object, e.g. {"busyLoad": 1.2}',
);
