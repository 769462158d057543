/**
 * Parsers for single configuration values. Each takes the raw value and
 * whether it came as text (an environment variable or a command-line flag,
 * where every value is a string) and returns the typed value, or throws an
 * {@link InvalidValue} saying why it is wrong and what to give instead. The
 * caller adds where the value came from.
 *
 * @module
 */

/** A value that is not acceptable; the resolver turns it into a PpmError naming its source. */
export class InvalidValue extends Error {
  /**
   * @param why what is wrong, e.g. "not a port"
   * @param fix what to give instead
   */
  constructor(readonly why: string, readonly fix: string) {
    super(why);
    this.name = "InvalidValue";
  }
}

/** A parser of one setting's raw value; `text` is true for env and flag values. */
export type ValueParser<T> = (raw: unknown, text: boolean) => T;

/** A number given as a JSON number, or as decimal text when `text`; NaN when neither. */
function toNumber(raw: unknown, text: boolean): number {
  if (typeof raw === "number") return raw;
  if (text && typeof raw === "string" && /^\s*[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?\s*$/i.test(raw)) {
    return Number(raw);
  }
  return NaN;
}

/** A whole number from `min` to `max`; `what` names it in the error ("a port"). */
export function wholeNumber(what: string, min: number, max: number): ValueParser<number> {
  return (raw, text) => {
    const n = toNumber(raw, text);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new InvalidValue(`not ${what}`, `give a whole number from ${min} to ${max}`);
    }
    return n;
  };
}

/** A TCP or UDP port, 1–65535. */
export const port: ValueParser<number> = wholeNumber("a port", 1, 65535);

/** A multicast time-to-live, 1–255 (1 keeps packets on the local network). */
export const ttl: ValueParser<number> = wholeNumber("a TTL", 1, 255);

/** Missed announce intervals before a peer is dropped, 2–1000. */
export const missedIntervals: ValueParser<number> = wholeNumber(
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

function text(raw: unknown, why: string, fix: string): string {
  if (typeof raw !== "string") throw new InvalidValue(`${why} (give a string)`, fix);
  return raw.trim();
}

/** An IPv4 multicast group address (224.0.0.0–239.255.255.255). */
export const multicastGroup: ValueParser<string> = (raw) => {
  const fix = "give an IPv4 multicast address; 239.0.0.0/8 is for local use, e.g. 239.77.0.1";
  const s = text(raw, "not an IPv4 multicast address", fix);
  const b = ipv4Bytes(s);
  if (!b || b[0] < 224 || b[0] > 239) throw new InvalidValue("not an IPv4 multicast address", fix);
  return s;
};

/** A unicast IPv4 address other nodes can reach (not 0.0.0.0, multicast or broadcast). */
export const unicastAddress: ValueParser<string> = (raw) => {
  const fix = "give this node's IPv4 address on the cluster network, e.g. 10.0.0.5";
  const s = text(raw, "not an IPv4 address", fix);
  const b = ipv4Bytes(s);
  if (!b) throw new InvalidValue("not an IPv4 address", fix);
  if (b[0] === 0 || b[0] >= 224) {
    throw new InvalidValue("not a unicast address other nodes can reach", fix);
  }
  return s;
};

/**
 * A network interface: an IPv4 address of this node, or an interface name
 * (1–15 characters, no "/", ":" or blanks, as Linux allows).
 */
export const networkInterface: ValueParser<string> = (raw) => {
  const fix = 'give an interface name such as "br0", or one of its IPv4 addresses';
  const s = text(raw, "not an interface", fix);
  if (/^[\d.]+$/.test(s)) {
    if (!ipv4Bytes(s)) throw new InvalidValue("not an IPv4 address", fix);
    return s;
  }
  if (!/^[^/:\s]{1,15}$/.test(s) || s === "." || s === "..") {
    throw new InvalidValue("not an interface name (at most 15 characters, no / : or blanks)", fix);
  }
  return s;
};

/** What a node name may be: 1–64 letters, digits, ".", "_" or "-", starting with a letter or digit. */
export const NODE_NAME: RegExp = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A node name (see {@link NODE_NAME}). */
export const nodeName: ValueParser<string> = (raw) => {
  const fix = 'use 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit';
  const s = text(raw, "not a node name", fix);
  if (!NODE_NAME.test(s)) throw new InvalidValue("not a node name", fix);
  return s;
};

/** A file path (any non-empty string without NUL). */
export const filePath: ValueParser<string> = (raw) => {
  const fix = "give the path of a file, e.g. /etc/ppm/secret";
  const s = text(raw, "not a file path", fix);
  if (s === "" || s.includes("\0")) throw new InvalidValue("not a file path", fix);
  return s;
};

/** Bytes a unix socket path may have (sun_path is 108 bytes with the terminating NUL). */
export const MAX_SOCKET_PATH = 107;

/** An absolute path for a unix socket, at most {@link MAX_SOCKET_PATH} bytes. */
export const socketPath: ValueParser<string> = (raw) => {
  const fix = "give an absolute path such as /run/ppm/ppm.sock";
  const s = text(raw, "not an absolute path", fix);
  if (!s.startsWith("/") || s.includes("\0")) throw new InvalidValue("not an absolute path", fix);
  if (new TextEncoder().encode(s).length > MAX_SOCKET_PATH) {
    throw new InvalidValue(
      `longer than ${MAX_SOCKET_PATH} bytes, the limit of a unix socket path`,
      "choose a shorter path",
    );
  }
  return s;
};

/** Shortest accepted announce interval in seconds. */
export const MIN_INTERVAL = 0.05;
/** Longest accepted announce interval in seconds. */
export const MAX_INTERVAL = 3600;

/**
 * A duration in seconds: a number of seconds, or text "250ms", "1.5s" or
 * "2" (seconds), from {@link MIN_INTERVAL} to {@link MAX_INTERVAL}.
 */
export const interval: ValueParser<number> = (raw, isText) => {
  const fix = `give seconds (1, 0.5) or milliseconds ("250ms"), from ${
    MIN_INTERVAL * 1000
  }ms to ${MAX_INTERVAL}s`;
  let n = NaN;
  if (typeof raw === "number") n = raw;
  else if (typeof raw === "string") {
    const m = /^\s*(\d+\.?\d*|\.\d+)\s*(ms|s)?\s*$/.exec(raw);
    if (m && (isText || m[2])) n = Number(m[1]) / (m[2] === "ms" ? 1000 : 1);
  }
  if (!Number.isFinite(n)) throw new InvalidValue("not a duration", fix);
  if (n < MIN_INTERVAL || n > MAX_INTERVAL) throw new InvalidValue("out of range", fix);
  return n;
};

/** One of `choices`. */
export function oneOf<T extends string>(what: string, choices: readonly T[]): ValueParser<T> {
  return (raw) => {
    const fix = `use ${choices.slice(0, -1).join(", ")} or ${choices[choices.length - 1]}`;
    const s = text(raw, `not ${what}`, fix);
    if (!(choices as readonly string[]).includes(s)) throw new InvalidValue(`not ${what}`, fix);
    return s as T;
  };
}

/** A JSON object, passed on as it is. */
export const object: ValueParser<Record<string, unknown>> = (raw) => {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new InvalidValue("not an object", 'give an object, e.g. {"busyLoad": 1.2}');
  }
  return raw as Record<string, unknown>;
};
