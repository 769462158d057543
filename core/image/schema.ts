/**
 * The content of a checkpoint image: the records `ppm checkpoint` writes,
 * read back and checked field by field. A record of the wrong shape is a
 * clear ImageError, never a crash later on.
 *
 * @module
 */
import { PAGE_SIZE } from "../../ffi/libc.ts";
import { arr, bad, big, bytes, int, obj, path, str } from "./fields.ts";
import { RECORD, recordName } from "./format.ts";
import { readImage } from "./reader.ts";
import { checkSockets, type SocketEntry } from "./sockets.ts";
import { checkThreads, type ThreadsRecord } from "./threads.ts";
import { checkTimers, type TimersRecord } from "./timers.ts";
import { checkNetwork, type NetworkRecord } from "./network.ts";
import { checkPrecopy, type PrecopyRecord } from "./precopy.ts";
import { checkEpollTargets, checkFds, type FdEntry } from "./fds.ts";
export type { ThreadEntry, ThreadSched, ThreadsRecord } from "./threads.ts";
export type { FdEntry } from "./fds.ts";
export type { ItimerEntry, PosixTimerEntry, TimersRecord } from "./timers.ts";
export type { DropFlow, NetworkRecord } from "./network.ts";

/**
 * What a file was when the image was taken (stat of the open file), so the
 * restore can refuse another file put in its place.
 */
export interface FileId {
  /** st_mode: type and permission bits. */
  mode: number;
  /** Owner. */
  uid: number;
  /** Group. */
  gid: number;
  /** Size in bytes. */
  size: number;
  /** Modification time, ms since the epoch. */
  mtimeMs: number;
  /** Device (st_dev). */
  dev: bigint;
  /** Inode. */
  ino: bigint;
}

/** Credentials beyond the ids, restored exactly (absent in images before they were kept). */
export interface CredsRecord {
  /** Capability sets as 64-bit masks. */
  caps: { inh: bigint; prm: bigint; eff: bigint; bnd: bigint; amb: bigint };
  /** securebits. */
  securebits: number;
  /** PR_GET_NO_NEW_PRIVS. */
  noNewPrivs: boolean;
  /** PR_GET_DUMPABLE (0 or 1; 2 is restored as 0). */
  dumpable: number;
  /** Parent-death signal, 0 none. */
  pdeathSig: number;
  /** Seccomp: mode 0 off, 2 filter; filters oldest first (BPF programs, 8 bytes an instruction). */
  seccomp: { mode: number; filters: { flags: number; prog: Uint8Array }[] };
  /** boot_id of the node and boot the image was taken in (inode numbers mean something there). */
  bootId: string;
}

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
  /** What the working directory was. */
  cwdId?: FileId;
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
  /** Capabilities, securebits, no_new_privs, seccomp, dumpable, pdeath signal. */
  creds?: CredsRecord;
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

/** The MM record of the kernel's mm fields (by name) and the auxiliary vector. */
export function mmRecord(fields: Record<string, bigint>, auxv: bigint[]): MmRecord {
  return { ...fields, auxv } as MmRecord;
}

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
  /** What the file was. */
  id?: FileId;
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

/** The FILES record. */
export interface FilesRecord {
  /** Open descriptors. */
  fds: FdEntry[];
  /** Every mapped file, once. */
  mapped: MappedFile[];
}

/**
 * What each msgpack record holds: the one type `ImageWriter.writeRecord`
 * takes and {@link loadImage} checks and returns (PAGES and END are written
 * by the writer itself).
 */
export interface RecordValues {
  [RECORD.TASK]: TaskRecord;
  [RECORD.MM]: MmRecord;
  [RECORD.CPU]: CpuRecord;
  [RECORD.SIGNALS]: SignalsRecord;
  [RECORD.VMAS]: VmaEntry[];
  [RECORD.FILES]: FilesRecord;
  [RECORD.SOCKETS]: SocketEntry[];
  [RECORD.THREADS]: ThreadsRecord;
  [RECORD.TIMERS]: TimersRecord;
  [RECORD.NETWORK]: NetworkRecord;
  [RECORD.PRECOPY]: PrecopyRecord;
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
  /** A migration's sockets (SOCKETS; none in a checkpoint file, see `network`). */
  sockets: SocketEntry[];
  /**
   * A checkpoint's sockets (`ppm checkpoint --tcp-established`), restored
   * where it was taken; absent without the flag, or without sockets.
   */
  network?: NetworkRecord;
  /** Threads (an image of a single-threaded process may have no THREADS record). */
  threads?: ThreadsRecord;
  /** Timers (absent in images from before they were carried: then none are made). */
  timers?: TimersRecord;
  /**
   * A migration's image after pre-copy rounds: the pages it leaves to what
   * the destination holds (core/restore/precopy_store.ts).
   */
  precopy?: PrecopyRecord;
  /** Page blocks, in image order; empty when they went to a {@link PageSink} instead. */
  pages: PageBlock[];
  /** END record extras. */
  end: Record<string, unknown>;
  /** Total pages. */
  pageCount: number;
}

const TASK_SIZE = 1n << 47n;

/** A FileId of an image or an offer, checked (undefined when absent). */
export function checkId(v: unknown, what: string): FileId | undefined {
  if (v === undefined) return undefined;
  const o = obj(v, what);
  return {
    mode: int(o, "mode", what, 0, 0o177777),
    uid: int(o, "uid", what, 0, 0xffffffff),
    gid: int(o, "gid", what, 0, 0xffffffff),
    size: int(o, "size", what, 0, Number.MAX_SAFE_INTEGER),
    mtimeMs: int(o, "mtimeMs", what, 0, Number.MAX_SAFE_INTEGER),
    dev: big(o, "dev", what),
    ino: big(o, "ino", what),
  };
}

const SECCOMP_MAX_INSNS = 4096;

/** The process name: at most 15 bytes (TASK_COMM_LEN - 1), no NUL; any other byte is data. */
function comm(o: Record<string, unknown>): string {
  const v = str(o, "comm", "TASK", 64);
  if (v.includes("\0") || new TextEncoder().encode(v).length > 15) {
    throw bad("TASK", "comm is not a name of at most 15 bytes without NUL");
  }
  return v;
}

/** The capability sets as /proc/PID/status shows them: hex strings of at most 16 digits. */
function caps(v: unknown): Record<string, string> {
  const o = obj(v, "TASK.caps");
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(o)) {
    if (typeof x !== "string" || !/^[0-9a-f]{1,16}$/i.test(x)) {
      throw bad("TASK.caps", `${k} is not a hex capability mask`);
    }
    out[k] = x;
  }
  return out;
}

/** The creds of a TASK record, checked. */
function checkCreds(v: unknown): CredsRecord | undefined {
  if (v === undefined) return undefined;
  const w = "TASK.creds";
  const o = obj(v, w);
  const c = obj(o.caps, `${w}.caps`);
  const sc = obj(o.seccomp, `${w}.seccomp`);
  const capMask = (1n << 64n) - 1n;
  return {
    caps: {
      inh: big(c, "inh", `${w}.caps`, capMask),
      prm: big(c, "prm", `${w}.caps`, capMask),
      eff: big(c, "eff", `${w}.caps`, capMask),
      bnd: big(c, "bnd", `${w}.caps`, capMask),
      amb: big(c, "amb", `${w}.caps`, capMask),
    },
    securebits: int(o, "securebits", w, 0, 0xff),
    noNewPrivs: o.noNewPrivs === true,
    dumpable: int(o, "dumpable", w, 0, 2),
    pdeathSig: int(o, "pdeathSig", w, 0, 64),
    seccomp: {
      mode: int(sc, "mode", `${w}.seccomp`, 0, 2),
      filters: arr(sc.filters, `${w}.seccomp.filters`, 512).map((f, i) => {
        const x = obj(f, `seccomp filter ${i}`);
        const prog = bytes(x, "prog", `seccomp filter ${i}`, 8, 8 * SECCOMP_MAX_INSNS);
        if (prog.length % 8) throw bad(`seccomp filter ${i}`, "not whole BPF instructions");
        return { flags: int(x, "flags", `seccomp filter ${i}`, 0, 0xffff), prog };
      }),
    },
    bootId: str(o, "bootId", w, 64),
  };
}

function checkTask(v: unknown): TaskRecord {
  const o = obj(v, "TASK");
  const w = "TASK";
  const ids = (k: string) =>
    arr(o[k], `${w}.${k}`, 65536).map((x, i) => int({ x }, "x", `${w}.${k}[${i}]`));
  return {
    pid: int(o, "pid", w, 1, 4194304),
    comm: comm(o),
    exe: path(o, "exe", w),
    cwd: path(o, "cwd", w),
    ...(o.cwdId === undefined ? {} : { cwdId: checkId(o.cwdId, "TASK.cwdId") }),
    umask: int(o, "umask", w, 0, 0o777),
    uid: ids("uid"),
    gid: ids("gid"),
    groups: ids("groups"),
    caps: caps(o.caps),
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
    ...(o.creds === undefined ? {} : { creds: checkCreds(o.creds) }),
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
    if (o.path !== undefined) e.path = path(o, "path", w);
    if (
      e.start % BigInt(PAGE_SIZE) || e.end % BigInt(PAGE_SIZE) || e.start >= e.end ||
      e.start < prevEnd
    ) {
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

/** The CPU record, checked. */
function checkCpuRecord(v: unknown): CpuRecord {
  const cpuObj = obj(v, "CPU");
  return {
    regs: bytes(cpuObj, "regs", "CPU", 216, 216),
    xstate: bytes(cpuObj, "xstate", "CPU", 512, 16384),
    sigmask: big(cpuObj, "sigmask", "CPU"),
    restart: str(cpuObj, "restart", "CPU", 16),
  };
}

/** The SIGNALS record, checked. */
function checkSignals(v: unknown): SignalsRecord {
  const so = obj(v, "SIGNALS");
  const alt = obj(so.altstack, "SIGNALS.altstack");
  const rs = obj(so.rseq, "SIGNALS.rseq");
  return {
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
}

/** The FILES record, checked. */
function checkFilesRecord(v: unknown): LoadedImage["files"] {
  const fo = obj(v, "FILES");
  return {
    fds: checkFds(fo.fds, checkId),
    mapped: arr(fo.mapped, "FILES.mapped", 65536).map((f, i) => {
      const x = obj(f, `mapped file ${i}`);
      return {
        path: path(x, "path", `mapped file ${i}`),
        size: int(x, "size", "mapped file", 0, Number.MAX_SAFE_INTEGER),
        mtimeMs: int(x, "mtimeMs", "mapped file", 0, Number.MAX_SAFE_INTEGER),
        sha256: str(x, "sha256", "mapped file", 64),
        ...(x.id === undefined ? {} : { id: checkId(x.id, `mapped file ${i} identity`) }),
      };
    }),
  };
}

/**
 * Takes the page blocks of an image as they are read, with the image's
 * checked mappings, instead of {@link loadImage} keeping them: a restore
 * writes them straight into its plan. Each block lies inside one of `vmas`.
 */
export type PageSink = (block: PageBlock, vmas: VmaEntry[]) => Promise<void>;

/** Throws unless the block lies inside one mapping. */
function checkInside(p: PageBlock, vmas: VmaEntry[]): void {
  const inside = vmas.some((v) =>
    p.start >= v.start && p.start + BigInt(p.count * PAGE_SIZE) <= v.end
  );
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
  const cpu = checkCpuRecord(need(RECORD.CPU));
  const signals = checkSignals(need(RECORD.SIGNALS));
  const vmas = checkVmas(need(RECORD.VMAS));
  const files = checkFilesRecord(need(RECORD.FILES));
  for (const p of pages) checkInside(p, vmas);
  const sockets = got.has(RECORD.SOCKETS) ? checkSockets(got.get(RECORD.SOCKETS)) : [];
  const threads = got.has(RECORD.THREADS)
    ? checkThreads(got.get(RECORD.THREADS), task.pid, cpu.xstate.length)
    : undefined;
  const timers = got.has(RECORD.TIMERS)
    ? checkTimers(got.get(RECORD.TIMERS), task.pid, threads?.others.map((t) => t.tid) ?? [])
    : undefined;
  const network = got.has(RECORD.NETWORK) ? checkNetwork(got.get(RECORD.NETWORK)) : undefined;
  const precopy = got.has(RECORD.PRECOPY) ? checkPrecopy(got.get(RECORD.PRECOPY)) : undefined;
  if (network && got.has(RECORD.SOCKETS)) {
    throw bad("NETWORK", "the image has a SOCKETS record too (a migration's sockets)");
  }
  const fdNumbers = new Set(files.fds.map((f) => f.fd));
  for (const s of [...sockets, ...network?.sockets ?? []].filter((x) => x.kind !== "tcp-pending")) {
    if (fdNumbers.has(s.fd)) throw bad(`socket ${s.fd}`, "the descriptor is also a file");
    fdNumbers.add(s.fd);
  }
  checkEpollTargets(files.fds, fdNumbers);
  return {
    task,
    mm,
    cpu,
    signals,
    vmas,
    files,
    sockets,
    ...(threads ? { threads } : {}),
    ...(timers ? { timers } : {}),
    ...(network ? { network } : {}),
    ...(precopy ? { precopy } : {}),
    pages,
    end: end ?? {},
    pageCount,
  };
}
