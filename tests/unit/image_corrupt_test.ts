import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { encode } from "@msgpack/msgpack";
import { crc32ieee } from "../../core/image/checksum.ts";
import { crc32c } from "../../core/image/crc32c.ts";
import { FIX_CORRUPT, FIX_TRUNCATED, ImageError } from "../../core/image/errors.ts";
import { MAX_PAGES_PAYLOAD, MAX_VALUE_PAYLOAD, RECORD } from "../../core/image/format.ts";
import { readImage } from "../../core/image/reader.ts";
import { ImageWriter } from "../../core/image/writer.ts";

async function* chunked(b: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, (o += p.length) - p.length);
  return out;
}

/** The ImageError reading `bytes` (in chunks of `chunk`) throws; fails on success or another error. */
async function readError(bytes: Uint8Array, chunk = 1 << 20): Promise<ImageError> {
  try {
    for await (const _ of readImage(chunked(bytes, chunk)));
  } catch (e) {
    if (e instanceof ImageError) return e;
    throw new Error(`expected an ImageError, got ${e}`);
  }
  throw new Error("expected an ImageError, but the image was read");
}

async function rejects(bytes: Uint8Array, re: RegExp, fix = FIX_CORRUPT) {
  const e = await readError(bytes);
  assertMatch(e.message, re);
  assertEquals(e.fix, fix);
  assertMatch(e.render(), /^ppm: image .*\n {2}what to do: /);
}

/** A stream header with the given fields. */
function header(version = 1, length = 16, reserved = 0, magic = "PPMIMG\r\n"): Uint8Array {
  const h = new Uint8Array(16);
  h.set(new TextEncoder().encode(magic));
  const v = new DataView(h.buffer);
  v.setUint16(8, version, true);
  v.setUint16(10, length, true);
  v.setUint32(12, reserved, true);
  return h;
}

/**
 * A record with a valid checksum (over the header's first 12 bytes, then the payload): CRC32C
 * for a version 1 image, the default here, or CRC-32 for version 2.
 */
function record(
  type: number,
  payload: Uint8Array,
  flags = 0,
  length = payload.length,
  version = 1,
) {
  const h = new Uint8Array(16);
  const v = new DataView(h.buffer);
  v.setUint32(0, type, true);
  v.setUint32(4, flags, true);
  v.setUint32(8, length, true);
  const crc = version === 1 ? crc32c : crc32ieee;
  v.setUint32(12, crc(payload, crc(h.subarray(0, 12), 0)), true);
  return concat(h, payload);
}

const value = (type: number, v: unknown) => record(type, encode(v, { useBigInt64: true }));
const end = (records: number, pages: number) => value(RECORD.END, { records, pages });

function pagesPayload(start: bigint, count: number, dataPages = count, reserved = 0) {
  const p = new Uint8Array(16 + dataPages * 4096).fill(0xa5, 16);
  const v = new DataView(p.buffer);
  v.setBigUint64(0, start, true);
  v.setUint32(8, count, true);
  v.setUint32(12, reserved, true);
  return p;
}

/** ≈ 3 records and 2 page blocks, written by the writer. */
async function smallImage(): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const w = new ImageWriter((c) => (parts.push(c.slice()), Promise.resolve()));
  await w.writeAnyRecord(RECORD.TASK, { pid: 1, comm: "init", start: 0x5555_0000_0000n });
  await w.writePages(0x1000n, new Uint8Array(4096).fill(1));
  await w.writeAnyRecord(RECORD.VMAS, [{ start: 0x1000n, end: 0x2000n, prot: 5 }]);
  await w.writePages(0x7fff_0000_0000n, new Uint8Array(4096).fill(2));
  await w.writeAnyRecord(RECORD.SIGNALS, { blocked: 0n });
  await w.end();
  return concat(...parts);
}

Deno.test("corrupt: the crafted helpers make a readable image, in versions 1 and 2", async () => {
  for (const version of [1, 2]) {
    const rec = (type: number, payload: Uint8Array) =>
      record(type, payload, 0, payload.length, version);
    const img = concat(
      header(version),
      rec(RECORD.TASK, encode(1)),
      rec(16, pagesPayload(0n, 1)),
      rec(RECORD.END, encode({ records: 2, pages: 1 })),
    );
    const kinds = [];
    for await (const r of readImage(chunked(img, 5))) kinds.push(r.kind);
    assertEquals(kinds, ["record", "pages", "end"], `version ${version}`);
  }
});

Deno.test("corrupt: a version 1 record under a version 2 header fails its checksum", async () => {
  const img = concat(header(2), value(RECORD.TASK, 1), end(1, 0));
  const e = await readError(img);
  assertMatch(e.message, /^image record 0 \(TASK at offset 16\): checksum mismatch/);
});

Deno.test("corrupt: truncation at every byte offset is an ImageError saying so", async () => {
  const img = await smallImage();
  for (let cut = 0; cut < img.length; cut++) {
    const e = await readError(img.subarray(0, cut), cut % 2 ? 7 : 1 << 20);
    assertEquals(e.fix, FIX_TRUNCATED, `cut at ${cut}: ${e.message}`);
    assertMatch(e.message, /offset \d+/);
  }
  const empty = await readError(new Uint8Array(0));
  assertEquals(empty.message, "image header (offset 0): the image is empty");
  assertMatch(
    (await readError(img.subarray(0, 16 + 16 + 3))).message,
    /^image record 0 \(TASK at offset 16\): the payload is cut short after 3 of \d+ bytes$/,
  );
});

Deno.test("corrupt: a flipped byte anywhere is an ImageError", async () => {
  const img = await smallImage();
  const kinds = new Map<string, number>();
  for (let at = 0; at < img.length; at++) {
    for (const mask of [0xff, 1 << (at % 8)]) {
      const bad = img.slice();
      bad[at] ^= mask;
      const e = await readError(bad, at % 3 ? 4096 : 13);
      const why = e.why.split(" ").slice(0, 2).join(" ");
      kinds.set(why, (kinds.get(why) ?? 0) + 1);
    }
  }
  console.log("flips by reason:", Object.fromEntries(kinds));
  assert((kinds.get("checksum mismatch") ?? 0) > img.length);
});

Deno.test("corrupt: checksum message names the record, its type and offset", async () => {
  const img = await smallImage();
  const recs = await Array.fromAsync(readImage(chunked(img, 1 << 20)));
  const bad = img.slice();
  bad[recs[3].offset + 32 + 1000] ^= 0x10; // in the second page block's data
  const e = await readError(bad);
  assertMatch(
    e.message,
    /^image record 3 \(PAGES at offset \d+\): checksum mismatch \(stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}\)$/,
  );
});

Deno.test("corrupt: bad stream headers", async () => {
  const rest = end(0, 0);
  const notImage =
    "check that this is a ppm checkpoint image; if it is, it is corrupted: take a new checkpoint";
  await rejects(
    concat(header(1, 16, 0, "PPMIMG\n\n"), rest),
    /^image header \(offset 0\): bad magic 50 50 4d 49 4d 47 0a 0a/,
    notImage,
  );
  await rejects(
    new TextEncoder().encode("hello"),
    /bad magic 68 65 6c 6c 6f/,
    FIX_CORRUPT.replace(
      /.*/,
      "check that this is a ppm checkpoint image; if it is, it is corrupted: take a new checkpoint",
    ),
  );
  await rejects(
    concat(header(3), rest),
    /unsupported format version 3 \(this ppm reads versions 1, 2\)/,
    "read the image with the ppm that wrote it, or take a new checkpoint with this one",
  );
  await rejects(concat(header(1, 32), rest), /header length 32 \(expected 16\)/);
  await rejects(concat(header(1, 16, 7), rest), /reserved field is 0x00000007, not 0/);
});

Deno.test("corrupt: absurd lengths and nonzero flags are refused before reading the payload", async () => {
  const h = header();
  await rejects(
    concat(h, record(RECORD.TASK, new Uint8Array(0), 0, MAX_VALUE_PAYLOAD + 1)),
    /^image record 0 \(TASK at offset 16\): payload length 16777217 is over the limit of 16777216$/,
  );
  await rejects(
    concat(h, record(RECORD.PAGES, new Uint8Array(0), 0, MAX_PAGES_PAYLOAD + 1)),
    /PAGES at offset 16\): payload length 67108881 is over the limit of 67108880/,
  );
  await rejects(concat(h, record(0x99, new Uint8Array(0), 0, 0xffffffff)), /type 0x99 at offset/);
  await rejects(concat(h, record(RECORD.CPU, encode(1), 1), end(1, 0)), /flags are 0x00000001/);
});

Deno.test("corrupt: bytes after END, wrong END counts, END not a map", async () => {
  const img = concat(header(), value(RECORD.TASK, 1), end(1, 0));
  await rejects(
    concat(img, new Uint8Array([0])),
    /^image end \(offset \d+\): bytes follow the END/,
  );
  const e = await readError(concat(img, new Uint8Array([0])), img.length); // in a later chunk
  assertMatch(e.message, /bytes follow the END record/);
  await rejects(concat(img, img), /bytes follow the END record/);
  // A reader that stops at END does not wait for (or check) what follows.
  for await (const r of readImage(chunked(concat(img, new Uint8Array(9)), img.length))) {
    if (r.kind === "end") break;
  }
  await rejects(concat(header(), value(RECORD.TASK, 1), end(2, 0)), /END says 2 records.*holds 1/);
  await rejects(concat(header(), end(0, 3)), /END says 3 pages, but the image holds 0/);
  await rejects(concat(header(), value(RECORD.END, [0, 0])), /the END value is not a map/);
  await rejects(concat(header(), value(RECORD.END, { records: 0 })), /no valid "pages" count/);
  await rejects(concat(header(), value(RECORD.END, { records: 0, pages: "0" })), /"pages" count/);
  await rejects(
    concat(header(), value(RECORD.TASK, 1)),
    /ends without an END record/,
    FIX_TRUNCATED,
  );
});

Deno.test("corrupt: malformed PAGES blocks", async () => {
  const pages = (p: Uint8Array) => concat(header(), record(RECORD.PAGES, p), end(1, 1));
  await rejects(pages(pagesPayload(0x1001n, 1)), /start address 0x1001 is not page aligned/);
  await rejects(pages(pagesPayload(0n, 0, 1)), /page count 0 is not in 1..16384/);
  await rejects(pages(pagesPayload(0n, 0, 0)), /page count 0 is not in 1..16384/);
  await rejects(pages(pagesPayload(0n, 16385, 1)), /page count 16385 is not in 1..16384/);
  await rejects(pages(pagesPayload(0n, 2, 1)), /payload length 4112 does not match 2 pages/);
  await rejects(pages(pagesPayload(0n, 1, 2)), /payload length 8208 does not match 1 pages/);
  await rejects(pages(pagesPayload(0n, 1, 1, 1)), /reserved field is 0x00000001/);
  await rejects(pages(new Uint8Array(8)), /payload of 8 bytes is shorter than the pages header/);
  await rejects(
    pages(pagesPayload(2n ** 64n - 4096n, 2)),
    /2 pages at 0xfffffffffffff000 go beyond/,
  );
});

Deno.test("corrupt: msgpack that does not decode", async () => {
  const bad = (p: number[]) => concat(header(), record(RECORD.FILES, new Uint8Array(p)), end(1, 0));
  const re = /^image record 0 \(FILES at offset 16\): the payload is not valid msgpack: /;
  await rejects(bad([0xc1]), re); // a never-used byte
  await rejects(bad([0x01, 0x02]), re); // two values
  await rejects(bad([0x92, 0x01]), re); // an array cut short
  await rejects(bad([]), re); // nothing
  await rejects(bad([0xdd, 0xff, 0xff, 0xff, 0xff]), re); // a 4G-element array
  await rejects(bad([0xc6, 0x7f, 0xff, 0xff, 0xff]), re); // a 2 GiB bin
  await rejects(bad([0x81, 0xa9, ...new TextEncoder().encode("__proto__"), 0x01]), re);
});

Deno.test("corrupt: unknown record types with msgpack payloads are returned", async () => {
  const img = concat(header(), value(0xabcdef, { x: 1n }), end(1, 0));
  const recs = await Array.fromAsync(readImage(chunked(img, 3)));
  assertEquals(recs[0], { kind: "record", type: 0xabcdef, index: 0, offset: 16, value: { x: 1n } });
});
