/**
 * Pre-copy rounds: a migration copies the process's memory while it runs,
 * each round what it wrote since the last, so that the freeze sends only
 * the rest (the final dump, memory.ts, with the same {@link PrecopyState}).
 *
 * Dirty tracking is the kernel's soft-dirty bit (pagemap bit 55): writing
 * "4" to /proc/PID/clear_refs clears it on every page and write-protects
 * them, and the next write to a page sets it again; a mapping made since
 * shows all its pages dirty. A round:
 *
 * 1. stops every thread (ptrace, core/ptrace/group.ts) for as long as it
 *    takes to read the pagemap of every mapping and clear the bits: with
 *    the process running, a page written between the read and the clear
 *    would lose its bit and never be sent again;
 * 2. lets it run, and reads the pages it chose, as the process runs on:
 *    a page written meanwhile may be read torn, but it is dirty again and
 *    goes in a later round or in the final dump.
 *
 * The first round chooses every page the image would carry; each later one
 * the pages written since the last (and any not sent yet). A page that
 * cannot be read (unmapped meanwhile) is not held by the destination any
 * more: it is sent in the final dump if the process still has it.
 *
 * @module
 */
import { addressOf, PAGE_SIZE, processVmRead } from "../../ffi/libc.ts";
import { ThreadGroup } from "../ptrace/group.ts";
import { askRuns, emitRuns, type PageRun, type PageStats, type ReadChunk } from "./memory.ts";
import type { PrecopyState } from "./precopy_state.ts";
import { parseMaps } from "./proc.ts";
import { classifyVma, pageNeededHi, PM, PM_HI, VM, type VmaKind } from "./vma.ts";

/** What one round did. */
export interface RoundStats {
  /** Pages it chose (all carried pages in the first round; written since in the others). */
  dirty: number;
  /** Pages it sent (the chosen ones that do not hold only zeros). */
  sent: number;
  /** Microseconds the process was stopped (pagemap read, bits cleared). */
  stoppedUs: number;
  /** Microseconds the round took. */
  us: number;
}

const CHUNK_PAGES = 1024;

/** A mapping as a round sees it (from /proc/PID/maps: no module needed). */
interface RoundVma {
  start: bigint;
  end: bigint;
  kind: VmaKind;
}

/** The pages of one chunk a round chose. */
interface Chosen {
  base: bigint;
  take: boolean[];
}

let works: boolean | undefined;

/** A huge page: the probe's page must be alone in one (see softDirtyWorks). */
const HUGE = 2n * 1024n * 1024n;

/**
 * Whether soft-dirty tracking works on this kernel (CONFIG_MEM_SOFT_DIRTY,
 * and /proc/PID/clear_refs there): probed once on a page of this process,
 * which must show dirty after a write, clean after a clear, and dirty
 * after the next write. The page is in a 2 MiB stretch of a buffer of its
 * own: in a transparent huge page the bit is the whole huge page's, which
 * other writes of this process would set again (the probe then failed now
 * and then, depending on where its buffer landed).
 */
export function softDirtyWorks(): boolean {
  if (works !== undefined) return works;
  works = false;
  try {
    const buf = new Uint8Array(Number(HUGE) * 3);
    const base = addressOf(buf);
    const at = (base + HUGE - 1n) / HUGE * HUGE;
    const page = at / BigInt(PAGE_SIZE);
    const off = Number(at - base);
    const pagemap = Deno.openSync("/proc/self/pagemap", { read: true });
    try {
      const dirty = () => {
        const e = new Uint8Array(8);
        pagemap.seekSync(page * 8n, Deno.SeekMode.Start);
        if (pagemap.readSync(e) !== 8) return undefined;
        return (new DataView(e.buffer).getBigUint64(0, true) & PM.SOFT_DIRTY) !== 0n;
      };
      buf[off] = 1;
      const first = dirty();
      Deno.writeTextFileSync("/proc/self/clear_refs", "4");
      const cleared = dirty();
      buf[off] = 2;
      works = first === true && cleared === false && dirty() === true;
    } finally {
      pagemap.close();
    }
  } catch {
    works = false;
  }
  return works;
}

/** The process's mappings, classified from /proc/PID/maps ("s": shared). */
function mappings(pid: number): RoundVma[] {
  return parseMaps(Deno.readTextFileSync(`/proc/${pid}/maps`)).map((m) => ({
    start: m.start,
    end: m.end,
    kind: classifyVma(m, m.perms[3] === "s" ? VM.MAYSHARE | VM.SHARED : 0n),
  }));
}

/**
 * Reads the pagemap of every mapping (the process stopped) and chooses the
 * pages to send; notes the held pages that must go.
 */
function choose(pid: number, state: PrecopyState, copyAll: boolean): Chosen[] {
  const out: Chosen[] = [];
  const pagemap = Deno.openSync(`/proc/${pid}/pagemap`, { read: true });
  try {
    for (const v of mappings(pid)) {
      if (v.kind === "vdso" || v.kind === "vvar" || v.kind === "vsyscall") continue;
      const npages = Number((v.end - v.start) / BigInt(PAGE_SIZE));
      for (let first = 0; first < npages; first += CHUNK_PAGES) {
        const count = Math.min(CHUNK_PAGES, npages - first);
        const base = v.start + BigInt(first * PAGE_SIZE);
        const entries = new Uint8Array(count * 8);
        pagemap.seekSync((base / BigInt(PAGE_SIZE)) * 8n, Deno.SeekMode.Start);
        let got = 0;
        while (got < entries.length) {
          const n = pagemap.readSync(entries.subarray(got));
          if (!n) throw new Error(`short pagemap read at 0x${base.toString(16)}`);
          got += n;
        }
        // The high words only (the flags): no BigInt per page.
        const ev = new Uint32Array(entries.buffer);
        const idx0 = Number(base / BigInt(PAGE_SIZE));
        const take: boolean[] = new Array(count);
        let any = false;
        for (let i = 0; i < count; i++) {
          const hi = ev[2 * i + 1];
          const need = pageNeededHi(v.kind, hi, copyAll);
          const held = state.sent.has(idx0 + i);
          if (!need && held) state.drop(idx0 + i);
          const t = need && (!held || (hi & PM_HI.SOFT_DIRTY) !== 0);
          take[i] = t;
          any ||= t;
        }
        if (any) out.push({ base, take });
      }
    }
  } finally {
    pagemap.close();
  }
  return out;
}

/**
 * Where a round's pages go: runs read here, to `emit`; or a page stream
 * (core/transport/pagestream.ts) that reads and sends them itself.
 */
export type RoundOut =
  | { emit: (run: PageRun) => Promise<void> }
  | { stream: HeldOut };

/** A page stream's pre-copy side (core/transport/pagestream.ts PageSender.held). */
export interface HeldOut {
  /** Reads and sends `pages` pages from `start` as the process runs. */
  held(start: bigint, pages: number): Promise<{ unreadable: boolean; zeros: boolean[] }>;
}

/**
 * One pre-copy round of process `pid` (see the module's text): the pages
 * it sends go to `out`; `state` is kept up to date. The process runs on
 * whatever happens (it is stopped only while its pagemap is read).
 *
 * @throws when it cannot be stopped, or its pagemap or clear_refs cannot be
 *   used (it ended, say): the migration then fails with it running
 */
export async function precopyRound(
  pid: number,
  state: PrecopyState,
  out: RoundOut,
  copyAll = false,
): Promise<RoundStats> {
  const t0 = performance.now();
  const group = ThreadGroup.freeze(pid);
  let chosen: Chosen[];
  try {
    chosen = choose(pid, state, copyAll);
    Deno.writeTextFileSync(`/proc/${pid}/clear_refs`, "4");
  } finally {
    group.resume();
  }
  const stoppedUs = Math.round((performance.now() - t0) * 1000);
  const st: PageStats = { dumped: 0, file: 0, zero: 0, absent: 0, precopied: 0 };
  const dirty = chosen.reduce((n, c) => n + c.take.filter(Boolean).length, 0);
  if ("stream" in out) await streamRound(chosen, state, out.stream, st);
  else await readRound(pid, chosen, state, out.emit, st);
  return { dirty, sent: st.dumped, stoppedUs, us: Math.round((performance.now() - t0) * 1000) };
}

/** A round's chosen pages, read here and emitted as runs. */
async function readRound(
  pid: number,
  chosen: Chosen[],
  state: PrecopyState,
  emit: (run: PageRun) => Promise<void>,
  st: PageStats,
): Promise<void> {
  const mem = await Deno.open(`/proc/${pid}/mem`, { read: true });
  try {
    for (const c of chosen) {
      const idx0 = Number(c.base / BigInt(PAGE_SIZE));
      const data = new Uint8Array(c.take.length * PAGE_SIZE);
      if (!(await readAll(pid, mem, c.base, data))) {
        // Gone meanwhile (unmapped, say): what the destination holds of it must not be used.
        c.take.forEach((t, i) => t && state.drop(idx0 + i));
        continue;
      }
      const chunk: ReadChunk = { st, base: c.base, need: c.take, data };
      await emitRuns(chunk, emit, state);
    }
  } finally {
    mem.close();
  }
}

/**
 * A round's chosen pages, asked of a page stream run by run; its answers
 * say which held zeros (the destination must not keep an older copy) and
 * which could not be read (unmapped meanwhile: likewise).
 */
async function streamRound(
  chosen: Chosen[],
  state: PrecopyState,
  out: HeldOut,
  st: PageStats,
): Promise<void> {
  const ask = (start: bigint, pages: number) =>
    out.held(start, pages).then(({ unreadable, zeros }) => {
      const first = Number(start / BigInt(PAGE_SIZE));
      zeros.forEach((zero, i) => {
        if (unreadable || zero) {
          if (zero && !unreadable) st.zero++;
          state.drop(first + i);
        } else {
          st.dumped++;
          state.keep(first + i);
        }
      });
    });
  await askRuns(
    chosen.map((c) => ({ base: c.base, need: c.take })),
    (_c, start, pages) => ask(start, pages),
  );
}

/** Reads `data.length` bytes of the running process at `addr`; false when it cannot. */
async function readAll(
  pid: number,
  mem: Deno.FsFile,
  addr: bigint,
  data: Uint8Array<ArrayBuffer>,
): Promise<boolean> {
  try {
    let got = Math.max(0, await processVmRead(pid, addr, data));
    if (got < data.length) await mem.seek(addr + BigInt(got), Deno.SeekMode.Start);
    while (got < data.length) {
      const n = await mem.read(data.subarray(got));
      if (!n) return false;
      got += n;
    }
    return true;
  } catch {
    return false;
  }
}
