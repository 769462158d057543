/**
 * The content of a checkpoint image: the records `ppm checkpoint` writes,
 * read back and checked field by field. A record of the wrong shape is a
 * clear ImageError, never a crash later on.
 *
 * @module
 */
import { arr, bad, big, bytes, int, obj, str } from "./fields.ts";
import { RECORD, recordName } from "./format.ts";
import { readImage } from "./reader.ts";
import { checkSockets, type SocketEntry } from "./sockets.ts";

/** The TASK record. */
export interface TaskRecord {
  /** PID at checkpoint time. */
  pid: number;
  /** Name. */
  comm: string;
  /** Executable path. */
  exe: string;
  /** Working directory. */
  cwd: string;
  /** umask. */
  umask: number;
  /** Real, effective, saved, filesystem uid. */
  uid: number[];
  /** Real, effective, saved, filesystem gid. */
  gid: number[];
  /** Supplementary groups. */
  groups: number[];
  /** Capability sets (hex). */
  caps: Record<string, string>;
  /** Limits. */
  rlimits: { resource: number; soft: number; hard: number }[];
  /** Nice value, -20 to 19 (absent in images before it was kept: 0). */
  nice?: number;
  /** Personality. */
  personality: number;
  /** Kernel release. */
  kernel: string;
  /** CPU flags of the node. */
  cpuFlags: string[];
  /** Size of the xsave area. */
  xsaveSize: number;
  /** ABI version of the module used. */
  abi: number;
  /** ISO time. */
  createdAt: string;
}

/** The MM record: mm fields, auxv, and where the vDSO was. */
export type MmRecord = Record<string, bigint> & { auxv: bigint[] };

/** The CPU record. */
export interface CpuRecord {
  /** Raw user_regs_struct (216 bytes). */
  regs: Uint8Array;
  /** Uncompacted xsave area. */
  xstate: Uint8Array;
  /** Blocked signals. */
  sigmask: bigint;
  /** Syscall restart normalisation applied. */
  restart: string;
}

/** The SIGNALS record. */
export interface SignalsRecord {
  /** Non-default dispositions. */
  actions: { sig: number; handler: bigint; flags: bigint; restorer: bigint; mask: bigint }[];
  /** Alternate stack. */
  altstack: { sp: bigint; size: bigint; flags: number };
  /** Blocked mask. */
  blocked: bigint;
  /** Thread-pending signals. */
  pending: bigint;
  /** Process-pending signals. */
  sharedPending: bigint;
  /** Signal to deliver on resume (0 none). */
  deliverOnResume: number;
  /** Queued signals with their siginfo, in order, per thread or process-wide. */
  queue: { shared: boolean; info: Uint8Array }[];
  /** Robust list head. */
  robustList: bigint;
  /** Its length. */
  robustListLen: bigint;
  /** clear_child_tid. */
  clearChildTid: bigint;
  /** rseq registration. */
  rseq: { addr: bigint; len: number; sig: number };
}

/** One mapping. */
export interface VmaEntry {
  /** First address. */
  start: bigint;
  /** Past the end. */
  end: bigint;
  /** PROT_* bits. */
  prot: number;
  /** VM_* flags. */
  vmFlags: bigint;
  /** File offset in pages. */
  pgoff: bigint;
  /** Kind (anon, heap, stack, file, shared-file, shared-anon, vdso, vvar, vsyscall). */
  kind: string;
  /** Mapped file. */
  path?: string;
}

/** An open descriptor. */
export interface FdEntry {
  /** Number. */
  fd: number;
  /** regular, device or stdio. */
  kind: string;
  /** Path or link text. */
  path: string;
  /** open flags. */
  flags: number;
  /** Position. */
  pos: bigint;
}

/** A mapped file's identity. */
export interface MappedFile {
  /** Path. */
  path: string;
  /** Size. */
  size: number;
  /** mtime, ms. */
  mtimeMs: number;
  /** SHA-256, hex. */
  sha256: string;
}

/** A block of pages. */
export interface PageBlock {
  /** First page address. */
  start: bigint;
  /** Page count. */
  count: number;
  /** Data. */
  data: Uint8Array;
}

/** A whole image, checked. */
export interface LoadedImage {
  /** Task. */
  task: TaskRecord;
  /** mm fields. */
  mm: MmRecord;
  /** CPU state. */
  cpu: CpuRecord;
  /** Signals. */
  signals: SignalsRecord;
  /** Mappings. */
  vmas: VmaEntry[];
  /** Files. */
  files: { fds: FdEntry[]; mapped: MappedFile[] };
  /** Sockets (none in a checkpoint file; a migration may carry some). */
  sockets: SocketEntry[];
  /** Page blocks, in image order; empty when they went to a {@link PageSink} instead. */
  pages: PageBlock[];
  /** END record extras. */
  end: Record<string, unknown>;
  /** Total pages. */
  pageCount: number;
}

const TASK_SIZE = 1n << 47n;

function checkTask(v: unknown): TaskRecord {
  const o = obj(v, "TASK");
  const w = "TASK";
  const ids = (k: string) =>
    arr(o[k], `${w}.${k}`, 65536).map((x, i) => int({ x }, "x", `${w}.${k}[${i}]`));
  return {
    pid: int(o, "pid", w, 1, 4194304),
    comm: str(o, "comm", w, 64),
    exe: str(o, "exe", w),
    cwd: str(o, "cwd", w),
    umask: int(o, "umask", w, 0, 0o777),
    uid: ids("uid"),
    gid: ids("gid"),
    groups: ids("groups"),
    caps: obj(o.caps, "TASK.caps") as Record<string, string>,
    rlimits: arr(o.rlimits, "TASK.rlimits", 16).map((r, i) => {
      const x = obj(r, `TASK.rlimits[${i}]`);
      return {
        resource: int(x, "resource", "rlimit", 0, 15),
        soft: int(x, "soft", "rlimit", -1, Number.MAX_SAFE_INTEGER),
        hard: int(x, "hard", "rlimit", -1, Number.MAX_SAFE_INTEGER),
      };
    }),
    ...(o.nice === undefined ? {} : { nice: int(o, "nice", w, -20, 19) }),
    personality: int(o, "personality", w),
    kernel: str(o, "kernel", w, 256),
    cpuFlags: arr(o.cpuFlags, "TASK.cpuFlags", 1024).map((f) => String(f)),
    xsaveSize: int(o, "xsaveSize", w, 512, 16384),
    abi: int(o, "abi", w),
    createdAt: str(o, "createdAt", w, 64),
  };
}

function checkVmas(v: unknown): VmaEntry[] {
  const list = arr(v, "VMAS", 65536);
  let prevEnd = 0n;
  return list.map((x, i) => {
    const o = obj(x, `VMAS[${i}]`);
    const w = `mapping ${i}`;
    const e: VmaEntry = {
      start: big(o, "start", w, TASK_SIZE + (1n << 40n)),
      end: big(o, "end", w, TASK_SIZE + (1n << 40n)),
      prot: int(o, "prot", w, 0, 7),
      vmFlags: big(o, "vmFlags", w),
      pgoff: big(o, "pgoff", w, 1n << 52n),
      kind: str(o, "kind", w, 16),
    };
    if (o.path !== undefined) e.path = str(o, "path", w);
    if (e.start % 4096n || e.end % 4096n || e.start >= e.end || e.start < prevEnd) {
      throw bad(
        w,
        `range ${e.start.toString(16)}-${e.end.toString(16)} is unaligned, empty or overlapping`,
      );
    }
    if (
      !["anon", "heap", "stack", "file", "shared-file", "shared-anon", "vdso", "vvar", "vsyscall"]
        .includes(e.kind)
    ) {
      throw bad(w, `unknown kind ${e.kind}`);
    }
    if ((e.kind === "file" || e.kind === "shared-file") && !e.path) {
      throw bad(w, "file mapping without a path");
    }
    if (e.kind !== "vsyscall" && e.end > TASK_SIZE) throw bad(w, "beyond user space");
    prevEnd = e.end;
    return e;
  });
}

/**
 * Takes the page blocks of an image as they are read, with the image's
 * checked mappings, instead of {@link loadImage} keeping them: a restore
 * writes them straight into its plan. Each block lies inside one of `vmas`.
 */
export type PageSink = (block: PageBlock, vmas: VmaEntry[]) => Promise<void>;

/** Throws unless the block lies inside one mapping. */
function checkInside(p: PageBlock, vmas: VmaEntry[]): void {
  const inside = vmas.some((v) => p.start >= v.start && p.start + BigInt(p.count * 4096) <= v.end);
  if (!inside) throw bad(`pages at ${p.start.toString(16)}`, "outside every mapping");
}

/**
 * Reads and checks a whole image from `source`. With `sink`, page blocks go
 * to it as they are read (once the VMAS record is known: blocks before it
 * wait in memory) and the result's `pages` is empty; the image is still
 * checked whole before this returns, so a sink must treat what it got as
 * provisional until then.
 */
export async function loadImage(
  source: AsyncIterable<Uint8Array>,
  sink?: PageSink,
): Promise<LoadedImage> {
  const got = new Map<number, unknown>();
  let pages: PageBlock[] = [];
  let end: Record<string, unknown> | undefined;
  let pageCount = 0;
  let early: VmaEntry[] | undefined;
  for await (const r of readImage(source)) {
    if (r.kind === "pages") {
      const block = { start: r.start, count: r.count, data: r.data };
      pageCount += r.count;
      if (sink && early) {
        checkInside(block, early);
        await sink(block, early);
      } else pages.push(block);
    } else if (r.kind === "end") {
      end = r.value;
    } else {
      if (got.has(r.type)) throw bad(recordName(r.type), "appears twice");
      got.set(r.type, r.value);
      if (sink && r.type === RECORD.VMAS) {
        early = checkVmas(r.value);
        for (const b of pages) {
          checkInside(b, early);
          await sink(b, early);
        }
        pages = [];
      }
    }
  }
  const need = (t: number) => {
    if (!got.has(t)) throw bad(recordName(t), "missing");
    return got.get(t);
  };
  const task = checkTask(need(RECORD.TASK));
  const mmObj = obj(need(RECORD.MM), "MM");
  const mm = { auxv: [] as bigint[] } as MmRecord;
  for (const [k, v] of Object.entries(mmObj)) {
    if (k === "auxv") mm.auxv = arr(v, "MM.auxv", 64).map((x, i) => big({ x }, "x", `auxv[${i}]`));
    else mm[k] = big(mmObj, k, "MM", TASK_SIZE + (1n << 40n));
  }
  const cpuObj = obj(need(RECORD.CPU), "CPU");
  const cpu: CpuRecord = {
    regs: bytes(cpuObj, "regs", "CPU", 216, 216),
    xstate: bytes(cpuObj, "xstate", "CPU", 512, 16384),
    sigmask: big(cpuObj, "sigmask", "CPU"),
    restart: str(cpuObj, "restart", "CPU", 16),
  };
  const so = obj(need(RECORD.SIGNALS), "SIGNALS");
  const alt = obj(so.altstack, "SIGNALS.altstack");
  const rs = obj(so.rseq, "SIGNALS.rseq");
  const signals: SignalsRecord = {
    actions: arr(so.actions, "SIGNALS.actions", 64).map((a, i) => {
      const x = obj(a, `action ${i}`);
      return {
        sig: int(x, "sig", "action", 1, 64),
        handler: big(x, "handler", "action"),
        flags: big(x, "flags", "action"),
        restorer: big(x, "restorer", "action"),
        mask: big(x, "mask", "action"),
      };
    }),
    altstack: {
      sp: big(alt, "sp", "altstack"),
      size: big(alt, "size", "altstack"),
      flags: int(alt, "flags", "altstack"),
    },
    blocked: big(so, "blocked", "SIGNALS"),
    pending: big(so, "pending", "SIGNALS"),
    sharedPending: big(so, "sharedPending", "SIGNALS"),
    deliverOnResume: int(so, "deliverOnResume", "SIGNALS", 0, 64),
    queue: arr(so.queue ?? [], "SIGNALS.queue", 65536).map((q, i) => {
      const x = obj(q, `queued signal ${i}`);
      return { shared: x.shared === true, info: bytes(x, "info", "queued signal", 128, 128) };
    }),
    robustList: big(so, "robustList", "SIGNALS"),
    robustListLen: big(so, "robustListLen", "SIGNALS", 1024n),
    clearChildTid: big(so, "clearChildTid", "SIGNALS"),
    rseq: {
      addr: big(rs, "addr", "rseq", TASK_SIZE),
      len: int(rs, "len", "rseq", 0, 1024),
      sig: int(rs, "sig", "rseq"),
    },
  };
  const vmas = checkVmas(need(RECORD.VMAS));
  const fo = obj(need(RECORD.FILES), "FILES");
  const files = {
    fds: arr(fo.fds, "FILES.fds", 65536).map((f, i) => {
      const x = obj(f, `fd ${i}`);
      return {
        fd: int(x, "fd", "fd", 0, 1 << 20),
        kind: str(x, "kind", "fd", 16),
        path: str(x, "path", "fd"),
        flags: int(x, "flags", "fd"),
        pos: big(x, "pos", "fd", 1n << 62n),
      };
    }),
    mapped: arr(fo.mapped, "FILES.mapped", 65536).map((f, i) => {
      const x = obj(f, `mapped file ${i}`);
      return {
        path: str(x, "path", "mapped file"),
        size: int(x, "size", "mapped file", 0, Number.MAX_SAFE_INTEGER),
        mtimeMs: int(x, "mtimeMs", "mapped file", 0, Number.MAX_SAFE_INTEGER),
        sha256: str(x, "sha256", "mapped file", 64),
      };
    }),
  };
  for (const p of pages) checkInside(p, vmas);
  const sockets = got.has(RECORD.SOCKETS) ? checkSockets(got.get(RECORD.SOCKETS)) : [];
  const fdNumbers = new Set(files.fds.map((f) => f.fd));
  for (const s of sockets.filter((x) => x.kind !== "tcp-pending")) {
    if (fdNumbers.has(s.fd)) throw bad(`socket ${s.fd}`, "the descriptor is also a file");
    fdNumbers.add(s.fd);
  }
  return { task, mm, cpu, signals, vmas, files, sockets, pages, end: end ?? {}, pageCount };
}
