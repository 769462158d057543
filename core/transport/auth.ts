/**
 * The handshake when a connection opens: mutual challenge-response under
 * K = deriveKey(secret, "connect") around an ephemeral X25519 key exchange,
 * then per-connection encryption keys; see docs/transport.md:
 *
 *     client → hello     {op, v: 3, node, nonce: nonceC, time, kx: pubC}
 *     server → challenge {op, v: 3, node, nonce: nonceS, kx: pubS, mac: macS}
 *     client → proof     {op, mac: macC}
 *     server → welcome   {op, mac: macW}
 *
 *     T    = "ppm transport" | v | nonceC | nonceS | pubC | pubS | clientNode | serverNode | time
 *     macS = HMAC(K, "server" | T),  macC = HMAC(K, "client" | T)
 *     k_x  = HKDF-SHA256(ikm = X25519(priv, peerPub) | deriveKey(secret, "session"),
 *                        salt = nonceC | nonceS, info = x | T)   for x = c2s, s2c, confirm
 *     macW = HMAC(k_confirm, "welcome" | T)
 *
 * Either side that refuses sends an ERROR frame with a reason code and
 * closes. Every frame after the proof (client to server) and after the
 * welcome (server to client) is encrypted (cipher.ts) under k_c2s or k_s2c.
 * A peer of another version, or one that offers no key share, is refused
 * ("version"): there is no fallback to clear text.
 *
 * @module
 */

import {
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  randomBytes,
} from "node:crypto";
import { Buffer } from "node:buffer";
import { NODE_NAME } from "../config/values.ts";
import { EXIT, type ExitCode, PpmError } from "../errors.ts";
import { deriveKey, hmac, macEqual } from "../security/secret.ts";
import { FrameCipher, KEY_BYTES } from "./cipher.ts";
import { withTimeout } from "./deadline.ts";
import { type Frame, type FrameReader, type FrameWriter, KIND } from "./frame.ts";
import type { NonceCache } from "./nonces.ts";

/**
 * The transport protocol version in hellos. Version 3 encrypts every frame
 * after the handshake under keys from an ephemeral X25519 exchange; version 2
 * only tagged frames, version 1 tagged them with HMAC-SHA256. Nodes of
 * different versions refuse each other at the handshake ("version").
 */
export const PROTOCOL_VERSION = 3;

/** Bytes of a handshake nonce. */
export const NONCE_BYTES = 32;

/** Bytes of an X25519 public key (a key share). */
export const KEY_SHARE_BYTES = 32;

/** Default bound of a client's connect, and of its whole handshake. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

/**
 * Default bound of a server's whole handshake, from accepting the connection
 * to the welcome: short, so unauthenticated clients cannot hold a slot long.
 */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 3_000;

/** Largest handshake bound that is accepted. */
export const MAX_HANDSHAKE_TIMEOUT_MS = 60_000;

/** Default largest difference between a hello's time and the server's clock. */
export const DEFAULT_MAX_CLOCK_SKEW_MS = 120_000;

/** Why a handshake failed; the server counts refusals by these. */
export type RefusalCode =
  /** The handshake took longer than its bound. */
  | "timeout"
  /** The peer closed the connection during the handshake. */
  | "closed"
  /** Not a valid handshake message (garbage, wrong protocol, a frame over the limit). */
  | "malformed"
  /** Another protocol version, or no key share: no fallback to clear text. */
  | "version"
  /** The hello's time is too far from this node's clock. */
  | "clock-skew"
  /** The hello's nonce was seen before. */
  | "replay"
  /** A proof is wrong: different cluster secrets, or the handshake was altered. */
  | "bad-mac"
  /** The server is not the node the client asked for. */
  | "wrong-node"
  /** The peer refused and said why (an ERROR frame). */
  | "peer-refused"
  /** Too many handshakes at once: this one was dropped to make room. */
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
  "every node needs the same cluster secret file (ppm secret generate, then copy it, mode 0600); " +
  "if they have it, check the network path for tampering";

/** The fix for another protocol version. */
const FIX_VERSION = "run the same ppm version on every node";

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
  /**
   * Bound of the whole handshake in ms (default 5 s for a client, 3 s for a
   * server; at most 60 s).
   */
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

/**
 * The handshake bound to use: `ms`, or `fallback` when undefined, at most
 * {@link MAX_HANDSHAKE_TIMEOUT_MS}.
 *
 * @throws PpmError (usage) for values that are not positive numbers
 */
export function handshakeTimeout(
  ms: number | undefined,
  fallback = DEFAULT_CONNECT_TIMEOUT_MS,
): number {
  if (ms === undefined) return fallback;
  if (!(ms > 0)) {
    throw new PpmError(
      "transport: bad timeout",
      `${ms} ms is not positive`,
      "give a handshake timeout in milliseconds, above 0",
      EXIT.USAGE,
    );
  }
  return Math.min(ms, MAX_HANDSHAKE_TIMEOUT_MS);
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

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) out.set(p, (off += p.length) - p.length);
  return out;
}

/** An ephemeral X25519 key pair, made for one handshake and then dropped. */
export interface KeyShare {
  /** The raw 32-byte public key, as sent. */
  publicKey: Uint8Array;
  /** The private key (never leaves this process). */
  privateKey: KeyObject;
}

/** A fresh ephemeral X25519 key pair. */
export function newKeyShare(): KeyShare {
  const { publicKey, privateKey } = generateKeyPairSync("x25519");
  const jwk = publicKey.export({ format: "jwk" }) as { x: string };
  return { publicKey: new Uint8Array(Buffer.from(jwk.x, "base64url")), privateKey };
}

/**
 * The X25519 shared secret of `own` and the peer's raw public key, or null
 * when that key is not usable (wrong size, a low-order point that would give
 * an all-zero secret).
 */
export function sharedSecret(own: KeyShare, peerPublic: Uint8Array): Uint8Array | null {
  if (peerPublic.length !== KEY_SHARE_BYTES) return null;
  try {
    const publicKey = createPublicKey({
      key: { kty: "OKP", crv: "X25519", x: Buffer.from(peerPublic).toString("base64url") },
      format: "jwk",
    });
    const shared = new Uint8Array(diffieHellman({ privateKey: own.privateKey, publicKey }));
    return shared.some((b) => b !== 0) ? shared : null;
  } catch {
    return null;
  }
}

/** What both proofs and the keys are bound to. */
export interface Transcript {
  /** The client's nonce (32 bytes). */
  nonceC: Uint8Array;
  /** The server's nonce (32 bytes). */
  nonceS: Uint8Array;
  /** The client's X25519 public key (32 bytes). */
  keyC: Uint8Array;
  /** The server's X25519 public key (32 bytes). */
  keyS: Uint8Array;
  /** The client's node name. */
  clientNode: string;
  /** The server's node name. */
  serverNode: string;
  /** The hello's time, ms since the epoch. */
  time: number;
}

/**
 * The bytes of a transcript: label, protocol version, both nonces, both
 * public keys, both node names and the time. Nonces and keys have fixed
 * sizes and names a length prefix, so different transcripts never give the
 * same bytes.
 */
export function transcriptBytes(t: Transcript): Uint8Array {
  const v = new Uint8Array([PROTOCOL_VERSION & 0xff, PROTOCOL_VERSION >>> 8]);
  return concat(
    lp("ppm transport"),
    v,
    t.nonceC,
    t.nonceS,
    t.keyC,
    t.keyS,
    lp(t.clientNode),
    lp(t.serverNode),
    u64(t.time),
  );
}

/** The server's proof: HMAC(K, "server" | T). */
export function serverMac(key: Uint8Array, t: Transcript): Uint8Array {
  return hmac(key, lp("server"), transcriptBytes(t));
}

/** The client's proof: HMAC(K, "client" | T). */
export function clientMac(key: Uint8Array, t: Transcript): Uint8Array {
  return hmac(key, lp("client"), transcriptBytes(t));
}

/** The keys of one connection. */
export interface SessionKeys {
  /** Encrypts the frames from client to server. */
  c2s: Uint8Array;
  /** Encrypts the frames from server to client. */
  s2c: Uint8Array;
  /** Proves in the welcome that the server derived the same keys. */
  confirm: Uint8Array;
}

/**
 * The per-connection keys: HKDF-SHA256 over the X25519 shared secret and a
 * key derived from the cluster secret, salted with both nonces, bound to the
 * transcript. Without the ephemeral private keys (gone after the handshake)
 * the cluster secret alone cannot give them, and without the secret neither
 * can the exchange.
 */
export function sessionKeys(secret: Uint8Array, shared: Uint8Array, t: Transcript): SessionKeys {
  const ikm = concat(shared, deriveKey(secret, "session"));
  const salt = concat(t.nonceC, t.nonceS);
  const th = transcriptBytes(t);
  const key = (dir: string) =>
    new Uint8Array(hkdfSync("sha256", ikm, salt, concat(lp(dir), th), KEY_BYTES));
  return { c2s: key("c2s"), s2c: key("s2c"), confirm: key("confirm") };
}

/** The server's key confirmation in the welcome: HMAC(k_confirm, "welcome" | T). */
export function welcomeMac(keys: SessionKeys, t: Transcript): Uint8Array {
  return hmac(keys.confirm, lp("welcome"), transcriptBytes(t));
}

/** The end of a handshake's time. */
class Deadline {
  #at: number;
  /** @param ms the whole handshake's bound */
  constructor(readonly ms: number) {
    this.#at = performance.now() + ms;
  }
  /** Milliseconds left (at least 0). */
  get left(): number {
    return Math.max(0, this.#at - performance.now());
  }
}

/** Authenticates the client end of a new connection. */
export async function clientHandshake(
  io: HandshakeIo,
  opts: ClientAuthOptions,
): Promise<AuthResult> {
  const deadline = new Deadline(handshakeTimeout(opts.timeoutMs, DEFAULT_CONNECT_TIMEOUT_MS));
  checkNodeName(opts.node);
  const what = `transport: cannot authenticate with ${io.label}`;
  const key = deriveKey(opts.secret, "connect");
  const share = newKeyShare();
  const nonceC = new Uint8Array(randomBytes(NONCE_BYTES));
  const time = Math.floor((opts.clock ?? Date.now)());
  const hello = {
    op: "hello",
    v: PROTOCOL_VERSION,
    node: opts.node,
    nonce: nonceC,
    time,
    kx: share.publicKey,
  };
  await send(io, deadline, what, io.writer.control(hello));

  const ch = await expectMessage(io, deadline, what, "challenge");
  if (ch.v !== PROTOCOL_VERSION) {
    await refuse(
      io,
      what,
      "version",
      `the server speaks protocol ${shown(ch.v)}, ${opts.node} ${PROTOCOL_VERSION}`,
      FIX_VERSION,
    );
  }
  if (ch.kx === undefined) {
    await refuse(
      io,
      what,
      "version",
      "the server offers no key share (X25519): this node only talks encrypted",
      FIX_VERSION,
    );
  }
  if (!isNonce(ch.nonce) || !validNodeName(ch.node) || !isMac(ch.mac) || !isKeyShare(ch.kx)) {
    await refuse(io, what, "malformed", "the challenge lacks a valid nonce, node, key or mac");
  }
  const server = ch.node as string;
  const t: Transcript = {
    nonceC,
    nonceS: ch.nonce as Uint8Array,
    keyC: share.publicKey,
    keyS: ch.kx as Uint8Array,
    clientNode: opts.node,
    serverNode: server,
    time,
  };
  if (!macEqual(ch.mac as Uint8Array, serverMac(key, t))) {
    await refuse(
      io,
      what,
      "bad-mac",
      `${server} did not prove that it holds the cluster secret of ${opts.node}: ` +
        "the nodes have different cluster secrets, or the handshake was altered in transit",
      FIX_SECRET,
    );
  }
  if (opts.expectNode !== undefined && server !== opts.expectNode) {
    await refuse(io, what, "wrong-node", `it is node ${server}, not ${opts.expectNode}`, "");
  }
  const shared = sharedSecret(share, t.keyS);
  if (!shared) {
    await refuse(io, what, "malformed", "the server's key share is not a usable X25519 key");
  }
  const keys = sessionKeys(opts.secret, shared!, t);
  const proof = io.writer.control({ op: "proof", mac: clientMac(key, t) });
  const encrypting = io.writer.encrypt(new FrameCipher(keys.c2s)); // right after the proof
  await send(io, deadline, what, proof);
  await encrypting;
  const welcome = await expectMessage(io, deadline, what, "welcome");
  if (!isMac(welcome.mac) || !macEqual(welcome.mac, welcomeMac(keys, t))) {
    await refuse(
      io,
      what,
      "bad-mac",
      `${server} did not confirm the keys of this connection: the handshake was altered in transit`,
      "check the network path for tampering",
    );
  }
  io.reader.encrypt(new FrameCipher(keys.s2c));
  return { peer: server };
}

/** Authenticates the server end of a new connection. */
export async function serverHandshake(
  io: HandshakeIo,
  opts: ServerAuthOptions,
): Promise<AuthResult> {
  const deadline = new Deadline(handshakeTimeout(opts.timeoutMs, DEFAULT_HANDSHAKE_TIMEOUT_MS));
  checkNodeName(opts.node);
  const what = `transport: refused a connection from ${io.label}`;
  const key = deriveKey(opts.secret, "connect");
  const hello = await expectMessage(io, deadline, what, "hello");
  if (hello.v !== PROTOCOL_VERSION) {
    await refuse(
      io,
      what,
      "version",
      `the client speaks protocol ${shown(hello.v)}, ${opts.node} ${PROTOCOL_VERSION}`,
      FIX_VERSION,
    );
  }
  if (hello.kx === undefined) {
    await refuse(
      io,
      what,
      "version",
      "the client offers no key share (X25519): this node only talks encrypted",
      FIX_VERSION,
    );
  }
  const nonceC = hello.nonce, client = hello.node, time = hello.time;
  if (
    !isNonce(nonceC) || !validNodeName(client) || typeof time !== "number" ||
    !Number.isSafeInteger(time) || time < 0 || !isKeyShare(hello.kx)
  ) {
    await refuse(io, what, "malformed", "the hello lacks a valid nonce, node, time or key");
  }
  const t0 = time as number;
  const skew = t0 - (opts.clock ?? Date.now)();
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
    const share = newKeyShare();
    const shared = sharedSecret(share, hello.kx as Uint8Array);
    if (!shared) {
      await refuse(io, what, "malformed", "the hello's key share is not a usable X25519 key");
    }
    const t: Transcript = {
      nonceC: nonceC as Uint8Array,
      nonceS: new Uint8Array(randomBytes(NONCE_BYTES)),
      keyC: hello.kx as Uint8Array,
      keyS: share.publicKey,
      clientNode: client as string,
      serverNode: opts.node,
      time: t0,
    };
    const challenge = {
      op: "challenge",
      v: PROTOCOL_VERSION,
      node: opts.node,
      nonce: t.nonceS,
      kx: t.keyS,
      mac: serverMac(key, t),
    };
    await send(io, deadline, what, io.writer.control(challenge));
    const proof = await expectMessage(io, deadline, what, "proof");
    const keys = sessionKeys(opts.secret, shared!, t);
    io.reader.encrypt(new FrameCipher(keys.c2s)); // the client encrypts after its proof
    if (!isMac(proof.mac) || !macEqual(proof.mac, clientMac(key, t))) {
      await refuse(
        io,
        what,
        "bad-mac",
        `${client} did not prove that it holds the cluster secret of ${opts.node}: ` +
          "the nodes have different cluster secrets, or the handshake was altered in transit",
        FIX_SECRET,
      );
    }
    // Frames after the welcome are encrypted, even one queued while it is written.
    const welcome = io.writer.control({ op: "welcome", mac: welcomeMac(keys, t) });
    const encrypting = io.writer.encrypt(new FrameCipher(keys.s2c));
    await send(io, deadline, what, welcome);
    await encrypting;
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

function isKeyShare(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array && v.length === KEY_SHARE_BYTES;
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
async function send(io: HandshakeIo, d: Deadline, what: string, p: Promise<void>): Promise<void> {
  try {
    await withTimeout(p, d.left, () => timedOut(io, what, d, "sending"));
  } catch (e) {
    if (e instanceof AuthError) throw e;
    throw new AuthError("closed", what, (e as PpmError).why ?? String(e));
  }
}

function timedOut(io: HandshakeIo, what: string, d: Deadline, doing: string): AuthError {
  io.abort();
  return new AuthError(
    "timeout",
    what,
    `the handshake did not finish within ${d.ms} ms (this node was ${doing})`,
    "check that the address is a ppm node and the network between the nodes",
  );
}

/** Reads the next handshake message, which must be a CONTROL map with `op`. */
async function expectMessage(
  io: HandshakeIo,
  d: Deadline,
  what: string,
  op: string,
): Promise<Record<string, unknown>> {
  let f: Frame | null;
  try {
    f = await withTimeout(
      io.reader.next(),
      d.left,
      () => timedOut(io, what, d, `waiting for ${op}`),
    );
  } catch (e) {
    if (e instanceof AuthError) throw e;
    // A frame that does not parse, is over the limit, or a failed read.
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
      f.code === "bad-mac" ? FIX_SECRET : f.code === "version" ? FIX_VERSION : "",
    );
  }
  const v = f.kind === KIND.CONTROL ? f.value as Record<string, unknown> | null : null;
  if (v === null || typeof v !== "object" || v.op !== op) {
    await refuse(io, what, "malformed", `expected ${op}, received another frame or message`);
  }
  return v!;
}
