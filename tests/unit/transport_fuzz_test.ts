/**
 * Fuzzing the transport: random and mutated frames (truncated headers, huge
 * lengths, bad kinds, random msgpack, mutated hellos and proofs) sent to a
 * listener before authentication, and random or mutated frames after it
 * (garbage on the socket, well-encrypted frames with hostile contents). Every
 * connection must end cleanly (a counted refusal, or a closed connection),
 * with no unhandled rejection, no read buffer over the pre-authentication
 * bound, and the listener must serve a real client afterwards.
 *
 * Bounded for the normal suite (a few seconds); set PPM_FUZZ_ITERATIONS for a
 * long campaign, e.g. `PPM_FUZZ_ITERATIONS=20000 deno test -A tests/unit/transport_fuzz_test.ts`,
 * and PPM_FUZZ_SEED to replay one.
 */
import { Encoder } from "@msgpack/msgpack";
import { PpmError } from "../../core/errors.ts";
import type { RefusalCode } from "../../core/transport/auth.ts";
import { FrameCipher, TAG_BYTES } from "../../core/transport/cipher.ts";
import {
  FrameReader,
  KIND,
  MAX_CONTROL_PAYLOAD,
  PRE_AUTH_MAX_PAYLOAD,
} from "../../core/transport/frame.ts";
import type { PeerConnection } from "../../core/transport/peer.ts";
import { assert, assertEquals } from "../support/assert.ts";
import {
  concat,
  handClient,
  hashStream,
  hello,
  MiB,
  pattern,
  rawClient,
  sha256,
  sleep,
  within,
  withServer,
} from "./transport_support.ts";

/** Cases per phase (before and after authentication). */
const ITERATIONS = Number(Deno.env.get("PPM_FUZZ_ITERATIONS") ?? "150");
if (!Number.isSafeInteger(ITERATIONS) || ITERATIONS < 1) {
  throw new Error(`PPM_FUZZ_ITERATIONS must be a positive integer, not ${ITERATIONS}`);
}
/** The seed of the generator. */
const SEED = Number(Deno.env.get("PPM_FUZZ_SEED") ?? `${Date.now() % 1_000_000}`);

/** A deterministic xorshift generator. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x100000000;
  };
}

/** Random inputs for the frame layer. */
class Gen {
  constructor(readonly r: () => number) {}
  int(n: number): number {
    return Math.floor(this.r() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  header(kind: number, length: number): Uint8Array {
    const h = new Uint8Array(5);
    h[0] = kind;
    new DataView(h.buffer).setUint32(1, length >>> 0, true);
    return h;
  }
  /** A random msgpack value, hellos and proofs among them. */
  value(depth = 0): unknown {
    const leaves = [
      () => this.int(1 << 30),
      () => -this.int(1000),
      () => BigInt(this.int(1 << 30)) << 30n,
      () => this.r(),
      () => "x".repeat(this.int(50)),
      () => this.bytes(this.pick([0, 1, 31, 32, 33, 64])),
      () => null,
      () => this.r() < 0.5,
    ];
    if (depth > 3 || this.r() < 0.4) return this.pick(leaves)();
    if (this.r() < 0.3) return Array.from({ length: this.int(5) }, () => this.value(depth + 1));
    const m: Record<string, unknown> = {};
    for (let i = this.int(7); i > 0; i--) {
      m[this.pick(["op", "v", "node", "nonce", "time", "kx", "mac", "code", "message", "z"])] = this
        .value(depth + 1);
    }
    if (this.r() < 0.5) m.op = this.pick(["hello", "proof", "challenge", "welcome", "offer"]);
    return m;
  }
  /** The bytes of one hostile frame, or several. */
  frames(): Uint8Array {
    const enc = new Encoder({ useBigInt64: true });
    const kinds = [0, KIND.CONTROL, KIND.DATA, KIND.END_DATA, KIND.ERROR, 5, 255];
    switch (this.int(9)) {
      case 0: // a truncated header
        return this.bytes(1 + this.int(4));
      case 1: // a huge length
        return concat([
          this.header(this.pick(kinds), this.pick([PRE_AUTH_MAX_PAYLOAD + 1, 1 << 20, 0xffffffff])),
          this.bytes(this.int(100)),
        ]);
      case 2: // a bad kind
        return concat([this.header(this.pick([0, 5, 6, 127, 255]), this.int(100)), this.bytes(50)]);
      case 3: { // random msgpack in a frame of any kind
        const p = enc.encode(this.value());
        return concat([this.header(this.pick(kinds), p.length), p]);
      }
      case 4: { // a hello with one field changed, or mutated bytes
        const h = hello("fuzz-node", this.bytes(32));
        if (this.r() < 0.5) h[this.pick(Object.keys(h))] = this.value(2);
        const p = enc.encode(h);
        if (this.r() < 0.5) p[this.int(p.length)] ^= 1 << this.int(8);
        return concat([this.header(KIND.CONTROL, p.length), p]);
      }
      case 5: { // a length that does not match the payload
        const p = enc.encode(this.value());
        return concat([this.header(KIND.CONTROL, Math.max(0, p.length + this.int(20) - 10)), p]);
      }
      case 6: // plain garbage
        return this.bytes(1 + this.int(600));
      case 7: { // several frames back to back
        const parts = [];
        for (let i = 1 + this.int(4); i > 0; i--) {
          const p = enc.encode(this.value());
          parts.push(this.header(KIND.CONTROL, p.length), p);
        }
        return concat(parts);
      }
      default: { // a valid hello, then a bogus proof
        const a = enc.encode(hello("fuzz-node", this.bytes(32)));
        const b = enc.encode({ op: "proof", mac: this.bytes(this.pick([31, 32])) });
        return concat([
          this.header(KIND.CONTROL, a.length),
          a,
          this.header(KIND.CONTROL, b.length),
          b,
        ]);
      }
    }
  }
}

/** Serves `bytes` in small chunks; records the largest buffer it was asked to fill. */
class Probe {
  #pos = 0;
  largest = 0;
  constructor(readonly bytes: Uint8Array) {}
  read(p: Uint8Array): Promise<number | null> {
    this.largest = Math.max(this.largest, p.buffer.byteLength);
    if (this.#pos >= this.bytes.length) return Promise.resolve(null);
    const n = Math.min(p.length, 97, this.bytes.length - this.#pos);
    p.set(this.bytes.subarray(this.#pos, this.#pos + n));
    this.#pos += n;
    return Promise.resolve(n);
  }
}

/** Counts unhandled rejections while `fn` runs. */
async function noUnhandled(fn: () => Promise<void>): Promise<void> {
  const seen: unknown[] = [];
  const on = (e: PromiseRejectionEvent) => {
    seen.push(e.reason);
    e.preventDefault();
  };
  globalThis.addEventListener("unhandledrejection", on);
  try {
    await fn();
    await sleep(50);
  } finally {
    globalThis.removeEventListener("unhandledrejection", on);
  }
  assertEquals(seen, [], "unhandled rejections");
}

const CODES: RefusalCode[] = [
  "timeout",
  "closed",
  "malformed",
  "version",
  "clock-skew",
  "replay",
  "bad-mac",
  "busy",
];

Deno.test(`fuzz: hostile frames before authentication are refused cleanly (${ITERATIONS} cases)`, async () => {
  console.log(`PPM_FUZZ_SEED=${SEED} PPM_FUZZ_ITERATIONS=${ITERATIONS}`);
  const g = new Gen(rng(SEED));
  await noUnhandled(() =>
    withServer({ handshakeTimeoutMs: 300, maxPendingPerSource: 64 }, async (s) => {
      const inputs = Array.from({ length: ITERATIONS }, () => g.frames());
      // The frame layer the listener uses: never a buffer over the bound, only PpmErrors.
      for (const [i, bytes] of inputs.entries()) {
        const probe = new Probe(bytes);
        const fr = new FrameReader(probe);
        try {
          while (await fr.next()) { /* frames that parse */ }
        } catch (e) {
          assert(e instanceof PpmError, `case ${i}: ${e}`);
        }
        assert(probe.largest <= 8192, `case ${i}: read into ${probe.largest} bytes`);
      }
      // The listener, 16 connections at a time; half of them close their side after writing.
      for (let i = 0; i < inputs.length; i += 16) {
        await within(
          Promise.all(
            inputs.slice(i, i + 16).map(async (bytes, k) => {
              const c = await rawClient(s.port);
              try {
                await c.conn.write(bytes).catch(() => {});
                if ((i + k) % 2) await c.conn.closeWrite().catch(() => {});
                await within(c.closedByServer(), `case ${i + k}`, 5_000);
              } finally {
                c.close();
              }
            }),
          ),
          "a batch of hostile clients",
          20_000,
        );
      }
      for (let i = 0; i < 100 && count(s.listener.refused) < inputs.length; i++) await sleep(20);
      const refused = s.listener.refused as Record<string, number>;
      assertEquals(count(refused), inputs.length, JSON.stringify(refused));
      for (const code of Object.keys(refused)) assert(CODES.includes(code as RefusalCode), code);
      assertEquals(s.listener.accepted, 0);
      assertEquals(s.listener.pending, 0);
      console.log(`refusals: ${JSON.stringify(refused)}`);
      await realClient(s);
    })
  );
});

Deno.test(`fuzz: hostile frames after authentication end the connection cleanly (${ITERATIONS} cases)`, async () => {
  const g = new Gen(rng(SEED + 1));
  const enc = new Encoder({ useBigInt64: true });
  await noUnhandled(() =>
    withServer({ maxPendingPerSource: 64 }, async (s) => {
      for (let i = 0; i < ITERATIONS; i++) {
        const c = await handClient(s.port);
        const server = await s.next();
        const draining = drain(server);
        try {
          const how = g.int(5);
          if (how === 0) {
            // Raw garbage: it cannot carry a good tag.
            await c.conn.write(g.frames()).catch(() => {});
          } else if (how === 1) {
            // A well-formed header with a huge or bad length or kind, then random bytes.
            const kind = g.pick([0, KIND.CONTROL, KIND.DATA, KIND.END_DATA, KIND.ERROR, 9]);
            const length = g.pick([0, 1, 2, TAG_BYTES, MAX_CONTROL_PAYLOAD + 1, 0xffffffff]);
            await c.conn.write(concat([g.header(kind, length), g.bytes(g.int(200))]))
              .catch(() => {});
          } else if (how === 2) {
            // Encrypted correctly, hostile inside: random msgpack of any kind.
            const sealer = new FrameCipher(c.keys.c2s);
            const kind = g.pick([KIND.CONTROL, KIND.ERROR, KIND.DATA, KIND.END_DATA]);
            const p = g.r() < 0.5 ? enc.encode(g.value()) : g.bytes(g.int(64));
            const sealed = sealer.seal(kind, p);
            await c.conn.write(concat([g.header(kind, p.length), ...sealed.parts, sealed.tag]))
              .catch(() => {});
          } else if (how === 3) {
            // A stream that goes on after its end, through the real writer.
            await c.writer.data(1, g.bytes(10));
            await c.writer.endData(1);
            await c.writer.data(1, g.bytes(10)).catch(() => {});
          } else {
            // A good frame with one bit flipped.
            const sealer = new FrameCipher(c.keys.c2s);
            const p = enc.encode({ op: "offer", pad: g.bytes(g.int(300)) });
            const sealed = sealer.seal(KIND.CONTROL, p);
            const frame = concat([g.header(KIND.CONTROL, p.length), ...sealed.parts, sealed.tag]);
            frame[g.int(frame.length)] ^= 1 << g.int(8);
            await c.conn.write(frame).catch(() => {});
          }
          const end = g.int(3); // keep it open, half-close it, or close it
          if (end === 1) await c.conn.closeWrite().catch(() => {});
          else if (end === 2) c.close();
          // Whatever came, the server's connection ends: by itself, or when the client goes.
          await within(Promise.race([server.closed, sleep(300)]), "the server's connection");
          c.close();
          await within(server.closed, `case ${i}: the server's connection closing`, 5_000);
          await within(draining, `case ${i}: the server's reader`, 5_000);
        } finally {
          c.close();
          server.close();
        }
      }
      assertEquals(s.listener.accepted, ITERATIONS);
      await realClient(s);
    })
  );
});

/** Reads what a connection delivers until it ends; values are whatever the fuzz sent. */
async function drain(conn: PeerConnection): Promise<void> {
  try {
    for (;;) await conn.recv(30_000);
  } catch (e) {
    assert(e instanceof PpmError, `${e}`);
  }
}

function count(r: Readonly<Partial<Record<string, number>>>): number {
  return Object.values(r).reduce((a: number, b) => a + (b ?? 0), 0);
}

/** A real client still gets through: a control message and a 1 MiB stream. */
async function realClient(s: Parameters<Parameters<typeof withServer>[1]>[0]): Promise<void> {
  const client = await s.connect();
  const server = await s.next();
  await client.send({ op: "offer", pid: 1 });
  assertEquals(await server.recv(5_000), { op: "offer", pid: 1 });
  const data = pattern(MiB, 5);
  const [, got] = await within(
    Promise.all([
      client.sendStream(
        (async function* () {
          yield data;
        })(),
        1,
      ),
      hashStream(server.streamSource(1)),
    ]),
    "a real client's stream",
  );
  assertEquals(got, { hash: sha256(data), bytes: MiB });
}
