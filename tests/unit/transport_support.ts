/**
 * Helpers of the transport tests (not a test file itself): a loopback
 * listener with queues of what it accepted and refused, a raw client that
 * speaks frames by hand, a TCP proxy that sees and changes the bytes in
 * transit, and bounded waits. Everything listens on loopback only.
 *
 * @module
 */
import { createHash, randomBytes } from "node:crypto";
import net from "node:net";
import { PpmError } from "../../core/errors.ts";
import { writeAll } from "../../core/host/write_all.ts";
import { deriveKey, macEqual } from "../../core/security/secret.ts";
import {
  clientMac,
  newKeyShare,
  PROTOCOL_VERSION,
  serverMac,
  type SessionKeys,
  sessionKeys,
  sharedSecret,
  type Transcript,
  welcomeMac,
} from "../../core/transport/auth.ts";
import { FrameCipher } from "../../core/transport/cipher.ts";
import {
  type ConnectOptions,
  connectPeer,
  type ListenOptions,
  listenPeers,
  type PeerListener,
  type Refusal,
} from "../../core/transport/conn.ts";
import { withTimeout } from "../../core/transport/deadline.ts";
import { FrameReader, FrameWriter } from "../../core/transport/frame.ts";
import { Inbox } from "../../core/transport/inbox.ts";
import type { PeerConnection } from "../../core/transport/peer.ts";
import { assert } from "../support/assert.ts";

/** The cluster secret of the test servers. */
export const SECRET = new Uint8Array(randomBytes(32));
/** Another cluster's secret. */
export const OTHER_SECRET = new Uint8Array(randomBytes(32));
/** 2^20. */
export const MiB = 1024 * 1024;

/** Bounds a wait: fails the test instead of hanging it. */
export function within<T>(p: Promise<T>, what: string, ms = 15_000): Promise<T> {
  return withTimeout(p, ms, () => new Error(`${what} took more than ${ms} ms`));
}

/** The error `p` rejects with (fails if it resolves). */
export async function failure(p: Promise<unknown>, what: string, ms?: number): Promise<PpmError> {
  let err: unknown;
  try {
    await within(p, what, ms);
  } catch (e) {
    err = e;
  }
  assert(err instanceof PpmError, `${what}: expected a PpmError, got ${err}`);
  return err;
}

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `n` bytes of a cheap pseudo-random pattern. */
export function pattern(n: number, seed = 1): Uint8Array {
  const w = new Uint32Array(Math.ceil(n / 4));
  let x = seed;
  for (let i = 0; i < w.length; i++) w[i] = x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
  return new Uint8Array(w.buffer, 0, n);
}

/** `data` in chunks of varying sizes up to `max`. */
export async function* chunks(
  data: Uint8Array,
  max: number,
  seed = 3,
): AsyncGenerator<Uint8Array> {
  let x = seed;
  for (let off = 0; off < data.length;) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    const n = 1 + x % max;
    yield data.subarray(off, off += n);
  }
}

/** Hex SHA-256 of `b`. */
export function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/** Hashes a stream as it arrives; returns the digest and the byte count. */
export async function hashStream(
  src: AsyncIterable<Uint8Array>,
): Promise<{ hash: string; bytes: number }> {
  const h = createHash("sha256");
  let bytes = 0;
  for await (const c of src) {
    h.update(c);
    bytes += c.length;
  }
  return { hash: h.digest("hex"), bytes };
}

/** A listener on loopback with queues of what it accepted and refused. */
export interface Server {
  /** The listener. */
  listener: PeerListener;
  /** Its port on 127.0.0.1. */
  port: number;
  /** The next authenticated connection. */
  next(): Promise<PeerConnection>;
  /** The next refusal. */
  refusal(): Promise<Refusal>;
  /** A client with this server's defaults. */
  connect(opts?: Partial<ConnectOptions>): Promise<PeerConnection>;
}

/** Every connection made in a test, closed at its end. */
const open = new Set<PeerConnection>();

/** Closes every connection made through {@link withServer}. */
export async function closeAll(): Promise<void> {
  for (const c of open) c.close();
  await within(Promise.all([...open].map((c) => c.closed)), "closing connections");
  open.clear();
}

/** Runs `fn` with a listener on 127.0.0.1; closes it and every connection afterwards. */
export async function withServer(
  opts: Partial<ListenOptions>,
  fn: (s: Server) => Promise<void>,
): Promise<void> {
  const accepted = new Inbox<PeerConnection>({ bytes: Infinity, items: Infinity });
  const refused = new Inbox<Refusal>({ bytes: Infinity, items: Infinity });
  const listener = listenPeers({
    hostname: "127.0.0.1",
    port: 0,
    secret: SECRET,
    node: "server-node",
    onConnection: (c) => (open.add(c), accepted.push(c, 0)),
    onRefused: (r) => refused.push(r, 0),
    ...opts,
  });
  const port = listener.addr.port;
  try {
    await fn({
      listener,
      port,
      next: async () => (await within(accepted.take(), "accepting"))!.value,
      refusal: async () => (await within(refused.take(), "a refusal"))!.value,
      connect: async (o = {}) => {
        const c = await connectPeer({
          host: "127.0.0.1",
          port,
          secret: SECRET,
          node: "client-node",
          ...o,
        });
        open.add(c);
        return c;
      },
    });
  } finally {
    await within(listener.close(), "closing the listener");
    await closeAll();
  }
}

/** A raw TCP connection speaking frames, for playing a bad client. */
export interface RawClient {
  /** The socket. */
  conn: Deno.Conn;
  /** Frames from the server (clear until `reader.encrypt`). */
  reader: FrameReader;
  /** Frames to the server. */
  writer: FrameWriter;
  /** Resolves when the server has closed the connection (EOF or reset). */
  closedByServer(): Promise<void>;
  /** Closes the socket (idempotent). */
  close(): void;
}

/** Connects a {@link RawClient} to 127.0.0.1:`port`. */
export async function rawClient(port: number): Promise<RawClient> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let closed = false;
  return {
    conn,
    reader: new FrameReader(conn, { peer: "server" }),
    writer: new FrameWriter(conn, { peer: "server" }),
    async closedByServer(): Promise<void> {
      const buf = new Uint8Array(65536);
      try {
        while ((await conn.read(buf)) !== null) { /* discard */ }
      } catch { /* reset */ }
    },
    close: () => {
      if (closed) return;
      closed = true;
      try {
        conn.close();
      } catch { /* closed */ }
    },
  };
}

/** A protocol-3 hello with a fresh key share unless `kx` is given. */
export function hello(
  node: string,
  nonce: Uint8Array,
  time = Date.now(),
  kx: Uint8Array = newKeyShare().publicKey,
): Record<string, unknown> {
  return { op: "hello", v: PROTOCOL_VERSION, node, nonce, time, kx };
}

/** A TCP proxy in front of a port, whose tap sees (and may change) every chunk. */
export interface Proxy {
  /** Its port on 127.0.0.1. */
  port: number;
  /** Stops it and closes every connection through it. */
  close(): Promise<void>;
}

/**
 * A TCP proxy between clients and 127.0.0.1:`port` that lets a test see and
 * change the bytes going through it; `offset` counts the bytes of that
 * connection and direction before `chunk`, `index` the connections.
 */
export function proxy(
  port: number,
  tap: (dir: "c2s" | "s2c", chunk: Uint8Array, offset: number, index: number) => void,
): Proxy {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const pumps: Promise<void>[] = [];
  const pump = async (from: Deno.Conn, to: Deno.Conn, dir: "c2s" | "s2c", index: number) => {
    const buf = new Uint8Array(64 * 1024);
    let offset = 0;
    try {
      for (let n; (n = await from.read(buf)) !== null;) {
        const chunk = buf.subarray(0, n);
        tap(dir, chunk, offset, index);
        offset += n;
        await writeAll(to, chunk);
      }
      await to.closeWrite();
    } catch {
      for (const c of [from, to]) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    }
  };
  const accepting = (async () => {
    try {
      for await (const a of l) {
        const b = await Deno.connect({ hostname: "127.0.0.1", port });
        const index = conns.length / 2;
        conns.push(a, b);
        pumps.push(pump(a, b, "c2s", index), pump(b, a, "s2c", index));
      }
    } catch { /* closed */ }
  })();
  return {
    port: l.addr.port,
    async close() {
      l.close();
      await accepting;
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await Promise.all(pumps);
    },
  };
}

/** A plain TCP connection from a chosen loopback address (node:net can bind the source). */
export interface SourcedSocket {
  /** Writes bytes (best effort). */
  write(bytes: Uint8Array): void;
  /** Resolves when the server closed it, or it failed. */
  closed: Promise<void>;
  /** Whether the server has closed it. */
  readonly isClosed: boolean;
  /** Closes it. */
  destroy(): void;
}

/** Connects to 127.0.0.1:`port` from `localAddress` (127.0.0.1, 127.0.0.2, ...). */
export function connectFrom(port: number, localAddress: string): Promise<SourcedSocket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port, localAddress });
    let isClosed = false;
    const closed = new Promise<void>((done) => {
      s.on("close", () => (isClosed = true, done()));
    });
    s.on("error", () => {});
    s.on("data", () => {});
    s.once("connect", () =>
      resolve({
        write: (b) => void s.write(b),
        closed,
        get isClosed() {
          return isClosed;
        },
        destroy: () => s.destroy(),
      }));
    s.once("error", reject);
  });
}

/** Where `needle` first occurs in `hay`, or -1. */
export function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  const first = needle[0];
  for (let i = hay.indexOf(first); i !== -1 && i + needle.length <= hay.length;) {
    let j = 1;
    while (j < needle.length && hay[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
    i = hay.indexOf(first, i + 1);
  }
  return -1;
}

/** The concatenation of `parts`. */
export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) out.set(p, (off += p.length) - p.length);
  return out;
}

/** A client that did the handshake by hand: raw frames, already encrypted. */
export interface HandClient extends RawClient {
  /** The keys of the connection. */
  keys: SessionKeys;
}

/**
 * Speaks the client side of the protocol by hand to 127.0.0.1:`port`, up
 * to and including the welcome; the server's connection is then accepted.
 */
export async function handClient(
  port: number,
  node = "client-node",
  server = "server-node",
): Promise<HandClient> {
  const key = deriveKey(SECRET, "connect");
  const share = newKeyShare();
  const nonceC = new Uint8Array(randomBytes(32)), time = Date.now();
  const raw = await rawClient(port);
  try {
    await raw.writer.control(hello(node, nonceC, time, share.publicKey));
    const ch = (await within(raw.reader.next(), "challenge") as { value: Record<string, unknown> })
      .value;
    const t: Transcript = {
      nonceC,
      nonceS: ch.nonce as Uint8Array,
      keyC: share.publicKey,
      keyS: ch.kx as Uint8Array,
      clientNode: node,
      serverNode: server,
      time,
    };
    assert(macEqual(ch.mac as Uint8Array, serverMac(key, t)), "the server's proof");
    await raw.writer.control({ op: "proof", mac: clientMac(key, t) });
    const keys = sessionKeys(SECRET, sharedSecret(share, t.keyS)!, t);
    await raw.writer.encrypt(new FrameCipher(keys.c2s));
    const welcome = await within(raw.reader.next(), "welcome") as { value: { mac: Uint8Array } };
    assert(macEqual(welcome.value.mac, welcomeMac(keys, t)), "the server's key confirmation");
    raw.reader.encrypt(new FrameCipher(keys.s2c));
    return { ...raw, keys };
  } catch (e) {
    raw.close();
    throw e;
  }
}
