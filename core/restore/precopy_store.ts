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
import { close, O, open, PAGE_SIZE, processVmRead } from "../../ffi/libc.ts";
import { ChunkReader } from "../image/chunks.ts";
import { MAX_PAGES_PER_RECORD, PAGES_HEADER_SIZE } from "../image/format.ts";
import type { LoadedImage } from "../image/schema.ts";
import { PpmError } from "../errors.ts";
import { keepable, type PlanWriter } from "./memory_plan.ts";
import { SlotMap } from "./slot_map.ts";

/** User space ends at 2^47. */
const TASK_SIZE = 1n << 47n;

/** Mappings whose pages are never in a plan (the kernel's own). */
const KERNEL_KINDS = ["vdso", "vvar", "vsyscall"];

/** A malformed pre-copy stream. */
function bad(why: string): PpmError {
  return new PpmError("malformed pre-copy stream", why, "");
}

/** The slot of a page held in the vessel, where it belongs (see {@link PrecopyStore.place}). */
const PLACED = 0xfffffffe;

/** The vessel the pages placed are in (core/restore/vessel.ts). */
export interface PlacedIn {
  /** Its PID. */
  pid: number;
  /** Its rooms: the mappings inside one are kept (memory_plan.ts keepable). */
  rooms: [bigint, bigint][];
}

/** A run of pages to plan, in pieces of consecutive slots. */
interface WantedRun {
  first: number;
  count: number;
  parts: { offset: number; pages: number }[];
}

/** The pages held, sorted out against the image (PrecopyStore.addTo). */
interface Sorted {
  /** Held in the store: runs to plan. */
  runs: WantedRun[];
  /** Held in the vessel, in a mapping the restore does not keep: read back into the plan. */
  readBack: { first: number; count: number }[];
  /** Held in the vessel, in a kept mapping, that must go: zeros. */
  zeros: { first: number; count: number }[];
  /** Held in the vessel, in a kept mapping, and left to it: nothing to do. */
  inPlace: number;
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
   * Notes a run a page stream wrote into the vessel, where it belongs
   * (core/restore/vessel.ts): those pages are held there now, in their
   * newest copy (an older one in the store no longer counts).
   */
  place(start: bigint, count: number): void {
    const first = Number(start / BigInt(PAGE_SIZE));
    for (let i = 0; i < count; i++) this.#slots.set(first + i, PLACED);
    this.received += count;
    this.placed += count;
    this.#streamed = true;
  }

  /** Pages placed in the vessel (sent again included). */
  placed = 0;

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
   * pages it carries), not among its drops. Pages held in the vessel
   * (`vessel`) need nothing where the restore keeps their mapping, are
   * read back into the plan where it does not, and become zeros where the
   * image drops them. Returns how many it relies on; throws when the image
   * relies on more pages than that (`held` in its record).
   */
  async addTo(
    writer: PlanWriter,
    img: LoadedImage,
    carried: Set<number>,
    vessel?: PlacedIn,
  ): Promise<{ added: number; inPlace: number }> {
    const rec = img.precopy;
    if (!rec) return { added: 0, inPlace: 0 };
    const sorted = this.#sort(img, carried, rec.drops, vessel?.rooms ?? []);
    const added = sorted.runs.reduce((n, r) => n + r.count, 0) +
      sorted.readBack.reduce((n, r) => n + r.count, 0) + sorted.inPlace;
    if (added !== rec.held) {
      throw new PpmError(
        "cannot restore",
        `the image leaves ${rec.held} pages to the pre-copy rounds, and this node holds ${added} of them`,
        "migrate it again (without pre-copy: --precopy-rounds 0)",
      );
    }
    const src = this.#inPlan ? -1 : open(this.#path, O.RDONLY | O.CLOEXEC);
    try {
      for (const r of sorted.runs) {
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
    for (const z of sorted.zeros) {
      await writer.addRunZero(
        { start: BigInt(z.first) * BigInt(PAGE_SIZE), count: z.count },
        img.vmas,
      );
    }
    for (const r of sorted.readBack) {
      const start = BigInt(r.first) * BigInt(PAGE_SIZE);
      const data = new Uint8Array(r.count * PAGE_SIZE);
      if ((await processVmRead(vessel!.pid, start, data)) !== data.length) {
        throw new PpmError(
          "cannot restore",
          `the pages placed at 0x${start.toString(16)} cannot be read back from the vessel`,
          "migrate it again (without pre-copy: --precopy-rounds 0)",
        );
      }
      await writer.addRun({ start, count: r.count, data }, img.vmas);
    }
    return { added, inPlace: sorted.inPlace };
  }

  /**
   * One pass over the pages held, ascending, with the image's mappings and
   * its drops (both sorted) followed alongside: what to plan, read back
   * or clear, as runs of consecutive pages inside one mapping (at most
   * MAX_PAGES_PER_RECORD each), store runs in pieces of consecutive slots
   * (pages sent together).
   */
  #sort(
    img: LoadedImage,
    carried: Set<number>,
    drops: [number, number][],
    rooms: [bigint, bigint][],
  ): Sorted {
    const vmas = img.vmas.filter((v) => !KERNEL_KINDS.includes(v.kind))
      .map((v) => ({
        first: Number(v.start) / PAGE_SIZE,
        end: Number(v.end) / PAGE_SIZE,
        kept: rooms.length > 0 && keepable(v, rooms),
      }))
      .sort((a, b) => a.first - b.first);
    const out: Sorted = { runs: [], readBack: [], zeros: [], inPlace: 0 };
    // Extends the last run of `list` with page `idx` of mapping `vma`, or starts one.
    const extend = <R extends { first: number; count: number; vma?: number }>(
      list: R[],
      idx: number,
      vma: number,
      make: () => R,
    ): R => {
      const last = list.at(-1);
      if (
        last && last.first + last.count === idx && last.vma === vma &&
        last.count < MAX_PAGES_PER_RECORD
      ) {
        last.count++;
        return last;
      }
      const r = make();
      r.vma = vma;
      list.push(r);
      return r;
    };
    let v = 0, d = 0, lastSlot = -2;
    this.#slots.forEach((idx, slot) => {
      while (d < drops.length && drops[d][0] + drops[d][1] <= idx) d++;
      const dropped = d < drops.length && drops[d][0] <= idx;
      while (v < vmas.length && vmas[v].end <= idx) v++;
      // Outside every mapping now (unmapped since): left out (the restore unmaps it).
      if (v >= vmas.length || vmas[v].first > idx) return;
      if (slot === PLACED) {
        if (!vmas[v].kept) {
          if (!dropped && !carried.has(idx)) {
            extend(out.readBack, idx, v, () => ({ first: idx, count: 1 } as WantedRun));
          }
        } else if (dropped) {
          extend(out.zeros, idx, v, () => ({ first: idx, count: 1 } as WantedRun));
        } else if (!carried.has(idx)) out.inPlace++;
        return;
      }
      if (dropped || carried.has(idx)) return;
      const before = out.runs.at(-1);
      const r = extend(out.runs, idx, v, () => ({ first: idx, count: 1, parts: [] } as WantedRun));
      if (r !== before || r.parts.length === 0) {
        // A new run: its count starts at 1 (made so), its first piece here.
        r.parts.push({ offset: slot * PAGE_SIZE, pages: 1 });
      } else if (slot === lastSlot + 1) r.parts[r.parts.length - 1].pages++;
      else r.parts.push({ offset: slot * PAGE_SIZE, pages: 1 });
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
