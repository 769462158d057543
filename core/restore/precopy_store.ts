/**
 * A migration's destination during pre-copy rounds (core/dump/precopy.ts):
 * the pages the rounds send, kept in memory (a file under /dev/shm, one
 * slot per page, a page sent again overwriting its slot) until the image
 * comes; then the pages the image leaves to them (its PRECOPY record) are
 * added to the restore plan: every page held, inside one of the image's
 * mappings, that the image neither carries nor says to drop.
 *
 * The rounds' stream (STREAM.PRECOPY) is runs of pages: a 16-byte header
 * (u64 address, u32 pages, u32 zero, little-endian) and the pages. Its
 * bytes are authenticated by the connection; its values are still checked
 * as any input: a run inside user space, 1..16384 pages, page-aligned, and
 * no more pages held than the offer allows.
 *
 * @module
 */
import { close, O, open, PAGE_SIZE } from "../../ffi/libc.ts";
import { ChunkReader } from "../image/chunks.ts";
import { MAX_PAGES_PER_RECORD, PAGES_HEADER_SIZE } from "../image/format.ts";
import type { LoadedImage } from "../image/schema.ts";
import { PpmError } from "../errors.ts";
import type { PlanWriter } from "./memory_plan.ts";
import { SlotMap } from "./slot_map.ts";

/** User space ends at 2^47. */
const TASK_SIZE = 1n << 47n;

/** Mappings whose pages are never in a plan (the kernel's own). */
const KERNEL_KINDS = ["vdso", "vvar", "vsyscall"];

/** A malformed pre-copy stream. */
function bad(why: string): PpmError {
  return new PpmError("malformed pre-copy stream", why, "");
}

/** The pages of pre-copy rounds, held until the image comes. */
export class PrecopyStore {
  readonly #dir: string | undefined;
  readonly #path: string;
  readonly #file: Deno.FsFile | undefined;
  /** The pages are in the restore plan itself (see {@link inPlan}). */
  readonly #inPlan: boolean;
  /** Slot (in pages) of each page held, by page index. */
  readonly #slots = new SlotMap();
  readonly #maxPages: number;
  /** Pages received, sent again included. */
  received = 0;
  /** Its pages come on a page stream (stream 5 must stay empty). */
  #streamed = false;

  private constructor(
    dir: string | undefined,
    file: Deno.FsFile | undefined,
    maxPages: number,
    path = `${dir}/pages`,
  ) {
    this.#dir = dir;
    this.#path = path;
    this.#file = file;
    this.#maxPages = maxPages;
    this.#inPlan = file === undefined;
    this.#streamed = this.#inPlan;
  }

  /**
   * A store whose pages a page stream puts in the restore plan at `path`
   * itself, far past its runs: the plan then refers to them where they are
   * (PlanWriter.addRunAt, a module with PPM_FEAT_RUN_AT), and nothing is
   * copied at the freeze.
   */
  static inPlan(path: string, maxPages: number): PrecopyStore {
    return new PrecopyStore(undefined, undefined, maxPages, path);
  }

  /** A new store in memory (/dev/shm, else the temporary directory) holding at most `maxPages`. */
  static async create(maxPages: number): Promise<PrecopyStore> {
    const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "ppm-precopy-" }).catch(() =>
      Deno.makeTempDir({ prefix: "ppm-precopy-" })
    );
    const file = await Deno.open(`${dir}/pages`, {
      read: true,
      write: true,
      createNew: true,
      mode: 0o600,
    });
    return new PrecopyStore(dir, file, maxPages);
  }

  /** Pages held. */
  get size(): number {
    return this.#slots.size;
  }

  /** The file the pages are in (a page stream appends to it: see {@link hold}). */
  get path(): string {
    return this.#path;
  }

  /**
   * Notes a run a page stream (core/transport/pagestream.ts) appended to
   * the file at byte `offset`: those pages are held there now, a page sent
   * again in its newest copy. The helper checked the run and bounded the
   * file.
   */
  hold(start: bigint, count: number, offset: number): void {
    const first = Number(start / BigInt(PAGE_SIZE));
    const slot = offset / PAGE_SIZE;
    for (let i = 0; i < count; i++) this.#slots.set(first + i, slot + i);
    this.received += count;
    this.#streamed = true;
  }

  /**
   * Reads the rounds' stream to its end, holding its pages; throws when it
   * is malformed. With `streamed` (the rounds go on a page stream), the
   * stream must be empty.
   */
  async take(source: AsyncIterable<Uint8Array>, streamed = false): Promise<void> {
    const r = new ChunkReader(source);
    for (;;) {
      const h = await r.read(PAGES_HEADER_SIZE);
      if (h.length === 0) return;
      if (streamed || this.#streamed) {
        throw bad("pre-copy pages came on the link, and the page stream was agreed");
      }
      if (h.length < PAGES_HEADER_SIZE) throw bad("a run header is cut short");
      const v = new DataView(h.buffer, h.byteOffset, h.byteLength);
      const start = v.getBigUint64(0, true), count = v.getUint32(8, true);
      if (v.getUint32(12, true) !== 0) throw bad("a run header's reserved field is not 0");
      if (count < 1 || count > MAX_PAGES_PER_RECORD) {
        throw bad(`a run of ${count} pages (1..${MAX_PAGES_PER_RECORD})`);
      }
      if (start % BigInt(PAGE_SIZE) !== 0n || start + BigInt(count * PAGE_SIZE) > TASK_SIZE) {
        throw bad(`a run at 0x${start.toString(16)} of ${count} pages is outside user space`);
      }
      const data = await r.read(count * PAGE_SIZE);
      if (data.length < count * PAGE_SIZE) throw bad("a run's pages are cut short");
      await this.#put(Number(start / BigInt(PAGE_SIZE)), data);
    }
  }

  async #put(first: number, data: Uint8Array): Promise<void> {
    const count = data.length / PAGE_SIZE;
    const slots: number[] = [];
    for (let i = 0; i < count; i++) {
      let slot = this.#slots.get(first + i);
      if (slot === undefined) {
        if (this.#slots.size >= this.#maxPages) {
          throw bad(`more than the ${this.#maxPages} pages the offer allows`);
        }
        slot = this.#slots.size;
        this.#slots.set(first + i, slot);
      }
      slots.push(slot);
    }
    // Consecutive slots (new pages, or pages sent again in the order they were first) in one write.
    for (let i = 0; i < count;) {
      let n = 1;
      while (i + n < count && slots[i + n] === slots[i] + n) n++;
      const file = this.#file!;
      await file.seek(slots[i] * PAGE_SIZE, Deno.SeekMode.Start);
      const part = data.subarray(i * PAGE_SIZE, (i + n) * PAGE_SIZE);
      for (let off = 0; off < part.length;) off += await file.write(part.subarray(off));
      i += n;
    }
    this.received += count;
  }

  /**
   * Adds to `writer` the pages held that the image `img` leaves to them:
   * inside one of its mappings, not among `carried` (page indices of the
   * pages it carries), not among its drops. Returns how many. Throws when
   * the image relies on more pages than that (`held` in its record).
   */
  async addTo(writer: PlanWriter, img: LoadedImage, carried: Set<number>): Promise<number> {
    const rec = img.precopy;
    if (!rec) return 0;
    const runs = this.#wantedRuns(img, carried, rec.drops);
    const added = runs.reduce((n, r) => n + r.count, 0);
    if (added !== rec.held) {
      throw new PpmError(
        "cannot restore",
        `the image leaves ${rec.held} pages to the pre-copy rounds, and this node holds ${added} of them`,
        "migrate it again (without pre-copy: --precopy-rounds 0)",
      );
    }
    const src = this.#inPlan ? -1 : open(this.#path, O.RDONLY | O.CLOEXEC);
    try {
      for (const r of runs) {
        const start = BigInt(r.first) * BigInt(PAGE_SIZE);
        if (this.#inPlan) {
          // Each stretch where it is in the plan: a run of its own that points there.
          let page = start;
          for (const p of r.parts) {
            await writer.addRunAt({ start: page, count: p.pages }, p.offset, img.vmas);
            page += BigInt(p.pages * PAGE_SIZE);
          }
        } else {
          await writer.addRunFrom({ start, count: r.count }, { fd: src, parts: r.parts }, img.vmas);
        }
      }
    } finally {
      if (src >= 0) close(src);
    }
    return added;
  }

  /**
   * The pages held that the image leaves to them, as runs of consecutive
   * pages inside one of its mappings (at most MAX_PAGES_PER_RECORD each),
   * each in pieces of consecutive slots (pages sent together): one pass
   * over the pages held, ascending, with the mappings and the drops (both
   * sorted) followed alongside.
   */
  #wantedRuns(
    img: LoadedImage,
    carried: Set<number>,
    drops: [number, number][],
  ): { first: number; count: number; parts: { offset: number; pages: number }[] }[] {
    const vmas = img.vmas.filter((v) => !KERNEL_KINDS.includes(v.kind))
      .map((v) => ({ first: Number(v.start) / PAGE_SIZE, end: Number(v.end) / PAGE_SIZE }))
      .sort((a, b) => a.first - b.first);
    const out: { first: number; count: number; parts: { offset: number; pages: number }[] }[] = [];
    let v = 0, d = 0;
    let cur: (typeof out)[number] | undefined;
    let curVma = -1, lastSlot = -2;
    this.#slots.forEach((idx, slot) => {
      while (d < drops.length && drops[d][0] + drops[d][1] <= idx) d++;
      if (d < drops.length && drops[d][0] <= idx) return;
      if (carried.has(idx)) return;
      while (v < vmas.length && vmas[v].end <= idx) v++;
      // Outside every mapping now (unmapped since): left out.
      if (v >= vmas.length || vmas[v].first > idx) return;
      if (
        !cur || cur.first + cur.count !== idx || curVma !== v ||
        cur.count >= MAX_PAGES_PER_RECORD
      ) {
        cur = { first: idx, count: 0, parts: [] };
        out.push(cur);
        curVma = v;
        lastSlot = -2;
      }
      cur.count++;
      if (slot === lastSlot + 1) cur.parts[cur.parts.length - 1].pages++;
      else cur.parts.push({ offset: slot * PAGE_SIZE, pages: 1 });
      lastSlot = slot;
    });
    return out;
  }

  /** Removes the store. */
  async remove(): Promise<void> {
    if (!this.#dir) return; // in the plan: it goes with the plan
    try {
      this.#file?.close();
    } catch { /* closed */ }
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}
