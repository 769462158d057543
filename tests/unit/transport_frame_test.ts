/**
 * Transport framing: round trips at any chunk boundaries, encryption, the
 * limit before authentication, and every defect as a PpmError.
 */
import { type CipherGCMTypes, createCipheriv, createDecipheriv } from "node:crypto";
import { PpmError } from "../../core/errors.ts";
import {
  type Frame,
  FrameReader,
  FrameWriter,
  KIND,
  MAX_CONTROL_PAYLOAD,
  MAX_DATA_CHUNK,
  MAX_DATA_PAYLOAD,
  PRE_AUTH_MAX_PAYLOAD,
} from "../../core/transport/frame.ts";
import { FrameCipher, TAG_BYTES } from "../../core/transport/cipher.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "../support/assert.ts";

/** Collects what is written; `maxWrite` makes writes partial, `slow` makes them yield. */
class MemWriter {
  chunks: Uint8Array[] = [];
  constructor(readonly maxWrite = Infinity, readonly slow = false) {}
  async write(p: Uint8Array): Promise<number> {
    if (this.slow) await new Promise((r) => setTimeout(r, 0));
    const n = Math.min(p.length, this.maxWrite);
    this.chunks.push(p.slice(0, n));
    return n;
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.chunks.reduce((a, c) => a + c.length, 0));
    let off = 0;
    for (const c of this.chunks) out.set(c, (off += c.length) - c.length);
    return out;
  }
}

/**
 * Serves `bytes` in chunks of `size` (a number, or a function for varying
 * sizes); records the largest buffer a read was asked to fill, i.e. the
 * largest buffer the reader had allocated to read into.
 */
class MemReader {
  #pos = 0;
  reads = 0;
  largestBuffer = 0;
  constructor(readonly bytes: Uint8Array, readonly size: number | (() => number)) {}
  read(p: Uint8Array): Promise<number | null> {
    this.reads++;
    this.largestBuffer = Math.max(this.largestBuffer, p.buffer.byteLength);
    if (this.#pos >= this.bytes.length) return Promise.resolve(null);
    const want = typeof this.size === "number" ? this.size : this.size();
    const n = Math.min(p.length, Math.max(1, want), this.bytes.length - this.#pos);
    p.set(this.bytes.subarray(this.#pos, this.#pos + n));
    this.#pos += n;
    return Promise.resolve(n);
  }
}

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

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >>> 8)) & 0xff;
  return b;
}

const KEY = new Uint8Array(32).fill(7);

/** Clear frames of any size, for tests of the framing itself. */
const ANY_SIZE = { maxClearPayload: MAX_CONTROL_PAYLOAD };

/** Writes `frames` (encrypted with KEY when `mac`) and returns the bytes. */
async function encode(frames: Frame[], mac = false): Promise<Uint8Array> {
  const w = new MemWriter();
  const fw = new FrameWriter(w);
  if (mac) await fw.encrypt(new FrameCipher(KEY));
  for (const f of frames) {
    if (f.kind === KIND.CONTROL) await fw.control(f.value);
    else if (f.kind === KIND.DATA) await fw.data(f.stream, f.data);
    else if (f.kind === KIND.END_DATA) await fw.endData(f.stream);
    else await fw.error(f.code, f.message);
  }
  return w.bytes();
}

/** Reads all frames of `bytes` delivered in chunks of `size`. */
async function decode(
  bytes: Uint8Array,
  size: number | (() => number),
  mac = false,
): Promise<Frame[]> {
  const fr = new FrameReader(new MemReader(bytes, size), { peer: "test", ...ANY_SIZE });
  if (mac) fr.encrypt(new FrameCipher(KEY));
  const out: Frame[] = [];
  for await (const f of fr) out.push(f);
  return out;
}

/** Frames without their CONTROL sizes, for comparison. */
function strip(frames: Frame[]): unknown[] {
  return frames.map((f) => f.kind === KIND.CONTROL ? { kind: f.kind, value: f.value } : f);
}

function control(value: unknown): Frame {
  return { kind: KIND.CONTROL, value, size: 0 };
}

function data(stream: number, n: number, seed = stream): Frame {
  return { kind: KIND.DATA, stream, data: pattern(n, seed) };
}

const SMALL_SEQUENCE: Frame[] = [
  control({ op: "offer", pid: 1234, big: 1n << 60n, neg: -(1n << 40n), list: [1, "x", null] }),
  data(1, 1),
  data(65535, 300),
  control("just a string"),
  data(2, 65536 - 2 - 5), // around the small-payload threshold
  data(2, 65536),
  data(3, 70_000),
  { kind: KIND.END_DATA, stream: 1 },
  control({ bin: pattern(1000, 9), nested: { a: [{ b: 2 }] } }),
  { kind: KIND.ERROR, code: "closed", message: "bye" },
];

const LARGE_SEQUENCE: Frame[] = [
  ...SMALL_SEQUENCE.slice(0, 3),
  data(4, MAX_DATA_CHUNK),
  control({ after: "max" }),
  data(5, 1024 * 1024 + 17),
  data(6, 3 * 1024 * 1024 + 1),
  { kind: KIND.END_DATA, stream: 4 },
];

Deno.test("frame: round trips with chunk sizes from 1 byte to 1 MiB, clear and encrypted", async () => {
  for (const mac of [false, true]) {
    const small = await encode(SMALL_SEQUENCE, mac);
    for (const size of [1, 2, 3, 5, 7, 64, 4096, 65537, 1024 * 1024]) {
      assertEquals(strip(await decode(small, size, mac)), strip(SMALL_SEQUENCE), `size ${size}`);
    }
    const r = rng(42);
    assertEquals(
      strip(await decode(small, () => 1 + Math.floor(r() * 9000), mac)),
      strip(SMALL_SEQUENCE),
    );
    const large = await encode(LARGE_SEQUENCE, mac);
    for (const size of [4096, 65536 + 3, 1024 * 1024]) {
      assertEquals(strip(await decode(large, size, mac)), strip(LARGE_SEQUENCE), `size ${size}`);
    }
    assertEquals(
      strip(await decode(large, () => 1 + Math.floor(r() * 3_000_000), mac)),
      strip(LARGE_SEQUENCE),
    );
  }
});

Deno.test("frame: each payload is decrypted into its own buffer, never reused (few reads)", async () => {
  const frames = [
    data(1, MAX_DATA_CHUNK, 1),
    data(1, MAX_DATA_CHUNK, 2),
    data(1, 100, 3),
    data(1, 200, 4),
    data(1, 70_000, 5),
  ];
  for (const mac of [false, true]) {
    const bytes = await encode(frames, mac);
    const src = new MemReader(bytes, 1024 * 1024);
    const fr = new FrameReader(src, ANY_SIZE);
    if (mac) fr.encrypt(new FrameCipher(KEY));
    const got: Frame[] = [];
    for await (const f of fr) got.push(f);
    assertEquals(strip(got), strip(frames)); // earlier chunks were not overwritten by later reads
    assert(src.reads <= 14, `${src.reads} reads for 8 MiB in 1 MiB chunks`);
    const chunks = got.map((f) => (f as { data: Uint8Array }).data);
    assertEquals(new Set(chunks.map((c) => c.buffer)).size, chunks.length, "shared buffers");
    for (const c of chunks) {
      assertEquals(c.constructor, Uint8Array); // not a node Buffer
      assertEquals(c.buffer.byteLength, c.length + 2); // the payload's own buffer
    }
  }
});

const hex = (s: string) => Uint8Array.from(s.match(/../g)!, (x) => parseInt(x, 16));

Deno.test("frame: the AEAD gives RFC 8439's ChaCha20-Poly1305 test vector", () => {
  // RFC 8439 section 2.8.2: the tag covers the associated data and the ciphertext.
  const c = createCipheriv(
    "chacha20-poly1305" as CipherGCMTypes,
    hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"),
    hex("070000004041424344454647"),
    { authTagLength: 16 },
  );
  c.setAAD(hex("50515253c0c1c2c3c4c5c6c7"));
  const sunscreen = "Ladies and Gentlemen of the class of '99: If I could offer you only one " +
    "tip for the future, sunscreen would be it.";
  const ct = c.update(new TextEncoder().encode(sunscreen));
  c.final();
  assertEquals(new Uint8Array(ct.subarray(0, 8)), hex("d31a8d34648e60db"));
  assertEquals(new Uint8Array(c.getAuthTag()), hex("1ae10b594f09e26a7e902ecbd0600691"));
});

Deno.test("frame: payloads are ChaCha20-Poly1305 ciphertexts with kind and length as AAD, nonce = sequence", async () => {
  const payloads = [pattern(100, 0), pattern(1, 1), pattern(70_000, 2)];
  const w = new MemWriter();
  const fw = new FrameWriter(w);
  await fw.encrypt(new FrameCipher(KEY));
  for (const p of payloads) await fw.data(9, p);
  const wire = w.bytes();
  let off = 0;
  for (const [seq, p] of payloads.entries()) {
    const plain = new Uint8Array([9, 0, ...p]);
    const nonce = new Uint8Array(12);
    new DataView(nonce.buffer).setBigUint64(0, BigInt(seq), true);
    const c = createCipheriv("chacha20-poly1305" as CipherGCMTypes, KEY, nonce, {
      authTagLength: 16,
    });
    const head = new Uint8Array([KIND.DATA, 0, 0, 0, 0]);
    new DataView(head.buffer).setUint32(1, plain.length, true);
    c.setAAD(head);
    const ct = c.update(plain);
    c.final();
    const frame = new Uint8Array([...head, ...ct, ...c.getAuthTag()]);
    assertEquals(wire.subarray(off, off + frame.length), frame, `sequence ${seq}`);
    off += frame.length;
  }
  assertEquals(off, wire.length);
  // Another kind, another length, another key or another sequence number does not open.
  const seal = new FrameCipher(KEY).seal(KIND.DATA, pattern(64, 9));
  const [ct, tag] = [seal.parts[0], seal.tag];
  assert(new FrameCipher(KEY).open(KIND.DATA, ct, tag) !== null);
  assertEquals(new FrameCipher(KEY).open(KIND.CONTROL, ct, tag), null);
  assertEquals(new FrameCipher(KEY).open(KIND.DATA, ct.subarray(1), tag), null);
  assertEquals(new FrameCipher(new Uint8Array(32)).open(KIND.DATA, ct, tag), null);
  const later = new FrameCipher(KEY);
  later.seal(KIND.DATA, new Uint8Array(1));
  assertEquals(later.open(KIND.DATA, ct, tag), null);
  assertThrows(() => new FrameCipher(new Uint8Array(16)), RangeError);
  // The reference decryption agrees.
  const d = createDecipheriv("chacha20-poly1305" as CipherGCMTypes, KEY, new Uint8Array(12), {
    authTagLength: 16,
  });
  const head = new Uint8Array([KIND.DATA, 64, 0, 0, 0]);
  d.setAAD(head);
  d.setAuthTag(tag);
  const plain = d.update(ct);
  d.final();
  assertEquals(new Uint8Array(plain), pattern(64, 9));
});

Deno.test("frame: no payload byte goes out in clear once encrypted, whatever the frame kind", async () => {
  const marker = new TextEncoder().encode("PPM-SECRET-MARKER");
  const big = new Uint8Array(5 * 1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = marker[i % marker.length];
  const text = "PPM-SECRET-MARKER".repeat(100);
  const frames: Frame[] = [
    control({ op: text }),
    { kind: KIND.DATA, stream: 1, data: big },
    { kind: KIND.DATA, stream: 1, data: marker },
    { kind: KIND.ERROR, code: "PPM-SECRET-MARKER", message: text },
  ];
  const wire = await encode(frames, true);
  assertEquals(indexOf(wire, marker.subarray(0, 8)), -1);
  assertEquals(strip(await decode(wire, 65536 + 7, true)).length, 5); // big is split in two
});

/** Where `needle` first occurs in `hay`, or -1. */
function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

Deno.test("frame: before encryption, a length over 4 KiB is refused before anything is allocated", async () => {
  for (const kind of [KIND.CONTROL, KIND.DATA, KIND.ERROR]) {
    for (const length of [PRE_AUTH_MAX_PAYLOAD + 1, 65536, MAX_DATA_PAYLOAD, 0xffffffff]) {
      const src = new MemReader(new Uint8Array([...header(kind, length), 1, 2, 3]), 4096);
      const fr = new FrameReader(src, { peer: "10.0.0.9:4000" });
      let err: unknown;
      await fr.next().catch((e) => err = e);
      assert(err instanceof PpmError, `${kind} ${length}`);
      assertMatch(
        err.message,
        length > 0xffffff
          ? /length 4294967295 exceeds the limit of \d+ for \w+$/
          : /^transport: frame 0 from 10\.0\.0\.9:4000: length \d+ exceeds the limit of (4096 for a frame before authentication|65536 for ERROR)$/,
      );
      assert(src.largestBuffer <= 8192, `read into ${src.largestBuffer} bytes`);
    }
  }
  // At the limit it is read, through the small buffer.
  const ok = await encode([control("x".repeat(PRE_AUTH_MAX_PAYLOAD - 3))]);
  assertEquals(ok.length, 5 + PRE_AUTH_MAX_PAYLOAD);
  const src = new MemReader(ok, 100);
  const got = await new FrameReader(src).next();
  assertEquals((got as { value: string }).value.length, PRE_AUTH_MAX_PAYLOAD - 3);
  assert(src.largestBuffer <= 8192, `read into ${src.largestBuffer} bytes`);
  // Once encrypted, the kind's own limit applies.
  const big = await encode([data(1, 100_000)], true);
  const fr = new FrameReader(new MemReader(big, 9000));
  fr.encrypt(new FrameCipher(KEY));
  assertEquals(((await fr.next()) as { data: Uint8Array }).data.length, 100_000);
  // The writer keeps its own ERROR frames under the limit while in clear.
  const w = new MemWriter();
  await new FrameWriter(w).error("x".repeat(500), "é".repeat(10_000));
  const e = await new FrameReader(new MemReader(w.bytes(), 100)).next();
  assertEquals(e?.kind, KIND.ERROR);
});

Deno.test("frame: truncated at every offset is a PpmError (or a clean end at a frame boundary)", async () => {
  const frames = [control({ a: 1 }), data(1, 20), { kind: KIND.END_DATA, stream: 1 } as Frame];
  for (const mac of [false, true]) {
    const bytes = await encode(frames, mac);
    const boundaries = new Set<number>([0]);
    {
      let off = 0;
      for (const f of frames) {
        off += (await encode([f], false)).length + (mac ? TAG_BYTES : 0);
        boundaries.add(off);
      }
      assertEquals(off, bytes.length);
    }
    for (let cut = 0; cut < bytes.length; cut++) {
      for (const size of [1, 1000]) {
        const fr = new FrameReader(new MemReader(bytes.subarray(0, cut), size), { peer: "node-b" });
        if (mac) fr.encrypt(new FrameCipher(KEY));
        let n = 0, err: unknown;
        try {
          while (await fr.next()) n++;
        } catch (e) {
          err = e;
        }
        if (boundaries.has(cut)) {
          assertEquals(err, undefined, `cut ${cut}`);
        } else {
          assert(err instanceof PpmError, `cut ${cut}: ${err}`);
          assertMatch(
            err.message,
            new RegExp(
              `^transport: frame ${n} from node-b: the connection ended after \\d+ of \\d+ (header|\\w+ payload|tag) bytes$`,
            ),
          );
          // A failed reader keeps failing the same way.
          let again: unknown;
          await fr.next().catch((e) => again = e);
          assert(again === err);
        }
      }
    }
  }
});

/** Reads `bytes` to the end; returns the error (undefined if none) and the frame count. */
async function drain(bytes: Uint8Array, mac = false): Promise<{ err: unknown; n: number }> {
  const fr = new FrameReader(new MemReader(bytes, 777), { peer: "10.0.0.2:7790", ...ANY_SIZE });
  if (mac) fr.encrypt(new FrameCipher(KEY));
  let n = 0;
  try {
    while (await fr.next()) n++;
  } catch (err) {
    return { err, n };
  }
  return { err: undefined, n };
}

function header(kind: number, length: number, rest: number[] = []): Uint8Array {
  const b = new Uint8Array(5 + rest.length);
  b[0] = kind;
  new DataView(b.buffer).setUint32(1, length, true);
  b.set(rest, 5);
  return b;
}

Deno.test("frame: oversize lengths, unknown kinds and bad payloads are PpmErrors naming frame and peer", async () => {
  const cases: [Uint8Array, RegExp][] = [
    [
      header(KIND.CONTROL, 0xffffffff),
      /^transport: frame 0 from 10\.0\.0\.2:7790: length 4294967295 exceeds the limit of 16777216 for CONTROL$/,
    ],
    [
      header(KIND.DATA, MAX_DATA_PAYLOAD + 1),
      /length 4194307 exceeds the limit of 4194306 for DATA/,
    ],
    [header(KIND.END_DATA, 3, [1, 0, 0]), /length 3 exceeds the limit of 2 for END_DATA/],
    [header(KIND.ERROR, 1 << 20), /exceeds the limit of 65536 for ERROR/],
    [header(0, 0), /unknown frame kind 0/],
    [header(5, 0), /unknown frame kind 5/],
    [header(255, 1, [1]), /unknown frame kind 255/],
    [header(KIND.DATA, 1, [1]), /a DATA frame of 1 bytes has no stream id/],
    [header(KIND.CONTROL, 1, [0xc1]), /the CONTROL payload is not valid msgpack/],
    [header(KIND.CONTROL, 2, [0x01, 0x02]), /the CONTROL payload is not valid msgpack/], // extra bytes
    [header(KIND.CONTROL, 5, [0xdb, 0xff, 0xff, 0xff, 0xff]), /not valid msgpack/], // str of 4 GiB
    [header(KIND.CONTROL, 5, [0xdd, 0xff, 0xff, 0xff, 0xff]), /not valid msgpack/], // array of 4 G
    [header(KIND.ERROR, 1, [0x01]), /the ERROR payload is not a map of code and message strings/],
  ];
  for (const [bytes, re] of cases) {
    const { err } = await drain(bytes);
    assert(err instanceof PpmError, `${re}: ${err}`);
    assertMatch(err.message, re);
  }
  // The frame index counts the good frames before the bad one.
  const good = await encode([control(1), control(2)]);
  const { err, n } = await drain(new Uint8Array([...good, ...header(9, 0)]));
  assertEquals(n, 2);
  assertMatch((err as Error).message, /^transport: frame 2 from /);
});

Deno.test("frame: garbage is a PpmError or parses, never another exception and never a hang", async () => {
  const r = rng(7);
  for (let i = 0; i < 300; i++) {
    const n = (i % 6 === 0 ? 5 : 1) + Math.floor(r() * 300);
    const bytes = new Uint8Array(n).map(() => Math.floor(r() * 256));
    if (i % 3 === 0) bytes[0] = 1 + (i % 4); // a valid kind, so payload parsing is reached
    if (i % 6 === 0) bytes.set([Math.floor(r() * 64), 0, 0, 0], 1); // and a small length
    for (const mac of [false, true]) {
      const { err } = await drain(bytes, mac);
      assert(err === undefined || err instanceof PpmError, `garbage ${i}: ${err}`);
      if (mac) assert(err instanceof PpmError, `garbage ${i} passed the tag check`);
    }
  }
});

Deno.test("frame: any flipped bit, a reordered or a replayed frame fails the check", async () => {
  const frames = [
    control({ op: "x" }),
    data(1, 50),
    data(2, 10),
    { kind: KIND.END_DATA, stream: 1 } as Frame,
  ];
  const bytes = await encode(frames, true);
  for (let i = 0; i < bytes.length; i++) {
    const bad = bytes.slice();
    bad[i] ^= 1 << (i % 8);
    const { err } = await drain(bad, true);
    assert(err instanceof PpmError, `flip at ${i}`);
  }
  const sizes = await Promise.all(frames.map(async (f) => (await encode([f])).length + TAG_BYTES));
  const at = (k: number) => sizes.slice(0, k).reduce((a, b) => a + b, 0);
  const frame = (k: number) => bytes.subarray(at(k), at(k + 1));
  const swapped = new Uint8Array([...frame(0), ...frame(2), ...frame(1), ...frame(3)]);
  const replayed = new Uint8Array([...frame(0), ...frame(1), ...frame(1), ...frame(2)]);
  const dropped = new Uint8Array([...frame(0), ...frame(2), ...frame(3)]);
  for (
    const [name, b] of [["swapped", swapped], ["replayed", replayed], ["dropped", dropped]] as const
  ) {
    const { err, n } = await drain(b, true);
    assert(err instanceof PpmError, name);
    assertMatch(err.message, /its tag does not match: it was altered, reordered or replayed/);
    assertEquals(n, name === "replayed" ? 2 : 1, name);
  }
});

Deno.test("frame: read failures are PpmErrors", async () => {
  const fr = new FrameReader(
    { read: () => Promise.reject(new Error("Connection reset by peer")) },
    {
      peer: "node-c",
    },
  );
  let err: unknown;
  await fr.next().catch((e) => err = e);
  assert(err instanceof PpmError);
  assertMatch(
    err.message,
    /^transport: frame 0 from node-c: reading failed: Connection reset by peer$/,
  );
});

Deno.test("frame: concurrent writes never interleave, and large data is split into 4 MiB frames", async () => {
  const w = new MemWriter(1000, true); // partial, yielding writes
  const fw = new FrameWriter(w);
  await fw.encrypt(new FrameCipher(KEY));
  const want = new Map<number, Uint8Array[]>();
  const calls: Promise<void>[] = [];
  for (let i = 0; i < 60; i++) {
    const stream = i % 3;
    const chunk = pattern(1 + i * 37, i);
    (want.get(stream) ?? want.set(stream, []).get(stream)!).push(chunk);
    calls.push(fw.data(stream, chunk));
    if (i % 10 === 0) calls.push(fw.control({ i }));
  }
  await Promise.all(calls);
  const frames = await decode(w.bytes(), 4096, true);
  const got = new Map<number, Uint8Array[]>();
  for (const f of frames) {
    if (f.kind === KIND.DATA) {
      (got.get(f.stream) ?? got.set(f.stream, []).get(f.stream)!).push(f.data);
    }
  }
  assertEquals(got, want);
  assertEquals(
    frames.filter((f) => f.kind === KIND.CONTROL).map((f) => (f as { value: unknown }).value),
    [0, 10, 20, 30, 40, 50].map((i) => ({ i })),
  );

  const big = new MemWriter();
  await new FrameWriter(big).data(7, pattern(2 * MAX_DATA_CHUNK + 5, 1));
  const parts = await decode(big.bytes(), 1 << 20);
  assertEquals(parts.map((f) => (f as { data: Uint8Array }).data.length), [
    MAX_DATA_CHUNK,
    MAX_DATA_CHUNK,
    5,
  ]);
});

Deno.test("frame: the writer refuses what it cannot send, and stays usable", async () => {
  const w = new MemWriter();
  const fw = new FrameWriter(w, { peer: "node-b" });
  const refusals: [Promise<void>, RegExp][] = [
    [fw.control(new Uint8Array(MAX_CONTROL_PAYLOAD)), /more than the limit of 16777216/],
    [fw.control(1n << 70n), /cannot be encoded/],
    [fw.control(() => 1), /cannot be encoded/],
    [fw.data(65536, new Uint8Array(1)), /bad stream id/],
    [fw.endData(-1), /bad stream id/],
  ];
  for (const [p, re] of refusals) {
    let err: unknown;
    await p.catch((e) => err = e);
    assert(err instanceof PpmError, String(re));
    assertMatch(err.message, re);
  }
  await fw.data(1, new Uint8Array(0)); // nothing to send
  await fw.control("still fine");
  assertEquals(strip(await decode(w.bytes(), 100)), [{ kind: KIND.CONTROL, value: "still fine" }]);

  const broken = new FrameWriter({ write: () => Promise.reject(new Error("Broken pipe")) }, {
    peer: "node-b",
  });
  let err: unknown;
  await broken.control(1).catch((e) => err = e);
  assert(err instanceof PpmError);
  assertMatch(err.message, /^transport: frame 0 to node-b: writing failed: Broken pipe/);
  let again: unknown;
  await broken.control(2).catch((e) => again = e);
  assert(again === err);
});
