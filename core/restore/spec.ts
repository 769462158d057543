/**
 * The restore stub's spec: everything the stub (stub/stub.c) sets up
 * outside the process's memory, as length-prefixed binary records. Names
 * and paths from the image are bytes inside a record whose length is
 * given, so no name can add, end or change a record (a process name or a
 * path may hold a newline or text that looks like a directive).
 *
 * Layout (all integers little-endian):
 *
 *     header  "PPMSPEC\0", u32 version, u32 record count
 *     record  u16 tag, u16 zero, u32 length, then `length` bytes
 *
 * Fixed fields of each tag come first; a path or name is the rest of the
 * record (no NUL inside). The stub refuses a spec with an unknown tag, a
 * wrong length, a path with a NUL or too long, too many records, or more
 * bytes than it takes, and never truncates.
 *
 * @module
 */
import { O } from "../../ffi/libc.ts";
import type { FdEntry, FileId, LoadedImage } from "../image/schema.ts";
import { type FdEntryKind, OBJECT_KINDS } from "../image/fds.ts";
import { mapFd, mappedFiles } from "./memory_plan.ts";

/** The spec's first 8 bytes. */
export const SPEC_MAGIC = "PPMSPEC\0";
/** The spec format version the stub reads. */
export const SPEC_VERSION = 1;
/** Most records in one spec (the stub's limit). */
export const SPEC_MAX_RECORDS = 1 << 17;
/** Most bytes in one spec (the stub's limit). */
export const SPEC_MAX_BYTES = 16 << 20;
/** Longest path the stub takes, NUL excluded (PATH_MAX - 1). */
export const SPEC_MAX_PATH = 4095;
/** Most supplementary groups (NGROUPS_MAX). */
export const SPEC_MAX_GROUPS = 65536;

/** Record tags; stub.c has the same numbers (enum spec_tag). */
export const TAG = {
  PID: 1,
  BASE: 2,
  DEV: 3,
  PLAN: 4,
  PIDOUT: 5,
  CWD: 6,
  UMASK: 7,
  COMM: 8,
  GROUPS: 9,
  RLIMIT: 10,
  NICE: 11,
  FD: 12,
  STDIO: 13,
  SOCK: 14,
  MAP: 15,
  SIGACTION: 16,
  ALTSTACK: 17,
  ROBUST: 18,
  TIDADDR: 19,
  VDSO: 20,
  VVAR: 21,
  FSCRED: 22,
  ERROUT: 23,
} as const;

/** How the stub opens a FD record's path. */
export const OPEN_AS = {
  /** With the process's own fsuid, fsgid and groups; no symlink on the way; identity checked. */
  PROCESS: 0,
  /** As the restorer (ppm): a target ppm chose, such as a relay or `--stdout`. */
  RESTORER: 1,
} as const;

/** Bits of an identity record: which fields the stub compares after opening. */
export const ID_CHECK = {
  TYPE: 1,
  OWNER: 2,
  MODE: 4,
  SIZE: 8,
  MTIME: 16,
  INODE: 32,
} as const;

/** Bytes of an identity record: u32 check, mode, uid, gid; u64 size; s64 mtime ms; u64 dev, ino. */
export const ID_BYTES = 48;

/** Where the restored standard streams go: a path, or the restorer's own. */
export interface StdioTargets {
  /** Sockets rebuilt by this process (ppm), taken by the stub at their numbers. */
  sockets?: { fd: number; copy: number; flags: number }[];
  /** Path for fd 0, opened for reading (else the restorer's stdin). */
  stdin?: string;
  /** Path for fd 1 (else the restorer's stdout). */
  stdout?: string;
  /** Path for fd 2 (else the restorer's stderr). */
  stderr?: string;
}

/** What the spec needs besides the image. */
export interface SpecOptions {
  /** The PID to create. */
  pid: number;
  /** The stub's first own descriptor. */
  base: number;
  /** /dev/ppm. */
  dev: string;
  /** The restore plan. */
  plan: string;
  /** Where the launcher writes the child's PID. */
  pidOut: string;
  /** Where the child writes why it failed (created by the stub, O_EXCL). */
  errOut?: string;
  /** Standard streams and rebuilt sockets. */
  stdio: StdioTargets;
  /**
   * Compare inode and device of files too: the image was taken on this
   * node, in this boot (elsewhere they name other files).
   */
  sameNode?: boolean;
}

/** Builds records; every length is known before it is written. */
class SpecBuilder {
  #parts: Uint8Array[] = [];
  #count = 0;
  #size = 16;
  #enc = new TextEncoder();

  /** Adds one record: fixed fields built by `fill` in `fixed` bytes, then `tail`. */
  add(tag: number, fixed: number, fill?: (v: DataView) => void, tail?: string | Uint8Array) {
    const t = typeof tail === "string" ? this.#enc.encode(tail) : tail ?? new Uint8Array();
    if (typeof tail === "string") checkPath(tail, t);
    const rec = new Uint8Array(8 + fixed + t.length);
    const v = new DataView(rec.buffer);
    v.setUint16(0, tag, true);
    v.setUint32(4, fixed + t.length, true);
    fill?.(new DataView(rec.buffer, 8, fixed));
    rec.set(t, 8 + fixed);
    this.#parts.push(rec);
    this.#count++;
    this.#size += rec.length;
    if (this.#count > SPEC_MAX_RECORDS || this.#size > SPEC_MAX_BYTES) {
      throw new Error(
        `the restore spec is too large (${this.#count} records, ${this.#size} bytes)`,
      );
    }
  }

  /** The whole spec. */
  bytes(): Uint8Array {
    const out = new Uint8Array(this.#size);
    out.set(this.#enc.encode(SPEC_MAGIC));
    const v = new DataView(out.buffer);
    v.setUint32(8, SPEC_VERSION, true);
    v.setUint32(12, this.#count, true);
    let off = 16;
    for (const p of this.#parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }
}

/** Throws for a path or name the stub cannot take as it is (it would refuse it too). */
function checkPath(s: string, b: Uint8Array): void {
  if (b.includes(0)) throw new Error(`a name or path holds a NUL byte: ${JSON.stringify(s)}`);
  if (b.length > SPEC_MAX_PATH) {
    throw new Error(`a path is ${b.length} bytes, over ${SPEC_MAX_PATH}: ${JSON.stringify(s)}`);
  }
}

/** Writes an identity record at `off` of `v`. */
function putId(v: DataView, off: number, id: FileId | undefined, check: number): void {
  if (!id) return;
  v.setUint32(off, check, true);
  v.setUint32(off + 4, id.mode, true);
  v.setUint32(off + 8, id.uid, true);
  v.setUint32(off + 12, id.gid, true);
  v.setBigUint64(off + 16, BigInt(id.size), true);
  v.setBigInt64(off + 24, BigInt(id.mtimeMs), true);
  v.setBigUint64(off + 32, id.dev, true);
  v.setBigUint64(off + 40, id.ino, true);
}

/**
 * What the stub compares for an open file: type, owner and mode always;
 * size and mtime when the process could not have changed it (opened
 * read-only); inode and device on the node the image was taken on.
 */
export function idChecks(id: FileId | undefined, flags: number, sameNode: boolean): number {
  if (!id) return 0;
  let c = ID_CHECK.TYPE | ID_CHECK.OWNER | ID_CHECK.MODE;
  if ((flags & O.ACCMODE) === 0 && (id.mode & 0o170000) === 0o100000) {
    c |= ID_CHECK.SIZE | ID_CHECK.MTIME;
  }
  if (sameNode) c |= ID_CHECK.INODE;
  return c;
}

function addFd(b: SpecBuilder, f: FdEntry, o: SpecOptions): void {
  const flags = f.flags & ~(O.CREAT | O.TRUNC);
  const fd = (n: number, fl: number, pos: bigint, as: number, path: string, id?: FileId) =>
    b.add(TAG.FD, 24 + ID_BYTES, (v) => {
      v.setInt32(0, n, true);
      v.setUint32(4, fl, true);
      v.setBigInt64(8, pos, true);
      v.setUint32(16, as, true);
      putId(v, 24, id, idChecks(id, fl, o.sameNode ?? false));
    }, path);
  if (f.kind === "stdio") {
    const target = f.fd === 1 ? o.stdio.stdout : f.fd === 2 ? o.stdio.stderr : undefined;
    if (f.fd === 0 && o.stdio.stdin) fd(0, 0, 0n, OPEN_AS.RESTORER, o.stdio.stdin);
    else if (target) fd(f.fd, O.WRONLY | O.APPEND, 0n, OPEN_AS.RESTORER, target);
    else {
      b.add(TAG.STDIO, 8, (v) => {
        v.setInt32(0, f.fd, true);
        v.setInt32(4, f.fd, true);
      });
    }
  } else if (f.kind === "shm") {
    // Made here from the image before the stub starts (fd_paths.ts): its own kind, owner and mode.
    b.add(TAG.FD, 24 + ID_BYTES, (v) => {
      v.setInt32(0, f.fd, true);
      v.setUint32(4, flags, true);
      v.setBigInt64(8, f.pos, true);
      v.setUint32(16, OPEN_AS.PROCESS, true);
      putId(v, 24, f.id, ID_CHECK.TYPE | ID_CHECK.OWNER | ID_CHECK.MODE);
    }, f.path);
  } else if (!OBJECT_KINDS.includes(f.kind as FdEntryKind) && f.kind !== "relayed") {
    fd(f.fd, flags, f.kind === "regular" ? f.pos : 0n, OPEN_AS.PROCESS, f.path, f.id);
  }
  // Kernel objects (eventfd, pipes, socketpairs ...) and relayed descriptors are made by the
  // process itself (fds.ts).
}

const i32 = (n: number) => (v: DataView) => v.setInt32(0, n, true);
const u64s = (...xs: bigint[]) => (v: DataView) =>
  xs.forEach((x, i) => v.setBigUint64(i * 8, BigInt.asUintN(64, x), true));

/** The stub's spec for restoring `img` (see the module comment for the layout). */
export function stubSpec(img: LoadedImage, o: SpecOptions): Uint8Array {
  const b = new SpecBuilder();
  const t = img.task;
  b.add(TAG.PID, 4, i32(o.pid));
  b.add(TAG.BASE, 4, i32(o.base));
  b.add(TAG.DEV, 0, undefined, o.dev);
  b.add(TAG.PLAN, 0, undefined, o.plan);
  b.add(TAG.PIDOUT, 0, undefined, o.pidOut);
  if (o.errOut) b.add(TAG.ERROUT, 0, undefined, o.errOut);
  if (t.groups.length > SPEC_MAX_GROUPS) {
    throw new Error(`the process has ${t.groups.length} groups, over ${SPEC_MAX_GROUPS}`);
  }
  b.add(TAG.GROUPS, 4 * t.groups.length, (v) => {
    t.groups.forEach((g, i) => v.setUint32(i * 4, g, true));
  });
  // The process's files are opened with its filesystem ids (uid[3], gid[3]).
  b.add(TAG.FSCRED, 8, (v) => {
    v.setUint32(0, t.uid[3] ?? t.uid[1], true);
    v.setUint32(4, t.gid[3] ?? t.gid[1], true);
  });
  b.add(TAG.CWD, ID_BYTES, (v) => putId(v, 0, t.cwdId, idChecks(t.cwdId, 0, false)), t.cwd);
  b.add(TAG.UMASK, 4, i32(t.umask));
  b.add(TAG.COMM, 0, undefined, t.comm);
  for (const f of img.files.fds) addFd(b, f, o);
  for (const sk of o.stdio.sockets ?? []) {
    b.add(TAG.SOCK, 16, (v) => {
      v.setInt32(0, sk.fd, true);
      v.setInt32(4, Deno.pid, true);
      v.setInt32(8, sk.copy, true);
      v.setUint32(12, sk.flags, true);
    });
  }
  const mappedIds = new Map(img.files.mapped.map((m) => [m.path, m.id]));
  mappedFiles(img).forEach((f, i) => {
    const flags = f.write ? O.RDWR : 0;
    const id = mappedIds.get(f.path);
    b.add(TAG.MAP, 8 + ID_BYTES, (v) => {
      v.setInt32(0, mapFd(o.base, i), true);
      v.setUint32(4, flags, true);
      // Its content was checked by hash before: here, that it is the same kind of file, the
      // same owner's, with the same mode (a copy with the same bytes is as good).
      putId(v, 8, id, idChecks(id, 0, false) & (ID_CHECK.TYPE | ID_CHECK.OWNER | ID_CHECK.MODE));
    }, f.path);
  });
  for (const a of img.signals.actions) {
    b.add(TAG.SIGACTION, 40, (v) => {
      v.setUint32(0, a.sig, true);
      u64s(a.handler, a.flags, a.restorer, a.mask)(new DataView(v.buffer, v.byteOffset + 8, 32));
    });
  }
  const alt = img.signals.altstack;
  if (alt.sp) {
    b.add(TAG.ALTSTACK, 24, (v) => {
      u64s(alt.sp, alt.size)(v);
      v.setUint32(16, alt.flags, true);
    });
  }
  if (img.signals.robustList) {
    b.add(TAG.ROBUST, 16, u64s(img.signals.robustList, img.signals.robustListLen));
  }
  if (img.signals.clearChildTid) b.add(TAG.TIDADDR, 8, u64s(img.signals.clearChildTid));
  const mm = img.mm;
  if (mm.vvar) b.add(TAG.VVAR, 16, u64s(mm.vvar, mm.vvarEnd));
  if (mm.vdso) b.add(TAG.VDSO, 16, u64s(mm.vdso, mm.vdsoEnd));
  for (const r of t.rlimits) {
    b.add(TAG.RLIMIT, 24, (v) => {
      v.setUint32(0, r.resource, true);
      v.setBigInt64(8, BigInt(r.soft), true);
      v.setBigInt64(16, BigInt(r.hard), true);
    });
  }
  // Always: the stub would otherwise keep the agent's own (raised) priority.
  b.add(TAG.NICE, 4, i32(t.nice ?? 0));
  return b.bytes();
}
