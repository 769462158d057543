/**
 * Constants and types of the checkpoint image format: a 16-byte stream
 * header, then checksummed records, the last one END. Version 2 differs from
 * version 1 only in the record checksum (see checksum.ts). The byte layout
 * is documented in docs/image-format.md.
 *
 * @module
 */
import { PAGE_SIZE } from "../../ffi/libc.ts";

/** The 8 magic bytes that open every image: ASCII "PPMIMG\r\n". */
export const MAGIC: Uint8Array = new TextEncoder().encode("PPMIMG\r\n");

/** The format version this code writes; it reads every version in checksum.ts's CHECKSUMS. */
export const VERSION = 2;

/** Size of the stream header: magic, u16 version, u16 header length, u32 reserved. */
export const HEADER_SIZE = 16;

/** Size of a record header: u32 type, u32 flags, u32 payload length, u32 checksum. */
export const RECORD_HEADER_SIZE = 16;

/** Size of the header that opens a PAGES payload: u64 start, u32 count, u32 reserved. */
export const PAGES_HEADER_SIZE = 16;

/** Most pages in one PAGES record. */
export const MAX_PAGES_PER_RECORD = 16384;

/** Largest msgpack payload: 16 MiB. */
export const MAX_VALUE_PAYLOAD = 16 * 1024 * 1024;

/** Largest PAGES payload: its header plus 16384 pages (64 MiB). */
export const MAX_PAGES_PAYLOAD = PAGES_HEADER_SIZE + MAX_PAGES_PER_RECORD * PAGE_SIZE;

/** Record types. All but PAGES carry one msgpack value. */
export const RECORD = {
  /** The task: ids, credentials, command line. */
  TASK: 1,
  /** CPU registers and FPU state. */
  CPU: 2,
  /** The memory mappings. */
  VMAS: 3,
  /** Open files. */
  FILES: 4,
  /** Signal dispositions, masks, pending signals. */
  SIGNALS: 5,
  /** mm fields: brk, stack, auxv. */
  MM: 6,
  /** IPv4 sockets, with their TCP repair state (a migration's; a checkpoint's are in NETWORK). */
  SOCKETS: 7,
  /** Per-thread state: the leader's scheduling and affinity, every other thread whole. */
  THREADS: 8,
  /** Interval timers (`setitimer`) and POSIX timers (`timer_create`). */
  TIMERS: 9,
  /**
   * IPv4 sockets carried by `ppm checkpoint --tcp-established`, with the
   * drop entries that hold their flows on the node until the restore.
   */
  NETWORK: 10,
  /**
   * After a migration's pre-copy rounds: how many pages the image leaves to
   * what the destination holds, and which of those it must drop.
   */
  PRECOPY: 11,
  /** Raw page data (not msgpack): see {@link PAGES_HEADER_SIZE}. */
  PAGES: 16,
  /** The last record: a map with at least the `records` and `pages` counts. */
  END: 0xffff,
} as const;

/** One of the known {@link RECORD} types. */
export type RecordType = typeof RECORD[keyof typeof RECORD];

const NAMES = new Map<number, string>(Object.entries(RECORD).map(([k, v]) => [v, k]));

/**
 * A record type's name for messages: "PAGES", or "type 0x1234" when unknown.
 *
 * @param type the record type number
 */
export function recordName(type: number): string {
  return NAMES.get(type) ?? `type 0x${type.toString(16)}`;
}

/** A msgpack record of any type but PAGES and END, known or not: the caller decides. */
export interface ValueRecord {
  /** Discriminant. */
  kind: "record";
  /** The record type, e.g. {@link RECORD}.TASK. */
  type: number;
  /** The record's position, counting from 0. */
  index: number;
  /** The stream offset of the record header. */
  offset: number;
  /** The decoded value; 64-bit integers are bigint. */
  value: unknown;
}

/** A block of pages. */
export interface PagesRecord {
  /** Discriminant. */
  kind: "pages";
  /** The record's position, counting from 0. */
  index: number;
  /** The stream offset of the record header. */
  offset: number;
  /** The address of the first page. */
  start: bigint;
  /** How many pages: 1..16384. */
  count: number;
  /** The page contents: count * PAGE_SIZE bytes. */
  data: Uint8Array;
}

/** The END record, whose counts the reader has checked. */
export interface EndRecord {
  /** Discriminant. */
  kind: "end";
  /** The record's position, counting from 0: the number of records before it. */
  index: number;
  /** The stream offset of the record header. */
  offset: number;
  /** The END map: `records`, `pages` and whatever the writer added. */
  value: Record<string, unknown>;
}

/** What the reader yields for each record. */
export type ImageRecord = ValueRecord | PagesRecord | EndRecord;

/** What the writer's `end()` reports. */
export interface ImageSummary {
  /** Records before END. */
  records: number;
  /** Pages in all PAGES records. */
  pages: number;
  /** Bytes in the whole stream, END included. */
  bytes: number;
}
