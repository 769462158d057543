/**
 * Writes an image as a stream of chunks to a sink: a file now, a socket
 * later. Page data is passed to the sink as views, never copied.
 *
 * @module
 */

import type { RecordValues } from "./schema.ts";
import { encodeValue } from "./codec.ts";
import { crc32ieee } from "./checksum.ts";
import { PAGE_SIZE } from "../../ffi/libc.ts";
import { ImageError } from "./errors.ts";
import {
  HEADER_SIZE,
  type ImageSummary,
  MAGIC,
  MAX_PAGES_PER_RECORD,
  MAX_VALUE_PAYLOAD,
  PAGES_HEADER_SIZE,
  RECORD,
  RECORD_HEADER_SIZE,
  recordName,
  VERSION,
} from "./format.ts";

/** Receives the image's bytes in order; it must be done with a chunk when its promise settles. */
export type ImageSink = (chunk: Uint8Array) => Promise<void>;

/** The 16-byte stream header. */
function streamHeader(): Uint8Array {
  const h = new Uint8Array(HEADER_SIZE);
  h.set(MAGIC);
  const v = new DataView(h.buffer);
  v.setUint16(8, VERSION, true);
  v.setUint16(10, HEADER_SIZE, true);
  return h;
}

/**
 * Fills the record header at the start of `buf`; the CRC (CRC-32, format version 2) covers the
 * header's first 12 bytes (type, flags, length) then the payload, given as `parts`.
 */
function fillRecordHeader(buf: Uint8Array, type: number, length: number, parts: Uint8Array[]) {
  const v = new DataView(buf.buffer, buf.byteOffset, RECORD_HEADER_SIZE);
  v.setUint32(0, type, true);
  v.setUint32(4, 0, true);
  v.setUint32(8, length, true);
  let crc = crc32ieee(buf.subarray(0, 12));
  for (const p of parts) crc = crc32ieee(p, crc);
  v.setUint32(12, crc, true);
}

/**
 * Writes one image: `writeRecord` and `writePages` in any order, then `end`.
 * Calls may overlap; they are written in call order. A call refused before
 * writing anything (a bad argument) leaves the writer usable; once the sink
 * fails, every later call fails with the sink's error.
 */
export class ImageWriter {
  #sink: ImageSink;
  #bytes = 0;
  #records = 0;
  #pages = 0;
  #ended = false;
  #tail: Promise<void> = Promise.resolve();
  #failure: unknown = undefined;

  /** @param sink receives the chunks; see {@link ImageSink} */
  constructor(sink: ImageSink) {
    this.#sink = sink;
  }

  /** Bytes handed to the sink so far. */
  get bytesWritten(): number {
    return this.#bytes;
  }

  /**
   * Writes one msgpack record, of the one type the reader checks it against
   * (schema.ts {@link RecordValues}).
   *
   * @param type a record type other than PAGES and END
   * @param value the record; bigint is written as a 64-bit integer
   * @throws ImageError for a value that cannot be encoded or one over 16 MiB
   */
  writeRecord<T extends keyof RecordValues>(type: T, value: RecordValues[T]): Promise<void> {
    return this.writeAnyRecord(type, value);
  }

  /**
   * Writes one msgpack record of any type and value: for tools and tests
   * that write images of their own, malformed ones included (ppm itself
   * writes with {@link writeRecord}).
   *
   * @param type a u32 record type other than PAGES and END
   * @param value any value msgpack can hold
   * @throws ImageError for a bad type, a value that cannot be encoded or one over 16 MiB
   */
  writeAnyRecord(type: number, value: unknown): Promise<void> {
    return this.#run(async () => {
      const where = `cannot write image record ${this.#records} (${recordName(type)})`;
      if (!Number.isInteger(type) || type < 0 || type > 0xffffffff) {
        throw new ImageError(where, `record type ${type} is not a u32`, "");
      }
      if (type === RECORD.PAGES || type === RECORD.END) {
        throw new ImageError(where, "use writePages() or end() for this type", "");
      }
      await this.#writeValue(where, type, value);
    });
  }

  /**
   * Writes pages as PAGES records of at most 16384 pages each. `data` is
   * handed to the sink as views, not copied. Empty `data` writes nothing.
   *
   * @param start the address of the first page, a multiple of 4096
   * @param data the page contents, a multiple of 4096 bytes
   * @throws ImageError for an unaligned start or length, or pages beyond 2^64
   */
  writePages(start: bigint, data: Uint8Array): Promise<void> {
    return this.#run(async () => {
      const where = `cannot write image record ${this.#records} (PAGES)`;
      const n = data.length / PAGE_SIZE;
      if (start < 0n || start % BigInt(PAGE_SIZE) !== 0n || !Number.isInteger(n)) {
        throw new ImageError(
          where,
          `start 0x${
            start.toString(16)
          } and length ${data.length} must be multiples of ${PAGE_SIZE}`,
          "",
        );
      }
      if (start + BigInt(data.length) > 1n << 64n) {
        throw new ImageError(where, `pages at 0x${start.toString(16)} go beyond 2^64`, "");
      }
      await this.#header();
      for (let first = 0; first < n; first += MAX_PAGES_PER_RECORD) {
        const count = Math.min(MAX_PAGES_PER_RECORD, n - first);
        const block = data.subarray(first * PAGE_SIZE, (first + count) * PAGE_SIZE);
        const head = new Uint8Array(RECORD_HEADER_SIZE + PAGES_HEADER_SIZE);
        const pv = new DataView(head.buffer, RECORD_HEADER_SIZE);
        pv.setBigUint64(0, start + BigInt(first * PAGE_SIZE), true);
        pv.setUint32(8, count, true);
        const pagesHeader = head.subarray(RECORD_HEADER_SIZE);
        fillRecordHeader(head, RECORD.PAGES, PAGES_HEADER_SIZE + block.length, [
          pagesHeader,
          block,
        ]);
        await this.#emit(head);
        await this.#emit(block);
        this.#records++;
        this.#pages += count;
      }
    });
  }

  /**
   * Writes the END record and finishes the image; the writer takes no more
   * records afterwards.
   *
   * @param extra more END fields (e.g. a checkpoint id); `records` and `pages` are set here
   * @returns the counts written in END and the stream's total size
   */
  end(extra: Record<string, unknown> = {}): Promise<ImageSummary> {
    return this.#run(async () => {
      const records = this.#records, pages = this.#pages;
      await this.#writeValue(`cannot write image record ${records} (END)`, RECORD.END, {
        ...extra,
        records,
        pages,
      });
      this.#ended = true;
      return { records, pages, bytes: this.#bytes };
    });
  }

  /** Runs `op` after the previous calls, unless the writer failed or ended. */
  #run<T>(op: () => Promise<T>): Promise<T> {
    const p = this.#tail.then(() => {
      if (this.#failure !== undefined) throw this.#failure;
      if (this.#ended) throw new ImageError("cannot write to the image", "it has ended", "");
      return op();
    });
    this.#tail = p.then(() => {}, () => {});
    return p;
  }

  async #writeValue(where: string, type: number, value: unknown): Promise<void> {
    let payload: Uint8Array;
    try {
      payload = encodeValue(value);
    } catch (e) {
      throw new ImageError(where, `the value cannot be encoded: ${(e as Error).message}`, "");
    }
    if (payload.length > MAX_VALUE_PAYLOAD) {
      throw new ImageError(
        where,
        `the value takes ${payload.length} bytes, more than the limit of ${MAX_VALUE_PAYLOAD}`,
        "",
      );
    }
    const rec = new Uint8Array(RECORD_HEADER_SIZE + payload.length);
    rec.set(payload, RECORD_HEADER_SIZE);
    fillRecordHeader(rec, type, payload.length, [rec.subarray(RECORD_HEADER_SIZE)]);
    await this.#header();
    await this.#emit(rec);
    this.#records++;
  }

  async #header(): Promise<void> {
    if (this.#bytes === 0) await this.#emit(streamHeader());
  }

  async #emit(chunk: Uint8Array): Promise<void> {
    try {
      await this.#sink(chunk);
    } catch (e) {
      this.#failure = e;
      throw e;
    }
    this.#bytes += chunk.length;
  }
}
