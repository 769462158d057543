/**
 * Reading the pages a checkpoint carries, from /proc/PID/pagemap (which
 * pages exist and whether they are still the file's), then with
 * process_vm_readv (one copy), or /proc/PID/mem for what it cannot read.
 *
 * @module
 */
import { PAGE_SIZE, processVmRead } from "../../ffi/libc.ts";
import { readAhead } from "../host/ahead.ts";
import { isZeroPage, pageNeededHi, PM_HI, type VmaRecord } from "./vma.ts";
import type { PrecopyState } from "./precopy_state.ts";

/** Per-mapping page counts. */
export interface PageStats {
  /** Pages written to the image. */
  dumped: number;
  /** Pages left out because they are still the file's (or live in a shared file). */
  file: number;
  /** Pages left out because they hold only zeros. */
  zero: number;
  /** Pages never touched (no page table entry). */
  absent: number;
  /** Pages left out because the destination holds them from a pre-copy round, unchanged since. */
  precopied: number;
}

/** A run of pages to write: start address and the bytes. */
export interface PageRun {
  /** Address of the first page. */
  start: bigint;
  /** Page data, a multiple of PAGE_SIZE bytes. */
  data: Uint8Array;
}

const CHUNK_PAGES = 1024;

/** Pagemap chunks read before the scan lets the event loop run (256 MiB of mappings). */
const YIELD_CHUNKS = 64;

async function preadFull(f: Deno.FsFile, pos: bigint, buf: Uint8Array): Promise<void> {
  await f.seek(pos, Deno.SeekMode.Start);
  let off = 0;
  while (off < buf.length) {
    const n = await f.read(buf.subarray(off));
    if (n === null || n === 0) {
      throw new Error(`short read at 0x${(pos + BigInt(off)).toString(16)}`);
    }
    off += n;
  }
}

/**
 * As preadFull, without leaving the thread: a pagemap chunk is 8 KiB the
 * kernel makes at once, and a freeze is no time to wait for other work on
 * the event loop between chunks.
 */
function preadFullSync(f: Deno.FsFile, pos: bigint, buf: Uint8Array): void {
  f.seekSync(pos, Deno.SeekMode.Start);
  let off = 0;
  while (off < buf.length) {
    const n = f.readSync(buf.subarray(off));
    if (n === null || n === 0) {
      throw new Error(`short read at 0x${(pos + BigInt(off)).toString(16)}`);
    }
    off += n;
  }
}

/** One chunk of a mapping whose pages were read: which of them must be carried, and the bytes. */
export interface ReadChunk {
  /** The mapping's counts. */
  st: PageStats;
  /** Address of the chunk's first page. */
  base: bigint;
  /** Which pages must be carried (before the zero test). */
  need: boolean[];
  /** The chunk's bytes, `need.length` pages. */
  data: Uint8Array;
}

/** One chunk of a mapping as the pagemap tells it, before its bytes are read. */
export interface MapChunk {
  /** The mapping's counts. */
  st: PageStats;
  /** Address of the chunk's first page. */
  base: bigint;
  /** Which pages must be carried (before the zero test). */
  need: boolean[];
}

/** The chunks of `vmas` that hold pages to carry, in order; counts absent and file pages. */
async function* mapChunks(
  pagemap: Deno.FsFile,
  vmas: VmaRecord[],
  stats: PageStats[],
  copyAll: boolean,
  pre?: PrecopyState,
): AsyncGenerator<MapChunk> {
  const pageIndex = (addr: bigint) => Number(addr / BigInt(PAGE_SIZE));
  let chunks = 0;
  for (const v of vmas) {
    const st: PageStats = { dumped: 0, file: 0, zero: 0, absent: 0, precopied: 0 };
    stats.push(st);
    const npages = Number((v.end - v.start) / BigInt(PAGE_SIZE));
    if (v.kind === "vdso" || v.kind === "vvar" || v.kind === "vsyscall") continue;
    for (let first = 0; first < npages; first += CHUNK_PAGES) {
      const count = Math.min(CHUNK_PAGES, npages - first);
      const base = v.start + BigInt(first * PAGE_SIZE);
      const entries = new Uint8Array(count * 8);
      // The reads are synchronous; a large mapping still lets the agent's other work run now and then.
      if (++chunks % YIELD_CHUNKS === 0) await new Promise((r) => setTimeout(r, 0));
      preadFullSync(pagemap, (base / BigInt(PAGE_SIZE)) * 8n, entries);
      // The high words only (the flags; x86-64 is little-endian): no BigInt per page.
      const ev = new Uint32Array(entries.buffer);
      const idx0 = pageIndex(base);
      const need: boolean[] = new Array(count);
      let any = false;
      for (let i = 0; i < count; i++) {
        const hi = ev[2 * i + 1];
        const n = pageNeededHi(v.kind, hi, copyAll);
        if (pre?.sent.has(idx0 + i)) {
          // The destination holds it: not needed any more, it must go; unchanged, it stays.
          if (!n) pre.drop(idx0 + i);
          else if ((hi & PM_HI.SOFT_DIRTY) === 0) {
            st.precopied++;
            need[i] = false;
            continue;
          }
        }
        need[i] = n;
        if (n) any = true;
        else if (hi === 0 && ev[2 * i] === 0) st.absent++;
        else st.file++;
      }
      if (any) yield { st, base, need };
    }
  }
}

/** Reads the chunks of `vmas` that hold pages to carry, in order, with their bytes. */
async function* readChunks(
  pid: number,
  pagemap: Deno.FsFile,
  mem: Deno.FsFile,
  vmas: VmaRecord[],
  stats: PageStats[],
  copyAll: boolean,
  pre?: PrecopyState,
): AsyncGenerator<ReadChunk> {
  for await (const c of mapChunks(pagemap, vmas, stats, copyAll, pre)) {
    const data = new Uint8Array(c.need.length * PAGE_SIZE);
    // /proc/PID/mem reads through FOLL_FORCE what process_vm_readv cannot (no read permission).
    const got = Math.max(0, await processVmRead(pid, c.base, data));
    if (got < data.length) await preadFull(mem, c.base + BigInt(got), data.subarray(got));
    yield { ...c, data };
  }
}

/**
 * Emits a chunk's runs of consecutive non-zero pages that must be carried;
 * counts them. With `pre`, a page the destination holds from a pre-copy
 * round that holds only zeros now must go there, and one emitted is its
 * newest copy.
 */
export async function emitRuns(
  c: ReadChunk,
  emit: (run: PageRun) => void | Promise<void>,
  pre?: PrecopyState,
) {
  let runStart = -1;
  const flush = async (end: number) => {
    if (runStart < 0) return;
    // A view: `c.data` is this chunk's own buffer, never reused after the chunk.
    await emit({
      start: c.base + BigInt(runStart * PAGE_SIZE),
      data: c.data.subarray(runStart * PAGE_SIZE, end * PAGE_SIZE),
    });
    runStart = -1;
  };
  const first = Number(c.base / BigInt(PAGE_SIZE));
  for (let i = 0; i < c.need.length; i++) {
    const keep = c.need[i] && !isZeroPage(c.data.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE));
    if (c.need[i] && !keep) {
      c.st.zero++;
      pre?.drop(first + i);
    }
    if (keep) {
      c.st.dumped++;
      pre?.keep(first + i);
      if (runStart < 0) runStart = i;
    } else await flush(i);
  }
  await flush(c.need.length);
}

/**
 * Reads the pages of `vmas` that must be carried, calling `emit` with runs of
 * consecutive non-zero pages; returns the counts per mapping. `copyAll`
 * carries the resident pages of private file mappings too (see pageNeeded).
 * The next chunk is read (on a worker thread) while the runs of the current
 * one are emitted, so reading overlaps the checksum, the frame tags and the
 * sending. With `pre` (a migration after pre-copy rounds), a page the
 * destination holds and the process has not written since (soft-dirty
 * clear) is left out, and what it holds that must go is noted there.
 */
export async function dumpPages(
  pid: number,
  vmas: VmaRecord[],
  emit: (run: PageRun) => void | Promise<void>,
  copyAll = false,
  pre?: PrecopyState,
): Promise<PageStats[]> {
  const pagemap = await Deno.open(`/proc/${pid}/pagemap`, { read: true });
  const mem = await Deno.open(`/proc/${pid}/mem`, { read: true });
  const stats: PageStats[] = [];
  try {
    for await (const c of readAhead(readChunks(pid, pagemap, mem, vmas, stats, copyAll, pre))) {
      await emitRuns(c, emit, pre);
    }
  } finally {
    pagemap.close();
    mem.close();
  }
  return stats;
}

/** What reads and sends pages natively (core/transport/pagestream.ts PageSender). */
export interface PageStreamOut {
  /**
   * Reads `pages` pages from `start`, sends those with data; resolves with
   * which held only zeros (not sent), one flag per page.
   */
  request(start: bigint, pages: number): Promise<boolean[]>;
}

/** Requests in flight at once on a page stream. */
const STREAM_DEPTH = 8;

/**
 * As {@link dumpPages}, but the bytes never come here: each chunk's runs of
 * pages to carry are asked of `out`, which reads, tests for zeros and sends
 * them itself; its answers do the counting (and, with `pre`, what the
 * destination holds).
 */
export async function streamPages(
  pid: number,
  vmas: VmaRecord[],
  out: PageStreamOut,
  copyAll = false,
  pre?: PrecopyState,
): Promise<PageStats[]> {
  const pagemap = await Deno.open(`/proc/${pid}/pagemap`, { read: true });
  const stats: PageStats[] = [];
  const ask = (st: PageStats, start: bigint, pages: number) =>
    out.request(start, pages).then((zeros) => {
      const first = Number(start / BigInt(PAGE_SIZE));
      zeros.forEach((zero, i) => {
        if (zero) {
          st.zero++;
          pre?.drop(first + i);
        } else {
          st.dumped++;
          pre?.keep(first + i);
        }
      });
    });
  try {
    await askRuns(
      mapChunks(pagemap, vmas, stats, copyAll, pre),
      (c, start, pages) => ask(c.st, start, pages),
    );
  } finally {
    pagemap.close();
  }
  return stats;
}

/**
 * Asks `ask` for each run of consecutive pages a chunk marks in `take`, in
 * order, at most {@link STREAM_DEPTH} at once (a page stream answers in
 * order); resolves once every answer came. Used by the freeze
 * ({@link streamPages}) and by pre-copy rounds (core/dump/precopy.ts).
 */
export async function askRuns<C extends { base: bigint; need: boolean[] }>(
  chunks: AsyncIterable<C> | Iterable<C>,
  ask: (chunk: C, start: bigint, pages: number) => Promise<void>,
): Promise<void> {
  const inFlight: Promise<void>[] = [];
  try {
    for await (const c of chunks) {
      let runStart = -1;
      for (let i = 0; i <= c.need.length; i++) {
        if (i < c.need.length && c.need[i]) {
          if (runStart < 0) runStart = i;
          continue;
        }
        if (runStart < 0) continue;
        inFlight.push(ask(c, c.base + BigInt(runStart * PAGE_SIZE), i - runStart));
        runStart = -1;
        if (inFlight.length >= STREAM_DEPTH) await inFlight.shift();
      }
    }
    await Promise.all(inFlight);
  } finally {
    await Promise.allSettled(inFlight);
  }
}
