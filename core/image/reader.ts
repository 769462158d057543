/**
 * Reads an image from a stream of chunks, checking everything: header,
 * limits, checksums, PAGES layout, END counts, nothing after END.
 *
 * @module
 */

import { ChunkReader } from "./chunks.ts";
import { decodeValue } from "./codec.ts";
import { PAGE_SIZE } from "../../ffi/libc.ts";
import { type Checksum, CHECKSUMS } from "./checksum.ts";
import { FIX_TRUNCATED, hex32, ImageError } from "./errors.ts";
import {
  HEADER_SIZE,
  type ImageRecord,
  MAGIC,
  MAX_PAGES_PAYLOAD,
  MAX_PAGES_PER_RECORD,
  MAX_VALUE_PAYLOAD,
  PAGES_HEADER_SIZE,
  type PagesRecord,
  RECORD,
  RECORD_HEADER_SIZE,
  recordName,
} from "./format.ts";

const FIX_NOT_IMAGE =
  "check that this is a ppm checkpoint image; if it is, it is corrupted: take a new checkpoint";

function truncated(what: string, why: string): ImageError {
  return new ImageError(what, why, FIX_TRUNCATED);
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** Checks the 16-byte stream header; returns the checksum of the image's version. */
async function readHeader(r: ChunkReader): Promise<Checksum> {
  const what = "image header (offset 0)";
  const h = await r.read(HEADER_SIZE);
  if (h.length === 0) throw truncated(what, "the image is empty");
  const magic = h.subarray(0, MAGIC.length);
  if (magic.some((b, i) => b !== MAGIC[i])) {
    const found = Array.from(magic, (b) => b.toString(16).padStart(2, "0")).join(" ");
    throw new ImageError(what, `bad magic ${found} (expected "PPMIMG\\r\\n")`, FIX_NOT_IMAGE);
  }
  if (h.length < HEADER_SIZE) {
    throw truncated(what, `the header is cut short after ${h.length} of ${HEADER_SIZE} bytes`);
  }
  const v = view(h);
  const version = v.getUint16(8, true);
  const checksum = CHECKSUMS.get(version);
  if (!checksum) {
    throw new ImageError(
      what,
      `unsupported format version ${version} (this ppm reads versions ${
        [...CHECKSUMS.keys()].join(", ")
      })`,
      "read the image with the ppm that wrote it, or take a new checkpoint with this one",
    );
  }
  const len = v.getUint16(10, true), reserved = v.getUint32(12, true);
  if (len !== HEADER_SIZE) {
    throw new ImageError(what, `header length ${len} (expected ${HEADER_SIZE})`);
  }
  if (reserved !== 0) throw new ImageError(what, `reserved field is ${hex32(reserved)}, not 0`);
  return checksum.crc;
}

/**
 * Parses and checks a PAGES payload whose checksum matched: its 16-byte
 * header `p` and the page data, read separately so that the data stays a
 * view of the source's chunk. `length` is the whole payload's.
 */
function parsePages(
  where: string,
  index: number,
  offset: number,
  p: Uint8Array,
  data: Uint8Array,
  length: number,
): PagesRecord {
  if (length < PAGES_HEADER_SIZE) {
    throw new ImageError(where, `payload of ${length} bytes is shorter than the pages header`);
  }
  const v = view(p);
  const start = v.getBigUint64(0, true), count = v.getUint32(8, true);
  const reserved = v.getUint32(12, true);
  if (reserved !== 0) throw new ImageError(where, `reserved field is ${hex32(reserved)}, not 0`);
  if (count < 1 || count > MAX_PAGES_PER_RECORD) {
    throw new ImageError(where, `page count ${count} is not in 1..${MAX_PAGES_PER_RECORD}`);
  }
  const expected = PAGES_HEADER_SIZE + count * PAGE_SIZE;
  if (length !== expected) {
    throw new ImageError(
      where,
      `payload length ${length} does not match ${count} pages (expected ${expected})`,
    );
  }
  if (start % BigInt(PAGE_SIZE) !== 0n) {
    throw new ImageError(where, `start address 0x${start.toString(16)} is not page aligned`);
  }
  if (start + BigInt(count * PAGE_SIZE) > 1n << 64n) {
    throw new ImageError(where, `${count} pages at 0x${start.toString(16)} go beyond 2^64`);
  }
  return { kind: "pages", index, offset, start, count, data };
}

/** A count in END: a non-negative integer number or bigint. */
function endCount(v: unknown): number | undefined {
  if (typeof v === "bigint") return v >= 0n && v <= Number.MAX_SAFE_INTEGER ? Number(v) : undefined;
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

/** Checks the END map against the counts seen. */
function checkEnd(where: string, value: unknown, records: number, pages: number) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new ImageError(where, "the END value is not a map");
  }
  const end = value as Record<string, unknown>;
  for (const [key, seen] of [["records", records], ["pages", pages]] as const) {
    const stored = endCount(end[key]);
    if (stored === undefined) {
      throw new ImageError(where, `END has no valid "${key}" count (found ${String(end[key])})`);
    }
    if (stored !== seen) {
      throw new ImageError(where, `END says ${stored} ${key}, but the image holds ${seen}`);
    }
  }
}

/**
 * Reads an image, yielding its records in order; the last is END. Every
 * defect throws {@link ImageError} naming the record index and byte offset:
 * a bad header or a version it does not read (it reads 1 and 2), a record over its size limit, nonzero flags or reserved
 * fields, a checksum mismatch, a malformed PAGES block, msgpack that does not
 * decode, wrong END counts, a stream that ends early, bytes after END.
 * Errors of the source itself (I/O) pass through unchanged.
 *
 * Records are yielded only once their checksum has been verified. Bytes
 * after END are looked for when the caller asks for the record after END (a
 * `for await` loop does); a caller that stops at END, e.g. on a socket that
 * stays open, skips that check. Page data and msgpack binaries may be views
 * of the source's chunks, so the source must not reuse its buffers.
 *
 * @param source the image bytes in chunks of any sizes
 */
export async function* readImage(source: AsyncIterable<Uint8Array>): AsyncGenerator<ImageRecord> {
  const r = new ChunkReader(source);
  try {
    const checksum = await readHeader(r);
    let pages = 0;
    for (let index = 0;; index++) {
      const offset = r.offset;
      const h = await r.read(RECORD_HEADER_SIZE);
      if (h.length < RECORD_HEADER_SIZE) {
        const what = `image record ${index} (at offset ${offset})`;
        if (h.length === 0) throw truncated(what, "the image ends without an END record");
        throw truncated(what, `the record header is cut short after ${h.length} of 16 bytes`);
      }
      const v = view(h);
      const type = v.getUint32(0, true), flags = v.getUint32(4, true);
      const length = v.getUint32(8, true), stored = v.getUint32(12, true);
      const where = `image record ${index} (${recordName(type)} at offset ${offset})`;
      if (flags !== 0) throw new ImageError(where, `flags are ${hex32(flags)}, not 0`);
      const max = type === RECORD.PAGES ? MAX_PAGES_PAYLOAD : MAX_VALUE_PAYLOAD;
      if (length > max) {
        throw new ImageError(where, `payload length ${length} is over the limit of ${max}`);
      }
      const crc = checksum(h.subarray(0, 12), 0);
      // A PAGES payload is read as its header, then its data: the data is then usually one
      // chunk of the source, kept as a view rather than copied.
      const split = type === RECORD.PAGES ? Math.min(length, PAGES_HEADER_SIZE) : length;
      const payload = await r.read(split);
      const rest = split < length ? await r.read(length - split) : payload.subarray(split);
      if (payload.length + rest.length < length) {
        throw truncated(
          where,
          `the payload is cut short after ${payload.length + rest.length} of ${length} bytes`,
        );
      }
      const computed = checksum(rest, checksum(payload, crc));
      if (computed !== stored) {
        throw new ImageError(
          where,
          `checksum mismatch (stored ${hex32(stored)}, computed ${hex32(computed)})`,
        );
      }
      if (type === RECORD.PAGES) {
        const rec = parsePages(where, index, offset, payload, rest, length);
        pages += rec.count;
        yield rec;
        continue;
      }
      let value: unknown;
      try {
        value = decodeValue(payload);
      } catch (e) {
        throw new ImageError(where, `the payload is not valid msgpack: ${(e as Error).message}`);
      }
      if (type !== RECORD.END) {
        yield { kind: "record", type, index, offset, value };
        continue;
      }
      checkEnd(where, value, index, pages);
      const after = `image end (offset ${r.offset})`;
      if (r.buffered > 0) throw new ImageError(after, "bytes follow the END record");
      yield { kind: "end", index, offset, value: value as Record<string, unknown> };
      if (!(await r.atEnd())) throw new ImageError(after, "bytes follow the END record");
      return;
    }
  } finally {
    await r.close();
  }
}
