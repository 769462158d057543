import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { crc32ieee } from "../../core/image/checksum.ts";
import { crc32c } from "../../core/image/crc32c.ts";
import { ImageError } from "../../core/image/errors.ts";
import { type ImageRecord, RECORD } from "../../core/image/format.ts";
import { PAGE_SIZE } from "../../ffi/libc.ts";
import { byteSink, byteSource, pathSource } from "../../core/host/bytes.ts";
import { readImage } from "../../core/image/reader.ts";
import { ImageWriter } from "../../core/image/writer.ts";

const te = new TextEncoder();

/** Bitwise CRC32C, the reference for the table version. */
function crcRef(d: Uint8Array): number {
  let c = ~0;
  for (const b of d) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}

/** Bitwise CRC-32 (ISO-HDLC), the reference for the native one. */
function crc32Ref(d: Uint8Array): number {
  let c = ~0;
  for (const b of d) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return ~c >>> 0;
}

/** `n` bytes of a cheap pseudo-random pattern. */
function pattern(n: number, seed = 1): Uint8Array {
  const w = new Uint32Array(Math.ceil(n / 4));
  let x = seed;
  for (let i = 0; i < w.length; i++) w[i] = x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
  return new Uint8Array(w.buffer, 0, n);
}

/** An in-memory sink and what it received. */
function memorySink() {
  const chunks: Uint8Array[] = [];
  return {
    sink: (c: Uint8Array) => (chunks.push(c.slice()), Promise.resolve()),
    bytes: () => {
      const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let o = 0;
      for (const c of chunks) out.set(c, (o += c.length) - c.length);
      return out;
    },
  };
}

async function* chunked(b: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

async function collect(src: AsyncIterable<Uint8Array>): Promise<ImageRecord[]> {
  return await Array.fromAsync(readImage(src));
}

Deno.test("crc32c: known vectors (RFC 3720 and the check value)", () => {
  assertEquals(crc32c(te.encode("123456789")), 0xe3069283);
  assertEquals(crc32c(new Uint8Array(0)), 0);
  assertEquals(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assertEquals(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assertEquals(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  assertEquals(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
});

Deno.test("crc32ieee: the check value", () => {
  assertEquals(crc32ieee(te.encode("123456789")), 0xcbf43926);
  assertEquals(crc32ieee(new Uint8Array(0)), 0);
  assertEquals(crc32ieee(new Uint8Array(64).fill(0xff)), crc32Ref(new Uint8Array(64).fill(0xff)));
});

Deno.test("crc32c and crc32ieee: match their bitwise references on views at any offset; chain", () => {
  const buf = pattern(600);
  const pairs: [string, (d: Uint8Array, seed?: number) => number, (d: Uint8Array) => number][] = [
    ["crc32c", crc32c, crcRef],
    ["crc32ieee", crc32ieee, crc32Ref],
  ];
  for (const [name, crc, ref] of pairs) {
    for (let off = 0; off < 8; off++) {
      for (let n = 0; n <= 300; n += off + 1) {
        const d = buf.subarray(off, off + n);
        assertEquals(crc(d), ref(d), `${name}: offset ${off} length ${n}`);
      }
    }
    for (const cut of [0, 1, 63, 64, 65, 300, 600]) {
      assertEquals(crc(buf.subarray(cut), crc(buf.subarray(0, cut))), crc(buf), `${name} ${cut}`);
    }
  }
});

Deno.test("crc32c: throughput (printed, not asserted)", () => {
  const buf = pattern(64 << 20);
  crc32c(buf.subarray(0, 1 << 20));
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    crc32c(buf);
    best = Math.min(best, performance.now() - t0);
  }
  console.log(`crc32c: ${(buf.length / 1e6 / (best / 1000)).toFixed(0)} MB/s over 64 MiB`);
});

/** Writes a few records, pages in several blocks, an unknown type, then END. */
async function sampleImage(bigPages: number) {
  const m = memorySink();
  const w = new ImageWriter(m.sink);
  const task = { pid: 4242, comm: "sleep", addr: 0xffff_ffff_ffff_f000n, neg: -5n, one: 1n };
  const pagesA = pattern(3 * PAGE_SIZE, 7), pagesB = pattern(bigPages * PAGE_SIZE, 9);
  await w.writeAnyRecord(RECORD.TASK, task);
  await w.writePages(0x7f00_0000_0000n, pagesA);
  await w.writeAnyRecord(RECORD.CPU, { regs: new Uint8Array([1, 2, 3]), fs: 2 ** 40 });
  await w.writePages(0x40_0000n, pagesB);
  await w.writeAnyRecord(0x1234, ["anything", null, true, 1.5]);
  const summary = await w.end({ checkpoint: "c1" });
  const bytes = m.bytes();
  assertEquals(w.bytesWritten, bytes.length);
  assertEquals(summary.bytes, bytes.length);
  return { bytes, summary, task, pagesA, pagesB };
}

async function checkSample(s: Awaited<ReturnType<typeof sampleImage>>, chunk: number) {
  const recs = await collect(chunked(s.bytes, chunk));
  const blocks = Math.ceil(s.pagesB.length / PAGE_SIZE / 16384);
  assertEquals(recs.length, 5 + blocks);
  assertEquals(recs.map((r) => r.index), recs.map((_, i) => i));
  assertEquals(recs[0].offset, 16);
  const [task, a, cpu] = recs;
  assert(task.kind === "record" && task.type === RECORD.TASK);
  assertEquals(task.value, s.task);
  assert(a.kind === "pages" && a.start === 0x7f00_0000_0000n && a.count === 3);
  assertEquals(a.data, s.pagesA);
  assert(cpu.kind === "record");
  assertEquals(cpu.value, { regs: new Uint8Array([1, 2, 3]), fs: 2 ** 40 });
  let addr = 0x40_0000n, got = 0;
  for (const b of recs.slice(3, 3 + blocks)) {
    assert(b.kind === "pages" && b.start === addr && b.count <= 16384);
    assertEquals(b.data, s.pagesB.subarray(got, got + b.data.length));
    addr += BigInt(b.data.length);
    got += b.data.length;
  }
  assertEquals(got, s.pagesB.length);
  const unknown = recs[3 + blocks], end = recs[4 + blocks];
  assert(unknown.kind === "record" && unknown.type === 0x1234);
  assertEquals(unknown.value, ["anything", null, true, 1.5]);
  assert(end.kind === "end");
  assertEquals(end.value, { checkpoint: "c1", records: s.summary.records, pages: s.summary.pages });
  assertEquals(s.summary.records, recs.length - 1);
}

Deno.test("image: round trip in chunks of 1, 7, 4096 and 1 MiB bytes", async () => {
  const s = await sampleImage(5);
  for (const chunk of [1, 7, 4096, 1 << 20]) await checkSample(s, chunk);
});

Deno.test("image: more than 16384 pages are split into blocks", async () => {
  const s = await sampleImage(16384 + 5);
  assertEquals(s.summary.pages, 3 + 16384 + 5);
  for (const chunk of [4096, 1 << 20, 65 << 20]) await checkSample(s, chunk);
});

Deno.test("image: bigint keeps 64-bit values exact; numbers stay numbers", async () => {
  const m = memorySink();
  const w = new ImageWriter(m.sink);
  const v = { a: 2n ** 64n - 1n, b: -(2n ** 63n), c: 0n, d: 2 ** 53 - 1, e: -1, f: 0.25 };
  await w.writeAnyRecord(RECORD.MM, v);
  await w.end();
  const [r] = await collect(chunked(m.bytes(), 3));
  assert(r.kind === "record");
  assertEquals(r.value, v);
});

Deno.test("image: an empty image is a header and END", async () => {
  const m = memorySink();
  const w = new ImageWriter(m.sink);
  await w.writePages(0n, new Uint8Array(0));
  assertEquals(await w.end(), { records: 0, pages: 0, bytes: m.bytes().length });
  const recs = await collect(chunked(m.bytes(), 5));
  assertEquals(recs.map((r) => r.kind), ["end"]);
  assertEquals(new DataView(m.bytes().buffer).getUint16(8, true), 2, "the writer writes version 2");
});

async function rejectsImage(p: Promise<unknown>, re: RegExp) {
  try {
    await p;
  } catch (e) {
    assert(e instanceof ImageError, `not an ImageError: ${e}`);
    assertMatch(e.message, re);
    return;
  }
  throw new Error(`no error; expected ${re}`);
}

Deno.test("writer: refuses bad arguments and stays usable", async () => {
  const m = memorySink();
  const w = new ImageWriter(m.sink);
  await rejectsImage(w.writeAnyRecord(RECORD.PAGES, {}), /use writePages/);
  await rejectsImage(w.writeAnyRecord(RECORD.END, {}), /use writePages\(\) or end/);
  await rejectsImage(w.writeAnyRecord(-1, {}), /not a u32/);
  await rejectsImage(w.writePages(0x1001n, new Uint8Array(4096)), /multiples of 4096/);
  await rejectsImage(w.writePages(0x1000n, new Uint8Array(100)), /multiples of 4096/);
  await rejectsImage(w.writePages(2n ** 64n - 4096n, new Uint8Array(8192)), /beyond 2\^64/);
  await rejectsImage(
    w.writeAnyRecord(RECORD.FILES, new Uint8Array(16 << 20)),
    /more than the limit/,
  );
  await rejectsImage(w.writeAnyRecord(RECORD.FILES, { a: 2n ** 64n }), /cannot be encoded/);
  const p1 = w.writeAnyRecord(RECORD.TASK, 1), p2 = w.writeAnyRecord(RECORD.CPU, 2); // overlapping
  await Promise.all([p1, p2]);
  assertEquals((await w.end()).records, 2);
  await rejectsImage(w.writeAnyRecord(RECORD.TASK, 3), /it has ended/);
  const recs = await collect(chunked(m.bytes(), 1 << 20));
  assertEquals(recs.map((r) => r.kind === "record" && r.value), [1, 2, false]);
});

Deno.test("writer: a failing sink fails every later call", async () => {
  let n = 0;
  const w = new ImageWriter(() =>
    ++n === 3 ? Promise.reject(new Error("disk full")) : Promise.resolve()
  );
  await w.writeAnyRecord(RECORD.TASK, 1); // the header and the record
  let err: unknown;
  await w.writeAnyRecord(RECORD.TASK, 2).catch((e) => err = e);
  assertMatch(String(err), /disk full/);
  await w.writeAnyRecord(RECORD.TASK, 3).catch((e) => err = e);
  assertMatch(String(err), /disk full/);
  assertEquals(n, 3);
});

Deno.test("io: through a file with byteSink, byteSource and pathSource", async () => {
  const s = await sampleImage(40);
  const path = await Deno.makeTempFile({ suffix: ".ppmimg" });
  try {
    {
      using f = await Deno.open(path, { write: true, truncate: true });
      const w = new ImageWriter(byteSink(f));
      await w.writeAnyRecord(RECORD.TASK, s.task);
      await w.writePages(0x1000n, s.pagesB.subarray(0, 10 * PAGE_SIZE));
      await w.writePages(0x100000n, s.pagesB.subarray(10 * PAGE_SIZE));
      await w.end();
    }
    {
      using f = await Deno.open(path);
      const recs = await collect(byteSource(f, 10_000));
      assertEquals(recs.map((r) => r.kind), ["record", "pages", "pages", "end"]);
    }
    // pathSource reads ahead; small buffers put many reads in flight across record boundaries.
    for (const size of [undefined, 10_000, 4096 + 7]) {
      const recs = await collect(pathSource(path, size));
      const data = recs.flatMap((r) => r.kind === "pages" ? [r.data] : []);
      assertEquals(data[0], s.pagesB.subarray(0, 10 * PAGE_SIZE), `buffer ${size}`);
      assertEquals(data[1], s.pagesB.subarray(10 * PAGE_SIZE), `buffer ${size}`);
    }
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("io: through a TCP connection", async () => {
  const s = await sampleImage(7);
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const received = (async () => {
    using conn = await listener.accept();
    return await collect(byteSource(conn));
  })();
  {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    const w = new ImageWriter(byteSink(conn));
    for await (const r of readImage(chunked(s.bytes, 1000))) {
      if (r.kind === "record") await w.writeAnyRecord(r.type, r.value);
      else if (r.kind === "pages") await w.writePages(r.start, r.data);
      else await w.end({ checkpoint: r.value.checkpoint });
    }
  }
  assertEquals(await received, await collect(chunked(s.bytes, 1 << 20)));
});
