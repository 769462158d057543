/**
 * Mutual challenge-response authentication when a connection opens, under
 * K = deriveKey(secret, "connect"); see docs/transport.md:
 *
 *     client → hello     {op, v: 1, node, nonce: nonceC (32 random bytes), time (ms)}
 *     server → challenge {op, v: 1, node, nonce: nonceS, mac: macS}
 *     client → proof     {op, mac: macC}
 *     server → welcome   {op}
 *
 *     macS = HMAC(K, "server" | nonceC | nonceS | serverNode | clientNode | time)
 *     macC = HMAC(K, "client" | nonceS | nonceC | clientNode | serverNode | time)
 *
 * Either side that refuses sends an ERROR frame with a reason code and
 * closes. Once both proofs check, every frame carries a tag (mac.ts) under
 * per-connection keys derived from both nonces, one key per direction.
 *
 * @module
 */

import { randomBytes } from "node:crypto";
import { NODE_NAME } from "../config/values.ts";
import { EXIT, type ExitCode, PpmError } from "../errors.ts";
import { deriveKey, hmac, macEqual } from "../security/secret.ts";
import { withTimeout } from "./deadline.ts";
import { type Frame, type FrameReader, type FrameWriter, KIND } from "./frame.ts";
import { FrameMac } from "./mac.ts";
import type { NonceCache } from "./nonces.ts";

/**
 * The transport protocol version in hellos. Version 2 tags frames with
 * ChaCha20-Poly1305 instead of HMAC-SHA256 (mac.ts); nodes of different
 * versions refuse each other at the handshake.
 */
export const PROTOCOL_VERSION = 2;

/** Bytes of a handshake nonce. */
export const NONCE_BYTES = 32;

/** Default bound of each handshake step. */
export const DEFAULT_STEP_TIMEOUT_MS = 5_000;

/** Largest bound of a handshake step that is accepted. */
export const MAX_STEP_TIMEOUT_MS = 60_000;

/** Default largest difference between a hello's time and the server's clock. */
export const DEFAULT_MAX_CLOCK_SKEW_MS = 120_000;

/** Why a handshake failed; the server counts refusals by these. */
export type RefusalCode =
  /** A step took longer than its bound. */
  | "timeout"
  /** The peer closed the connection during the handshake. */
  | "closed"
  /** Not a valid handshake message (garbage, wrong protocol). */
  | "malformed"
  /** Another protocol version. */
  | "version"
  /** The hello's time is too far from this node's clock. */
  | "clock-skew"
  /** The hello's nonce was seen before. */
  | "replay"
  /** The peer's proof is wrong: the nodes have different cluster secrets. */
  | "bad-mac"
  /** The server is not the node the client asked for. */
  | "wrong-node"
  /** The peer refused and said why (an ERROR frame). */
  | "peer-refused"
  /** Too many handshakes at once. */
  | "busy";

/** The CLI exit code of each refusal. */
const EXIT_FOR: Record<RefusalCode, ExitCode> = {
  "timeout": EXIT.TIMEOUT,
  "closed": EXIT.FAILURE,
  "malformed": EXIT.FAILURE,
  "version": EXIT.INCOMPATIBLE,
  "clock-skew": EXIT.PERMISSION,
  "replay": EXIT.PERMISSION,
  "bad-mac": EXIT.PERMISSION,
  "wrong-node": EXIT.FAILURE,
  "peer-refused": EXIT.PERMISSION,
  "busy": EXIT.BUSY,
};

/** A failed handshake: a {@link PpmError} with a {@link RefusalCode}. */
export class AuthError extends PpmError {
  /**
   * @param code the reason code; it sets the exit code
   * @param what what failed
   * @param why the cause
   * @param fix what to do
   */
  constructor(readonly code: RefusalCode, what: string, why: string, fix = "") {
    super(what, why, fix, EXIT_FOR[code]);
    this.name = "AuthError";
  }
}

/** Codes of a peer's refusal that are kept as they are; others become "peer-refused". */
const PEER_CODES: RefusalCode[] = [
  "malformed",
  "version",
  "clock-skew",
  "replay",
  "bad-mac",
  "wrong-node",
  "busy",
];

/** The fix for a proof that does not check. */
const FIX_SECRET =
  "every node needs the same cluster secret file (ppm secret generate, then copy it, mode 0600)";

/** The connection a handshake runs on. */
export interface HandshakeIo {
  /** Frames from the peer. */
  reader: FrameReader;
  /** Frames to the peer. */
  writer: FrameWriter;
  /** Closes the connection (on a timeout, so a pending read ends). */
  abort(): void;
  /** The peer's address, for messages: "10.0.0.2:7790". */
  label: string;
}

/** What both sides configure. */
export interface AuthOptions {
  /** The cluster secret (32 bytes; ClusterSecret.key). */
  secret: Uint8Array;
  /** This node's name. */
  node: string;
  /** Bound of each step in ms (default 5 s, at most 60 s). */
  timeoutMs?: number;
  /** Wall clock in ms since the epoch (for tests). */
  clock?: () => number;
}

/** Options of {@link clientHandshake}. */
export interface ClientAuthOptions extends AuthOptions {
  /** Refuse the server unless it is this node. */
  expectNode?: string;
}

/** Options of {@link serverHandshake}. */
export interface ServerAuthOptions extends AuthOptions {
  /** Nonces of recent hellos, shared by all connections of a listener. */
  nonces: NonceCache;
  /** Largest accepted difference between a hello's time and this clock (default 120 s). */
  maxClockSkewMs?: number;
}

/** An authenticated connection's other end. */
export interface AuthResult {
  /** The peer's node name (proven to hold the cluster secret, not to be that node). */
  peer: string;
}

/** The step bound to use; throws a usage error for values that are not positive numbers. */
export function stepTimeout(ms: number | undefined): number {
  if (ms === undefined) return DEFAULT_STEP_TIMEOUT_MS;
  if (!(ms > 0)) {
    throw new PpmError("transport: bad timeout", `${ms} ms is not positive`, "", EXIT.USAGE);
  }
  return Math.min(ms, MAX_STEP_TIMEOUT_MS);
}

/** Throws a usage error unless `node` is a usable node name. */
export function checkNodeName(node: string): void {
  if (!validNodeName(node)) {
    throw new PpmError(
      "transport: bad node name",
      `${JSON.stringify(node)} is not a node name`,
      'use 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit',
      EXIT.USAGE,
    );
  }
}

/** A node name as the configuration allows them (so it is safe in messages and logs). */
function validNodeName(node: unknown): node is string {
  return typeof node === "string" && NODE_NAME.test(node);
}

/** A version field from the peer, safe to show. */
function shown(v: unknown): string {
  return typeof v === "number" ? String(v) : `(a ${typeof v})`;
}

/** A length-prefixed (u16 LE) UTF-8 string, so concatenations are unambiguous. */
function lp(s: string): Uint8Array {
  const b = new TextEncoder().encode(s);
  const out = new Uint8Array(2 + b.length);
  out[0] = b.length & 0xff;
  out[1] = b.length >>> 8;
  out.set(b, 2);
  return out;
}

/** u64 LE of a non-negative safe integer. */
function u64(n: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  return out;
}

/** The server's proof. */
export function serverMac(
  key: Uint8Array,
  nonceC: Uint8Array,
  nonceS: Uint8Array,
  serverNode: string,
  clientNode: string,
  time: number,
): Uint8Array {
  return hmac(key, lp("server"), nonceC, nonceS, lp(serverNode), lp(clientNode), u64(time));
}

/** The client's proof. */
export function clientMac(
  key: Uint8Array,
  nonceC: Uint8Array,
  nonceS: Uint8Array,
  serverNode: string,
  clientNode: string,
  time: number,
): Uint8Array {
  return hmac(key, lp("client"), nonceS, nonceC, lp(clientNode), lp(serverNode), u64(time));
}

/** The per-connection frame keys, client-to-server and server-to-client. */
export function sessionKeys(
  key: Uint8Array,
  nonceC: Uint8Array,
  nonceS: Uint8Array,
  serverNode: string,
  clientNode: string,
): { c2s: Uint8Array; s2c: Uint8Array } {
  const ctx = [nonceC, nonceS, lp(clientNode), lp(serverNode)];
  return { c2s: hmac(key, lp("c2s"), ...ctx), s2c: hmac(key, lp("s2c"), ...ctx) };
}

/** Authenticates the client end of a new connection. */
export async function clientHandshake(
  io: HandshakeIo,
  opts: ClientAuthOptions,
): Promise<AuthResult> {
  const ms = stepTimeout(opts.timeoutMs);
  checkNodeName(opts.node);
  const what = `transport: cannot authenticate with ${io.label}`;
  const key = deriveKey(opts.secret, "connect");
  const nonceC = new Uint8Array(randomBytes(NONCE_BYTES));
  const time = Math.floor((opts.clock ?? Date.now)());
  const hello = { op: "hello", v: PROTOCOL_VERSION, node: opts.node, nonce: nonceC, time };
  await send(io, ms, what, io.writer.control(hello));

  const ch = await expectMessage(io, ms, what, "challenge");
  if (ch.v !== PROTOCOL_VERSION) {
    await refuse(
      io,
      what,
      "version",
      `the server speaks protocol ${shown(ch.v)}, ${opts.node} ${PROTOCOL_VERSION}`,
      "",
    );
  }
  if (!isNonce(ch.nonce) || !validNodeName(ch.node) || !isMac(ch.mac)) {
    await refuse(io, what, "malformed", "the challenge lacks a valid nonce, node or mac");
  }
  const nonceS = ch.nonce as Uint8Array, server = ch.node as string;
  if (!macEqual(ch.mac as Uint8Array, serverMac(key, nonceC, nonceS, server, opts.node, time))) {
    await refuse(
      io,
      what,
      "bad-mac",
      `${server} did not prove that it holds the cluster secret of ${opts.node}: ` +
        "the nodes have different cluster secrets",
      FIX_SECRET,
    );
  }
  if (opts.expectNode !== undefined && server !== opts.expectNode) {
    await refuse(io, what, "wrong-node", `it is node ${server}, not ${opts.expectNode}`, "");
  }
  const macC = clientMac(key, nonceC, nonceS, server, opts.node, time);
  await send(io, ms, what, io.writer.control({ op: "proof", mac: macC }));
  const keys = sessionKeys(key, nonceC, nonceS, server, opts.node);
  await io.writer.authenticate(new FrameMac(keys.c2s));
  await expectMessage(io, ms, what, "welcome");
  io.reader.authenticate(new FrameMac(keys.s2c));
  return { peer: server };
}

/** Authenticates the server end of a new connection. */
export async function serverHandshake(
  io: HandshakeIo,
  opts: ServerAuthOptions,
): Promise<AuthResult> {
  const ms = stepTimeout(opts.timeoutMs);
  checkNodeName(opts.node);
  const what = `transport: refused a connection from ${io.label}`;
  const key = deriveKey(opts.secret, "connect");
  const hello = await expectMessage(io, ms, what, "hello");
  if (hello.v !== PROTOCOL_VERSION) {
    await refuse(
      io,
      what,
      "version",
      `the client speaks protocol ${shown(hello.v)}, ${opts.node} ${PROTOCOL_VERSION}`,
      "",
    );
  }
  const nonceC = hello.nonce, client = hello.node, time = hello.time;
  if (
    !isNonce(nonceC) || !validNodeName(client) || typeof time !== "number" ||
    !Number.isSafeInteger(time) || time < 0
  ) {
    await refuse(io, what, "malformed", "the hello lacks a valid nonce, node or time");
  }
  const t = time as number;
  const skew = t - (opts.clock ?? Date.now)();
  const maxSkew = opts.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS;
  if (Math.abs(skew) > maxSkew) {
    const s = `${Math.round(Math.abs(skew) / 1000)} s ${skew > 0 ? "ahead of" : "behind"}`;
    await refuse(
      io,
      what,
      "clock-skew",
      `the clock of ${client} is ${s} the clock of ${opts.node} (limit ${maxSkew / 1000} s)`,
      "synchronise the nodes' clocks (NTP)",
    );
  }
  if (!opts.nonces.add(nonceC as Uint8Array)) {
    await refuse(io, what, "replay", `the hello from ${client} was seen before (a replay)`, "");
  }
  let done = false;
  try {
    const nonceS = new Uint8Array(randomBytes(NONCE_BYTES));
    const macS = serverMac(key, nonceC as Uint8Array, nonceS, opts.node, client as string, t);
    const challenge = { op: "challenge", v: PROTOCOL_VERSION, node: opts.node, nonce: nonceS };
    await send(io, ms, what, io.writer.control({ ...challenge, mac: macS }));
    const proof = await expectMessage(io, ms, what, "proof");
    const want = clientMac(key, nonceC as Uint8Array, nonceS, opts.node, client as string, t);
    if (!isMac(proof.mac) || !macEqual(proof.mac, want)) {
      await refuse(
        io,
        what,
        "bad-mac",
        `${client} did not prove that it holds the cluster secret of ${opts.node}: ` +
          "the nodes have different cluster secrets",
        FIX_SECRET,
      );
    }
    const keys = sessionKeys(key, nonceC as Uint8Array, nonceS, opts.node, client as string);
    io.reader.authenticate(new FrameMac(keys.c2s));
    await send(io, ms, what, io.writer.control({ op: "welcome" }));
    await io.writer.authenticate(new FrameMac(keys.s2c));
    done = true;
    return { peer: client as string };
  } finally {
    // Only proven hellos stay remembered, so unproven ones cannot fill the cache.
    if (!done) opts.nonces.delete(nonceC as Uint8Array);
  }
}

function isNonce(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array && v.length === NONCE_BYTES;
}

function isMac(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array && v.length === 32;
}

/** Sends an ERROR frame (best effort, briefly) and throws the refusal. */
async function refuse(
  io: HandshakeIo,
  what: string,
  code: RefusalCode,
  why: string,
  fix = "",
): Promise<never> {
  const err = new AuthError(code, what, why, fix);
  try {
    await withTimeout(io.writer.error(code, why), 1_000, () => new Error("timeout"));
  } catch { /* the peer is gone */ }
  throw err;
}

/** Waits for a write of the handshake. */
async function send(io: HandshakeIo, ms: number, what: string, p: Promise<void>): Promise<void> {
  try {
    await withTimeout(p, ms, () => timedOut(io, what, ms, "sending"));
  } catch (e) {
    if (e instanceof AuthError) throw e;
    throw new AuthError("closed", what, (e as PpmError).why ?? String(e));
  }
}

function timedOut(io: HandshakeIo, what: string, ms: number, doing: string): AuthError {
  io.abort();
  return new AuthError(
    "timeout",
    what,
    `no progress ${doing} the handshake within ${ms} ms`,
    "check that the address is a ppm node and the network between the nodes",
  );
}

/** Reads the next handshake message, which must be a CONTROL map with `op`. */
async function expectMessage(
  io: HandshakeIo,
  ms: number,
  what: string,
  op: string,
): Promise<Record<string, unknown>> {
  let f: Frame | null;
  try {
    f = await withTimeout(
      io.reader.next(),
      ms,
      () => timedOut(io, what, ms, `waiting for ${op} in`),
    );
  } catch (e) {
    if (e instanceof AuthError) throw e;
    // A frame that does not parse, or a failed read.
    return await refuse(io, what, "malformed", e instanceof PpmError ? e.why : String(e));
  }
  if (f === null) {
    throw new AuthError(
      "closed",
      what,
      `the peer closed the connection while this node waited for ${op}`,
    );
  }
  if (f.kind === KIND.ERROR) {
    const code = PEER_CODES.includes(f.code as RefusalCode)
      ? f.code as RefusalCode
      : "peer-refused";
    throw new AuthError(
      code,
      what,
      `the peer refused (${f.code}): ${f.message}`,
      f.code === "bad-mac" ? FIX_SECRET : "",
    );
  }
  const v = f.kind === KIND.CONTROL ? f.value as Record<string, unknown> | null : null;
  if (v === null || typeof v !== "object" || v.op !== op) {
    await refuse(io, what, "malformed", `expected ${op}, received another frame or message`);
  }
  return v!;
}
