/**
 * The descriptors of the FILES record: regular files, devices and standard
 * streams (opened again by path), and the kernel objects the process made
 * itself and that move with their state: eventfd, timerfd, signalfd,
 * epoll, pipes and FIFOs with both ends in the process, unix socketpairs,
 * memfd, and files in /dev/shm. Read back and checked field by field and
 * as a whole: numbers unique, a copy (`dupOf`) names a descriptor of the
 * same kind, every pipe has its two ends and its contents once, every
 * socketpair its two ends, every epoll target exists.
 *
 * @module
 */
import { arr, bad, big, bytes, int, obj, path, str } from "./fields.ts";
import type { FileId } from "./schema.ts";

const MADE_KINDS = [
  "eventfd",
  "timerfd",
  "signalfd",
  "epoll",
  "pipe",
  "fifo",
  "unix",
  "memfd",
] as const;

/** Kinds of descriptor an image holds: opened by path, or made by the process. */
export const FD_KINDS = ["regular", "device", "stdio", "shm", "relayed", ...MADE_KINDS] as const;

/** A kind of descriptor. */
export type FdEntryKind = typeof FD_KINDS[number];

/** The kinds the restored process makes itself (core/restore/fds.ts), not opened by path. */
export const OBJECT_KINDS: readonly FdEntryKind[] = MADE_KINDS;

/** Most bytes of a memfd name (MFD_NAME_MAX_LEN). */
export const MEMFD_NAME_MAX = 249;
/** Largest pipe an image may ask for (the kernel's own ceiling is 2 GiB). */
export const MAX_PIPE_SIZE = 1 << 30;
/** Most messages queued on one socket end. */
export const MAX_QUEUED = 1 << 16;
/** Every memfd seal (F_SEAL_SEAL, SHRINK, GROW, WRITE, FUTURE_WRITE, EXEC). */
export const ALL_SEALS = 0x3f;

/** Most relayed descriptors one image may hold. */
export const MAX_RELAYED = 64;

/** What a relayed descriptor is, seen from the process. */
export const RELAYED_ENDS = ["pipe-read", "pipe-write", "unix-stream", "tcp-stream"] as const;

/**
 * A descriptor whose other end stays on the node the process left (its
 * peer is another process there): the destination gives the process a new
 * pipe or socketpair end at its number, and the agents relay its bytes
 * (core/relay/fds.ts). Its unread bytes stay at the source, read from there
 * by the relay first.
 */
export interface RelayedState {
  /**
   * The read or write end of a pipe (or FIFO), a unix stream socket, or a
   * TCP connection over loopback (its peer another process on that node).
   */
  end: typeof RELAYED_ENDS[number];
  /** A unix stream socket: its shutdown state (1 reading, 2 writing, 3 both); 0 for the others. */
  shutdown: number;
  /** A unix stream socket: SO_PASSCRED. */
  passcred: boolean;
}

/** An eventfd: its counter and mode. */
export interface EventfdState {
  /** The counter, 0..2^64-2. */
  count: bigint;
  /** EFD_SEMAPHORE. */
  semaphore: boolean;
}

/** A time as seconds and nanoseconds. */
export interface TimeState {
  /** Seconds. */
  sec: bigint;
  /** Nanoseconds, below 1e9. */
  nsec: number;
}

/** A timerfd. */
export interface TimerfdState {
  /** Its clock: CLOCK_REALTIME 0, MONOTONIC 1, BOOTTIME 7, REALTIME_ALARM 8, BOOTTIME_ALARM 9. */
  clock: number;
  /** Expirations not read yet. */
  ticks: bigint;
  /** Flags of its last timerfd_settime: TFD_TIMER_ABSTIME 1, TFD_TIMER_CANCEL_ON_SET 2. */
  settimeFlags: number;
  /** Time left to the next expiry when the image was taken (0: disarmed); restored as relative. */
  value: TimeState;
  /** Interval (0: one shot). */
  interval: TimeState;
}

/** A signalfd. */
export interface SignalfdState {
  /** The signals it reads: bit n-1 for signal n. */
  mask: bigint;
}

/** A descriptor an epoll instance watches. */
export interface EpollWatch {
  /** The process's descriptor number it was added under (the kernel keys it by file and number). */
  fd: number;
  /** Events (EPOLLIN ..., EPOLLET, EPOLLONESHOT, EPOLLEXCLUSIVE, EPOLLWAKEUP). */
  events: number;
  /** User data. */
  data: bigint;
}

/** An epoll instance. */
export interface EpollState {
  /** What it watches, in the order the kernel listed them. */
  items: EpollWatch[];
}

/** A pipe's (or FIFO's) contents, on one of its descriptors. */
export interface PipeState {
  /** Its capacity in bytes (F_GETPIPE_SZ). */
  size: number;
  /** The unread bytes, in order; for a packet-mode pipe (O_DIRECT) one item per packet. */
  data: Uint8Array[];
}

/** Socket options of a socketpair end. */
export interface UnixOptions {
  /** SO_SNDBUF as getsockopt reports it. */
  sndbuf: number;
  /** SO_RCVBUF as getsockopt reports it. */
  rcvbuf: number;
  /** SO_PASSCRED. */
  passcred: boolean;
  /** SO_PEEK_OFF (-1: off). */
  peekOff: number;
  /** SO_RCVLOWAT. */
  rcvlowat: number;
  /** SO_RCVTIMEO in µs (0: none). */
  rcvtimeoUs: number;
  /** SO_SNDTIMEO in µs (0: none). */
  sndtimeoUs: number;
}

/** One end of a unix socketpair. */
export interface UnixState {
  /** SOCK_STREAM 1, SOCK_DGRAM 2 or SOCK_SEQPACKET 5. */
  type: number;
  /** Which end: 0 or 1 (the two ends of one pair share an `object`). */
  end: number;
  /** sk_shutdown: 1 its receiving side shut, 2 its sending side. */
  shutdown: number;
  /** What waits to be read on this end, in order: one item per message (stream: any split). */
  queue: Uint8Array[];
  /** The items of `queue` that carry no sender credentials (kernels that attach them only on demand). */
  uncredited: number[];
  /** Its options. */
  options: UnixOptions;
}

/** A memfd. */
export interface MemfdState {
  /** Its name (without the "memfd:" the kernel shows). */
  name: string;
  /** Its size in bytes. */
  size: number;
  /** Its contents up to the last byte that is not zero (the rest reads as zeros). */
  data: Uint8Array;
  /** F_GET_SEALS. */
  seals: number;
  /** Permission bits of its inode. */
  mode: number;
}

/** A file in /dev/shm: its contents travel with the image. */
export interface ShmState {
  /** Its size in bytes. */
  size: number;
  /** Its contents up to the last byte that is not zero. */
  data: Uint8Array;
}

/** An open descriptor. */
export interface FdEntry {
  /** Number. */
  fd: number;
  /** Kind (see {@link FD_KINDS}). */
  kind: string;
  /** Path (regular, device, fifo, shm) or the link text /proc shows. */
  path: string;
  /** open flags (close-on-exec as O_CLOEXEC). */
  flags: number;
  /** Position. */
  pos: bigint;
  /** What the file was. */
  id?: FileId;
  /** The same open file description as descriptor `dupOf` (a dup(2)): only fd and flags' O_CLOEXEC count. */
  dupOf?: number;
  /** Pipes, FIFOs and socketpairs: which one (every descriptor of one shares the number). */
  object?: number;
  /** eventfd state. */
  eventfd?: EventfdState;
  /** timerfd state. */
  timerfd?: TimerfdState;
  /** signalfd state. */
  signalfd?: SignalfdState;
  /** epoll state. */
  epoll?: EpollState;
  /** pipe or FIFO contents (on one descriptor of each). */
  pipe?: PipeState;
  /** socketpair end state. */
  unix?: UnixState;
  /** memfd state. */
  memfd?: MemfdState;
  /** /dev/shm file contents. */
  shm?: ShmState;
  /** A relayed descriptor: what it is. */
  relayed?: RelayedState;
}

/** The state field each kind carries (pipes and FIFOs on one descriptor only). */
const STATE_OF: Partial<Record<FdEntryKind, (typeof STATES)[number]>> = {
  eventfd: "eventfd",
  timerfd: "timerfd",
  signalfd: "signalfd",
  epoll: "epoll",
  pipe: "pipe",
  fifo: "pipe",
  unix: "unix",
  memfd: "memfd",
  shm: "shm",
  relayed: "relayed",
};

const STATES = [
  "eventfd",
  "timerfd",
  "signalfd",
  "epoll",
  "pipe",
  "unix",
  "memfd",
  "shm",
  "relayed",
] as const;

const U64_MAX = (1n << 64n) - 1n;
const I63_MAX = (1n << 63n) - 1n;
const enc = new TextEncoder();

function time(v: unknown, what: string): TimeState {
  const o = obj(v, what);
  return { sec: big(o, "sec", what, I63_MAX), nsec: int(o, "nsec", what, 0, 999_999_999) };
}

function eventfd(o: Record<string, unknown>, w: string): EventfdState {
  if (typeof o.semaphore !== "boolean") throw bad(w, "semaphore is not true or false");
  return { count: big(o, "count", w, U64_MAX - 1n), semaphore: o.semaphore };
}

function timerfd(o: Record<string, unknown>, w: string): TimerfdState {
  const clock = int(o, "clock", w, 0, 9);
  if (![0, 1, 7, 8, 9].includes(clock)) throw bad(w, `clock ${clock} is not a timerfd clock`);
  const settimeFlags = int(o, "settimeFlags", w, 0, 3);
  if ((settimeFlags & 2) && (!(settimeFlags & 1) || (clock !== 0 && clock !== 8))) {
    throw bad(w, "cancel-on-set without an absolute time on a realtime clock");
  }
  return {
    clock,
    ticks: big(o, "ticks", w),
    settimeFlags,
    value: time(o.value, `${w} value`),
    interval: time(o.interval, `${w} interval`),
  };
}

function epoll(o: Record<string, unknown>, w: string): EpollState {
  const seen = new Set<number>();
  const items = arr(o.items, `${w} items`, 1 << 20).map((x, i) => {
    const e = obj(x, `${w} item ${i}`);
    const fd = int(e, "fd", `${w} item ${i}`, 0, (1 << 20) - 1);
    if (seen.has(fd)) throw bad(`${w} item ${i}`, `descriptor ${fd} is watched twice`);
    seen.add(fd);
    return {
      fd,
      events: int(e, "events", `${w} item ${i}`, 0, 0xffffffff),
      data: big(e, "data", `${w} item ${i}`),
    };
  });
  return { items };
}

function chunks(v: unknown, w: string, max: number, minEach: number): Uint8Array[] {
  return arr(v, w, MAX_QUEUED).map((c, i) => bytes({ c }, "c", `${w}[${i}]`, minEach, max));
}

function pipe(o: Record<string, unknown>, w: string): PipeState {
  const size = int(o, "size", w, 4096, MAX_PIPE_SIZE);
  if (size & (size - 1)) throw bad(w, `size ${size} is not a power of two`);
  const data = chunks(o.data, `${w} data`, size, 1);
  if (data.reduce((a, c) => a + c.length, 0) > size) throw bad(w, "holds more than its size");
  return { size, data };
}

function unixOptions(v: unknown, w: string): UnixOptions {
  const o = obj(v, w);
  if (typeof o.passcred !== "boolean") throw bad(w, "passcred is not true or false");
  return {
    sndbuf: int(o, "sndbuf", w, 0, 0x7fffffff),
    rcvbuf: int(o, "rcvbuf", w, 0, 0x7fffffff),
    passcred: o.passcred,
    peekOff: int(o, "peekOff", w, -1, 0x7fffffff),
    rcvlowat: int(o, "rcvlowat", w, 0, 0x7fffffff),
    rcvtimeoUs: int(o, "rcvtimeoUs", w, 0, Number.MAX_SAFE_INTEGER),
    sndtimeoUs: int(o, "sndtimeoUs", w, 0, Number.MAX_SAFE_INTEGER),
  };
}

function unix(o: Record<string, unknown>, w: string): UnixState {
  const type = int(o, "type", w, 1, 5);
  if (type !== 1 && type !== 2 && type !== 5) throw bad(w, `type ${type} is not a socketpair's`);
  const queue = chunks(o.queue, `${w} queue`, 16 << 20, type === 1 ? 1 : 0);
  let last = -1;
  const uncredited = arr(o.uncredited, `${w} uncredited`, MAX_QUEUED).map((x, i) => {
    const n = int({ x }, "x", `${w} uncredited[${i}]`, 0, queue.length - 1);
    if (n <= last) throw bad(w, "uncredited is not ascending");
    return last = n;
  });
  return {
    type,
    end: int(o, "end", w, 0, 1),
    shutdown: int(o, "shutdown", w, 0, 3),
    queue,
    uncredited,
    options: unixOptions(o.options, `${w} options`),
  };
}

function memfd(o: Record<string, unknown>, w: string): MemfdState {
  const name = str(o, "name", w, MEMFD_NAME_MAX);
  if (name.includes("\0") || enc.encode(name).length > MEMFD_NAME_MAX) {
    throw bad(w, `name is not at most ${MEMFD_NAME_MAX} bytes without NUL`);
  }
  const size = int(o, "size", w, 0, Number.MAX_SAFE_INTEGER);
  const data = bytes(o, "data", w, 0, Math.min(size, 16 << 20));
  return {
    name,
    size,
    data,
    seals: int(o, "seals", w, 0, ALL_SEALS),
    mode: int(o, "mode", w, 0, 0o7777),
  };
}

function shm(o: Record<string, unknown>, w: string): ShmState {
  const size = int(o, "size", w, 0, Number.MAX_SAFE_INTEGER);
  return { size, data: bytes(o, "data", w, 0, Math.min(size, 16 << 20)) };
}

/** Whether `p` names a file directly in /dev/shm (no directory below it, no `.` or `..`). */
export function isShmPath(p: string): boolean {
  const name = p.startsWith("/dev/shm/") ? p.slice(9) : "";
  return name !== "" && name !== "." && name !== ".." && !name.includes("/");
}

function relayed(o: Record<string, unknown>, w: string): RelayedState {
  const end = str(o, "end", w, 16) as RelayedState["end"];
  if (!RELAYED_ENDS.includes(end)) throw bad(w, `unknown end ${end}`);
  const shutdown = int(o, "shutdown", w, 0, 3);
  if (typeof o.passcred !== "boolean") throw bad(w, "passcred is not a boolean");
  if (end !== "unix-stream" && (shutdown !== 0 || o.passcred)) {
    throw bad(
      w,
      `unix socket state on a ${end.startsWith("pipe") ? "pipe end" : "TCP connection"}`,
    );
  }
  return { end, shutdown, passcred: o.passcred };
}

/** One descriptor's fields, checked (not yet against the others). */
function checkEntry(f: unknown, i: number, checkId: (v: unknown, w: string) => FileId | undefined) {
  const x = obj(f, `FILES.fds[${i}]`);
  const fd = int(x, "fd", `FILES.fds[${i}]`, 0, (1 << 20) - 1);
  // From here on the descriptor is named by its number.
  const w = `fd ${fd}`;
  const kind = str(x, "kind", w, 16) as FdEntryKind;
  if (!FD_KINDS.includes(kind)) throw bad(w, `unknown kind ${kind}`);
  const byPath = ["regular", "device", "fifo", "shm"].includes(kind);
  const e: FdEntry = {
    fd,
    kind,
    path: byPath ? path(x, "path", w) : str(x, "path", w),
    flags: int(x, "flags", w),
    pos: big(x, "pos", w, 1n << 62n),
  };
  if (x.id !== undefined) e.id = checkId(x.id, `${w} identity`);
  if (x.dupOf !== undefined) e.dupOf = int(x, "dupOf", w, 0, (1 << 20) - 1);
  if (x.object !== undefined) e.object = int(x, "object", w, 0, 1 << 20);
  const want = STATE_OF[kind];
  for (const s of STATES) {
    if (x[s] === undefined) continue;
    if (s !== want || e.dupOf !== undefined) {
      throw bad(
        w,
        `${s} state on a${e.dupOf !== undefined ? " copy of a" : ""} ${kind} descriptor`,
      );
    }
    const o = obj(x[s], `${w} ${s}`);
    const sw = `${w} ${s}`;
    if (s === "eventfd") e.eventfd = eventfd(o, sw);
    else if (s === "timerfd") e.timerfd = timerfd(o, sw);
    else if (s === "signalfd") e.signalfd = { mask: big(o, "mask", sw) };
    else if (s === "epoll") e.epoll = epoll(o, sw);
    else if (s === "pipe") e.pipe = pipe(o, sw);
    else if (s === "unix") e.unix = unix(o, sw);
    else if (s === "memfd") e.memfd = memfd(o, sw);
    else if (s === "relayed") e.relayed = relayed(o, sw);
    else e.shm = shm(o, sw);
  }
  if (want && want !== "pipe" && want !== "shm" && e.dupOf === undefined && e[want] === undefined) {
    throw bad(w, `a ${kind} without its state`);
  }
  if (kind === "relayed" && (fd < 3 || e.dupOf !== undefined || e.object !== undefined)) {
    throw bad(w, "a relayed descriptor that is a standard stream, a copy or part of an object");
  }
  if (kind === "shm" && (!isShmPath(e.path) || !e.id)) {
    throw bad(w, "a /dev/shm file that is not directly in /dev/shm, or without its identity");
  }
  if (["pipe", "fifo", "unix"].includes(kind) && e.dupOf === undefined && e.object === undefined) {
    throw bad(w, `a ${kind} without its object number`);
  }
  return e;
}

/** /dev/shm files: each path's contents on exactly one of its descriptors. */
function checkShm(fds: FdEntry[]): void {
  const carriers = new Map<string, number>();
  for (const f of fds) {
    if (f.kind === "shm") carriers.set(f.path, (carriers.get(f.path) ?? 0) + (f.shm ? 1 : 0));
  }
  for (const [p, n] of carriers) {
    if (n !== 1) throw bad(`/dev/shm file ${p}`, `its contents are on ${n} descriptors, not one`);
  }
}

/** Pipes, FIFOs and socketpairs whole: every object's descriptors agree. */
function checkObjects(fds: FdEntry[]): void {
  const groups = new Map<number, FdEntry[]>();
  for (const f of fds) {
    if (f.dupOf !== undefined || f.object === undefined) continue;
    if (!["pipe", "fifo", "unix"].includes(f.kind)) {
      throw bad(`fd ${f.fd}`, `an object number on a ${f.kind}`);
    }
    groups.set(f.object, [...groups.get(f.object) ?? [], f]);
  }
  for (const [n, g] of groups) {
    const w = `object ${n}`;
    if (g.some((f) => f.kind !== g[0].kind)) throw bad(w, "descriptors of different kinds");
    if (g[0].kind === "unix") {
      const ends = g.map((f) => f.unix!.end).sort();
      if (g.length !== 2 || ends[0] !== 0 || ends[1] !== 1 || g[0].unix!.type !== g[1].unix!.type) {
        throw bad(w, "a socketpair that is not two ends of one type");
      }
      continue;
    }
    if (g.filter((f) => f.pipe).length !== 1) {
      throw bad(w, "a pipe whose contents are not on one end");
    }
    const acc = g.map((f) => f.flags & 3);
    if (!acc.some((a) => a !== 1) || !acc.some((a) => a !== 0) || acc.includes(3)) {
      throw bad(w, "a pipe without both its ends");
    }
    if (g[0].kind === "fifo" && g.some((f) => f.path !== g[0].path)) {
      throw bad(w, "a FIFO opened under different paths");
    }
  }
}

/**
 * The descriptors of a FILES record, checked one by one and together
 * (`checkId` checks a file identity, see schema.ts).
 */
export function checkFds(
  v: unknown,
  checkId: (v: unknown, w: string) => FileId | undefined,
): FdEntry[] {
  const fds = arr(v, "FILES.fds", 65536).map((f, i) => checkEntry(f, i, checkId));
  const byFd = new Map<number, FdEntry>();
  for (const f of fds) {
    if (byFd.has(f.fd)) throw bad(`fd ${f.fd}`, "appears twice");
    byFd.set(f.fd, f);
  }
  for (const f of fds) {
    if (f.dupOf === undefined) continue;
    const o = byFd.get(f.dupOf);
    if (
      !o || o.dupOf !== undefined || o.kind !== f.kind ||
      !OBJECT_KINDS.includes(o.kind as FdEntryKind)
    ) {
      throw bad(
        `fd ${f.fd}`,
        `a copy of descriptor ${f.dupOf}, which is not a ${f.kind} of its own`,
      );
    }
  }
  checkObjects(fds);
  checkShm(fds);
  const relays = fds.filter((f) => f.kind === "relayed").length;
  if (relays > MAX_RELAYED) {
    throw bad("FILES.fds", `${relays} relayed descriptors, more than ${MAX_RELAYED}`);
  }
  return fds;
}

/**
 * Throws unless every descriptor an epoll instance watches is one of the
 * image's (`numbers`: its descriptors and sockets).
 */
export function checkEpollTargets(fds: FdEntry[], numbers: ReadonlySet<number>): void {
  for (const f of fds) {
    for (const it of f.epoll?.items ?? []) {
      if (!numbers.has(it.fd)) {
        throw bad(
          `fd ${f.fd} epoll`,
          `it watches descriptor ${it.fd}, which the image does not hold`,
        );
      }
    }
  }
}
