/**
 * From a loaded image to the memory plan that PPM_IOC_RESTORE reads
 * (kmod/uapi/ppm.h): the process's mappings and its page runs, in binary;
 * the stub's descriptors for mapped files. The stub's spec is spec.ts.
 *
 * @module
 */
import { encode } from "../../ffi/struct.ts";
import { close, O, open, PAGE_SIZE } from "../../ffi/libc.ts";
import { copyRange, pwriteAll } from "../../ffi/fds.ts";
import {
  PPM_ABI_VERSION,
  PPM_PLAN_MAGIC,
  PPM_RUN,
  PPM_VMA,
  ppmPlanHeader,
  ppmPlanRun,
  ppmPlanVma,
} from "../../ffi/uapi.ts";
import { MM_KEYS } from "../../ffi/device.ts";
import { VM } from "../dump/vma.ts";
import { writeAll } from "../host/write_all.ts";
import type { LoadedImage } from "../image/schema.ts";

/** Descriptors the stub keeps for itself start here (saved stdio, device, plan, mapped files). */
export function stubBase(img: LoadedImage): number {
  return Math.max(
    1000,
    ...img.files.fds.map((f) => f.fd + 1),
    ...[...img.sockets, ...img.network?.sockets ?? []].map((s) => s.fd + 1),
  );
}

/**
 * The stub's descriptor for mapped file `index`: after its saved standard
 * streams, the device, the plan and its error file (stub.c enum stub_fd).
 */
export function mapFd(base: number, index: number): number {
  return base + 6 + index;
}

/** Mapped files in plan order (index = position), exe included. */
export function mappedFiles(img: LoadedImage): { path: string; write: boolean }[] {
  const out: { path: string; write: boolean }[] = [];
  for (const v of img.vmas) {
    if (!v.path) continue;
    const write = v.kind === "shared-file" && (v.prot & 2) !== 0;
    const have = out.find((f) => f.path === v.path);
    if (have) have.write ||= write;
    else out.push({ path: v.path, write });
  }
  if (!out.some((f) => f.path === img.task.exe)) out.push({ path: img.task.exe, write: false });
  return out;
}

/** The vmas the plan recreates: all but vdso, vvar and vsyscall, which the kernel provides. */
export function planVmas(img: LoadedImage) {
  return img.vmas.filter((v) => !KERNEL_VMAS.includes(v.kind));
}

/**
 * Whether the restore may keep mapping `v` as the vessel holds it (its
 * memory there already, core/restore/vessel.ts): private anonymous memory,
 * read-write only, not the stack, inside one of the vessel's `rooms`.
 * The module checks the same (PPM_VMA_KEEP).
 */
export function keepable(
  v: { kind: string; path?: string; prot: number; vmFlags: bigint; start: bigint; end: bigint },
  rooms: readonly [bigint, bigint][],
): boolean {
  return (v.kind === "anon" || v.kind === "heap") && !v.path && v.prot === 3 &&
    (v.vmFlags & VM.GROWSDOWN) === 0n && rooms.some(([a, b]) => v.start >= a && v.end <= b);
}

/**
 * Writes a plan in the order its pieces become known: the page runs first,
 * as an image's PAGES records arrive (after room left for the header and the
 * mapping entries), then, once the whole image is read and checked, the
 * header and the mappings at the start. The bytes are those of a plan
 * written in one go, so the module reads it front to back as before.
 */
export class PlanWriter {
  #file: Deno.FsFile;
  #vmas = -1;
  #runs = 0;
  #end = 0;
  /** The run being written: the next one starts when it is done, `finish` waits for it. */
  #pending: Promise<void> = Promise.resolve();

  #path?: string;

  /**
   * @param file the plan file, empty, opened for writing; the caller closes it
   * @param path its path, for {@link addRunFrom} (which copies in the kernel)
   */
  constructor(file: Deno.FsFile, path?: string) {
    this.#file = file;
    this.#path = path;
  }

  /** Page runs written so far. */
  get runs(): number {
    return this.#runs;
  }

  /**
   * Appends one run. The first call leaves room for the header and one
   * entry per mapping the plan recreates (see {@link planVmas}) of `vmas`.
   * The run is written behind: this returns once the run before it is
   * written (a failure of that one throws here), so the caller reads the
   * next block meanwhile; `block.data` must not change until `finish`.
   */
  async addRun(
    block: { start: bigint; count: number; data: Uint8Array },
    vmas: { kind: string }[],
  ): Promise<void> {
    await this.#pending;
    await this.#leaveRoom(vmas);
    const head = encode(ppmPlanRun, { start: block.start, nr_pages: block.count });
    this.#end += ppmPlanRun.size + block.data.length;
    this.#runs++;
    this.#pending = (async () => {
      await writeAll(this.#file, head);
      await writeAll(this.#file, block.data);
    })();
    // Marked handled now; the next addRun or finish awaits it and throws its error.
    this.#pending.catch(() => {});
  }

  /** On the first run: room for the header and one entry per mapping the plan recreates. */
  async #leaveRoom(vmas: { kind: string }[]): Promise<void> {
    if (this.#vmas >= 0) return;
    this.#vmas = vmas.filter((v) => !KERNEL_VMAS.includes(v.kind)).length;
    this.#end = ppmPlanHeader.size + this.#vmas * ppmPlanVma.size;
    await this.#file.seek(this.#end, Deno.SeekMode.Start);
  }

  /**
   * Appends one run whose pages are elsewhere in the plan already, at byte
   * `at` (PPM_RUN_AT: a migration's pre-copy pages, put far past the runs
   * by its page stream). Only for a module with PPM_FEAT_RUN_AT.
   */
  async addRunAt(
    block: { start: bigint; count: number },
    at: number,
    vmas: { kind: string }[],
  ): Promise<void> {
    await this.#pending;
    await this.#leaveRoom(vmas);
    const head = new Uint8Array(ppmPlanRun.size + 8);
    head.set(encode(ppmPlanRun, { start: block.start, nr_pages: block.count, flags: PPM_RUN.AT }));
    new DataView(head.buffer).setBigUint64(ppmPlanRun.size, BigInt(at), true);
    this.#end += head.length;
    this.#runs++;
    this.#pending = writeAll(this.#file, head);
    this.#pending.catch(() => {});
  }

  /**
   * Appends one run of zeros (PPM_RUN_ZERO: no pages follow): pages a kept
   * mapping holds that the process no longer has. Only for a module with
   * PPM_FEAT_KEEP.
   */
  async addRunZero(
    block: { start: bigint; count: number },
    vmas: { kind: string }[],
  ): Promise<void> {
    await this.#pending;
    await this.#leaveRoom(vmas);
    const head = encode(ppmPlanRun, {
      start: block.start,
      nr_pages: block.count,
      flags: PPM_RUN.ZERO,
    });
    this.#end += head.length;
    this.#runs++;
    this.#pending = writeAll(this.#file, head);
    this.#pending.catch(() => {});
  }

  /**
   * Takes the runs another writer put in the plan (a migration's page
   * stream): room for `vmas` mapping entries, then `runs` runs up to byte
   * `end`. Only before any run of this writer's own; later ones follow them.
   */
  async adopt(vmas: number, runs: number, end: number): Promise<void> {
    await this.#pending;
    if (this.#vmas >= 0) throw new Error("the plan has runs already; the page stream's come first");
    this.#vmas = vmas;
    this.#runs = runs;
    this.#end = Math.max(end, ppmPlanHeader.size + vmas * ppmPlanVma.size);
    await this.#file.seek(this.#end, Deno.SeekMode.Start);
  }

  /**
   * Appends one run whose pages lie in another file (`fd`, the pieces at
   * byte offsets, in order): the kernel copies them (copy_file_range), so
   * they never pass through this process. As {@link addRun} otherwise.
   */
  async addRunFrom(
    block: { start: bigint; count: number },
    from: { fd: number; parts: { offset: number; pages: number }[] },
    vmas: { kind: string }[],
  ): Promise<void> {
    if (!this.#path) throw new Error("the plan's path is needed to copy runs into it");
    await this.#pending;
    if (this.#vmas < 0) {
      this.#vmas = vmas.filter((v) => !KERNEL_VMAS.includes(v.kind)).length;
      this.#end = ppmPlanHeader.size + this.#vmas * ppmPlanVma.size;
    }
    const at = this.#end;
    const head = encode(ppmPlanRun, { start: block.start, nr_pages: block.count });
    this.#end += ppmPlanRun.size + block.count * PAGE_SIZE;
    this.#runs++;
    const out = open(this.#path, O.WRONLY | O.CLOEXEC);
    try {
      pwriteAll(out, head, at);
      let off = at + head.length;
      for (const p of from.parts) {
        copyRange(from.fd, p.offset, out, off, p.pages * PAGE_SIZE);
        off += p.pages * PAGE_SIZE;
      }
    } finally {
      close(out);
    }
    await this.#file.seek(this.#end, Deno.SeekMode.Start);
  }

  /**
   * Writes the header and the mappings of the checked image `img` at the
   * start; returns the plan's size in bytes.
   *
   * @param img the image whose runs were added (its own `pages` are added first, if any)
   * @param base the stub's first descriptor (see {@link stubBase})
   * @param rooms the vessel's rooms, when the process is restored into one:
   *   the mappings it may keep are marked so (see {@link keepable})
   */
  async finish(img: LoadedImage, base: number, rooms?: [bigint, bigint][]): Promise<number> {
    for (const p of img.pages) await this.addRun(p, img.vmas);
    await this.#pending;
    const vmas = planVmas(img);
    if (this.#vmas < 0) this.#end = ppmPlanHeader.size + vmas.length * ppmPlanVma.size;
    else if (vmas.length !== this.#vmas) {
      throw new Error(
        `the plan left room for ${this.#vmas} mappings, the image has ${vmas.length}`,
      );
    }
    await this.#file.seek(0, Deno.SeekMode.Start);
    await writeAll(this.#file, planPrefix(img, vmas, this.#runs, base, rooms));
    return this.#end;
  }
}

/** Mappings the kernel provides by itself. */
const KERNEL_VMAS = ["vdso", "vvar", "vsyscall"];

/** The plan's header and mapping entries. */
function planPrefix(
  img: LoadedImage,
  vmas: ReturnType<typeof planVmas>,
  runs: number,
  base: number,
  rooms?: [bigint, bigint][],
): Uint8Array {
  const files = mappedFiles(img);
  const auxv = new Uint8Array(8 * 64);
  const adv = new DataView(auxv.buffer);
  img.mm.auxv.slice(0, 64).forEach((w, i) => adv.setBigUint64(i * 8, w, true));
  const hdr: Record<string, number | bigint | Uint8Array> = {
    magic: PPM_PLAN_MAGIC,
    abi_version: PPM_ABI_VERSION,
    nr_vmas: vmas.length,
    nr_runs: runs,
    vdso: img.mm.vdso ?? 0n,
    auxv,
    auxv_words: Math.min(64, img.mm.auxv.length),
    rseq: img.signals.rseq.addr,
    rseq_sig: img.signals.rseq.sig,
  };
  for (const k of MM_KEYS) hdr[k] = img.mm[k] ?? 0n;
  const out = new Uint8Array(ppmPlanHeader.size + vmas.length * ppmPlanVma.size);
  out.set(encode(ppmPlanHeader, hdr));
  vmas.forEach((v, i) => {
    let flags = 0;
    if (v.kind === "shared-file" || v.kind === "shared-anon") flags |= PPM_VMA.SHARED;
    if ((v.vmFlags & VM.GROWSDOWN) !== 0n) flags |= PPM_VMA.GROWSDOWN;
    if (rooms && keepable(v, rooms)) flags |= PPM_VMA.KEEP;
    const fi = v.path ? files.findIndex((f) => f.path === v.path) : -1;
    out.set(
      encode(ppmPlanVma, {
        start: v.start,
        end: v.end,
        pgoff: v.path ? v.pgoff : 0n,
        prot: v.prot,
        flags,
        fd: fi >= 0 ? mapFd(base, fi) : -1,
      }),
      ppmPlanHeader.size + i * ppmPlanVma.size,
    );
  });
  return out;
}
