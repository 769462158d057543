/**
 * What each mapping is, and which of its pages a checkpoint must carry: the
 * thesis's optimized total copy. Pages of a private file mapping that are
 * still the file's, pages of shared file mappings, and zero or never-touched
 * pages are not sent; only what the process wrote is.
 *
 * @module
 */
import type { MapsEntry } from "./proc.ts";

/** VM_* flags (include/linux/mm.h). */
export const VM = {
  READ: 0x1n,
  WRITE: 0x2n,
  EXEC: 0x4n,
  SHARED: 0x8n,
  MAYSHARE: 0x80n,
  GROWSDOWN: 0x100n,
  PFNMAP: 0x400n,
  LOCKED: 0x2000n,
  IO: 0x4000n,
  DONTEXPAND: 0x40000n,
  HUGETLB: 0x400000n,
} as const;

/** PROT_* bits. */
export const PROT = { READ: 1, WRITE: 2, EXEC: 4 } as const;

/** Kinds of mapping. */
export type VmaKind =
  | "anon"
  | "heap"
  | "stack"
  | "file"
  | "shared-file"
  | "shared-anon"
  | "vdso"
  | "vvar"
  | "vsyscall";

/** A mapping as recorded in the image. */
export interface VmaRecord {
  /** First address. */
  start: bigint;
  /** Address past the end. */
  end: bigint;
  /** PROT_* bits. */
  prot: number;
  /** Exact VM_* flags. */
  vmFlags: bigint;
  /** File offset in pages. */
  pgoff: bigint;
  /** Kind. */
  kind: VmaKind;
  /** Path of the mapped file. */
  path?: string;
}

/** Classifies a mapping from its maps line and exact flags. */
export function classifyVma(m: MapsEntry, vmFlags: bigint): VmaKind {
  if (m.name === "[vdso]") return "vdso";
  if (m.name === "[vvar]" || m.name === "[vvar_vclock]") return "vvar";
  if (m.name === "[vsyscall]") return "vsyscall";
  const shared = (vmFlags & VM.MAYSHARE) !== 0n;
  // MAP_SHARED|MAP_ANONYMOUS memory shows as "/dev/zero (deleted)".
  if (m.name === "/dev/zero") return shared ? "shared-anon" : "anon";
  const file = m.ino !== 0 && m.name.startsWith("/");
  if (file) return shared ? "shared-file" : "file";
  if (shared) return "shared-anon";
  if (m.name === "[heap]") return "heap";
  if (m.name === "[stack]") return "stack";
  return "anon";
}

/** The PROT_* bits of VM_* flags. */
export function protOf(vmFlags: bigint): number {
  return (vmFlags & VM.READ ? PROT.READ : 0) | (vmFlags & VM.WRITE ? PROT.WRITE : 0) |
    (vmFlags & VM.EXEC ? PROT.EXEC : 0);
}

/** pagemap entry bits. */
export const PM = {
  PRESENT: 1n << 63n,
  SWAPPED: 1n << 62n,
  FILE: 1n << 61n,
  /** Written since the last `echo 4 > /proc/PID/clear_refs` (or in a mapping made since). */
  SOFT_DIRTY: 1n << 55n,
} as const;

/**
 * Whether page `entry` of a mapping of `kind` must be in the image (before
 * the zero check). File pages of private mappings are still the file's;
 * shared file mappings live in the file; never-touched pages have no entry.
 * With `copyAll`, the resident pages of private file mappings (code,
 * libraries) are carried as well, as a copy without the optimization would.
 */
export function pageNeeded(kind: VmaKind, entry: bigint, copyAll = false): boolean {
  return pageNeededHi(kind, Number(entry >> 32n), copyAll);
}

/**
 * The flags of {@link PM} in the high 32 bits of a pagemap entry, where a
 * scan reads them (a Uint32Array over the entries: no BigInt per page).
 */
export const PM_HI = {
  PRESENT: 0x80000000,
  SWAPPED: 0x40000000,
  FILE: 0x20000000,
  SOFT_DIRTY: 0x00800000,
} as const;

/** As {@link pageNeeded}, from the entry's high 32 bits (`hi`). */
export function pageNeededHi(kind: VmaKind, hi: number, copyAll = false): boolean {
  const present = (hi & PM_HI.PRESENT) !== 0, swapped = (hi & PM_HI.SWAPPED) !== 0;
  switch (kind) {
    case "vdso":
    case "vvar":
    case "vsyscall":
    case "shared-file":
      return false;
    case "file":
      // --copy-all carries the file's own pages too (the unoptimized total copy).
      return swapped || (present && (copyAll || (hi & PM_HI.FILE) === 0));
    default:
      return present || swapped;
  }
}

/** True when a 4 KiB page holds only zero bytes. */
export function isZeroPage(page: Uint8Array): boolean {
  // Stops at the first non-zero word: a page with data costs a few reads, not a full pass.
  const words = new Uint32Array(page.buffer, page.byteOffset, page.byteLength / 4);
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
  return true;
}
