/**
 * Descriptor system calls through Deno FFI, for carrying a process's
 * descriptors: fcntl, pipe2, tee, pread, pwrite, copy_file_range, write, kcmp and timerfd_gettime
 * on raw descriptors (ppm's own, or its copies of a process's taken with
 * pidfd_getfd, see libc.ts). All synchronous, on the calling thread; errno
 * is read right after each call. None of them may block: callers use them
 * on descriptors that are non-blocking or whose state says they cannot.
 *
 * @module
 */
import { errno, ErrnoError } from "./libc.ts";

const symbols = {
  fcntl: { parameters: ["i32", "i32", "i64"], result: "i32" },
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  tee: { parameters: ["i32", "i32", "usize", "u32"], result: "isize" },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  copy_file_range: {
    parameters: ["i32", "buffer", "i32", "buffer", "usize", "u32"],
    result: "isize",
  },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  syscall5: {
    name: "syscall",
    parameters: ["i64", "i64", "i64", "i64", "i64", "i64"],
    result: "i64",
  },
  syscall_kcmp_slot: {
    name: "syscall",
    parameters: ["i64", "i64", "i64", "i64", "i64", "buffer"],
    result: "i64",
  },
  syscall_buf: { name: "syscall", parameters: ["i64", "i64", "buffer"], result: "i64" },
} as const satisfies Deno.ForeignLibraryInterface;

let lib: Deno.DynamicLibrary<typeof symbols> | undefined;

function c(): Deno.DynamicLibrary<typeof symbols>["symbols"] {
  if (!lib) lib = Deno.dlopen("libc.so.6", symbols);
  return lib.symbols;
}

/** fcntl(2) commands ppm uses (x86-64). */
export const F = {
  DUPFD: 0,
  GETFD: 1,
  SETFD: 2,
  GETFL: 3,
  SETFL: 4,
  DUPFD_CLOEXEC: 1030,
  SETPIPE_SZ: 1031,
  GETPIPE_SZ: 1032,
  ADD_SEALS: 1033,
  GET_SEALS: 1034,
} as const;

/** splice(2)/tee(2) flags. */
export const SPLICE_F = { NONBLOCK: 2 } as const;

/** kcmp(2) types. */
export const KCMP = { FILE: 0, EPOLL_TFD: 7 } as const;

/** x86-64 system call numbers for the calls glibc does not wrap. */
const NR = { kcmp: 312, timerfd_gettime: 287 } as const;

/** fcntl(2) with an integer argument; returns its result; throws {@link ErrnoError}. */
export function fcntl(fd: number, cmd: number, arg = 0): number {
  const r = c().fcntl(fd, cmd, BigInt(arg));
  if (r < 0) throw new ErrnoError("fcntl", errno(), `${fd}, ${cmd}`);
  return r;
}

/** pipe2(2): [read end, write end] of a new pipe of ppm's own (close-on-exec added). */
export function pipe2(flags = 0): [number, number] {
  const fds = new Int32Array(2);
  if (c().pipe2(new Uint8Array(fds.buffer), flags | 0o2000000) < 0) {
    throw new ErrnoError("pipe2", errno());
  }
  return [fds[0], fds[1]];
}

/**
 * tee(2): copies up to `len` bytes from pipe `from` into pipe `to` without
 * consuming them; returns the bytes copied (0 when `from` is empty).
 */
export function tee(from: number, to: number, len: number, flags = SPLICE_F.NONBLOCK): number {
  const r = c().tee(from, to, BigInt(len), flags);
  if (r < 0n) {
    const e = errno();
    if (e === 11) return 0; // EAGAIN: nothing in it
    throw new ErrnoError("tee", e, `${from}, ${to}`);
  }
  return Number(r);
}

/** pread(2) of up to `buf.length` bytes at `offset` (the file position stays); bytes read. */
export function pread(fd: number, buf: Uint8Array<ArrayBuffer>, offset: number): number {
  const r = c().pread(fd, buf, BigInt(buf.length), BigInt(offset));
  if (r < 0n) throw new ErrnoError("pread", errno(), String(fd));
  return Number(r);
}

/** pwrite(2) of all of `buf` at `offset` (the file position stays); throws on failure. */
export function pwriteAll(fd: number, buf: Uint8Array<ArrayBuffer>, offset: number): void {
  for (let done = 0; done < buf.length;) {
    const r = c().pwrite(fd, buf.subarray(done), BigInt(buf.length - done), BigInt(offset + done));
    if (r <= 0n) throw new ErrnoError("pwrite", r < 0n ? errno() : 5, String(fd));
    done += Number(r);
  }
}

/**
 * copy_file_range(2) of `len` bytes from `fdIn` at `offIn` to `fdOut` at
 * `offOut`, all of them (the kernel copies; the file positions stay);
 * throws on failure or a short source.
 */
export function copyRange(
  fdIn: number,
  offIn: number,
  fdOut: number,
  offOut: number,
  len: number,
): void {
  const inOff = new BigInt64Array([BigInt(offIn)]);
  const outOff = new BigInt64Array([BigInt(offOut)]);
  const inB = new Uint8Array(inOff.buffer), outB = new Uint8Array(outOff.buffer);
  for (let left = len; left > 0;) {
    const r = c().copy_file_range(fdIn, inB, fdOut, outB, BigInt(left), 0);
    if (r <= 0n) throw new ErrnoError("copy_file_range", r < 0n ? errno() : 5, String(fdIn));
    left -= Number(r);
  }
}

/** read(2) into `buf`; bytes read, or null for EAGAIN; throws {@link ErrnoError} otherwise. */
export function readSome(fd: number, buf: Uint8Array<ArrayBuffer>): number | null {
  const r = c().read(fd, buf, BigInt(buf.length));
  if (r >= 0n) return Number(r);
  const e = errno();
  if (e === 11) return null;
  throw new ErrnoError("read", e, String(fd));
}

/** write(2) of `buf`; bytes written, or null for EAGAIN; throws {@link ErrnoError} otherwise. */
export function writeSome(fd: number, buf: Uint8Array<ArrayBuffer>): number | null {
  const r = c().write(fd, buf, BigInt(buf.length));
  if (r >= 0n) return Number(r);
  const e = errno();
  if (e === 11) return null;
  throw new ErrnoError("write", e, String(fd));
}

/** close(2) of a raw descriptor; errors are ignored. */
export function closeFd(fd: number): void {
  c().close(fd);
}

/**
 * kcmp(2) KCMP_FILE: whether descriptor `fd1` of `pid1` and `fd2` of
 * `pid2` are the same open file description. Throws {@link ErrnoError}
 * (ENOSYS: a kernel without kcmp; EBADF: a descriptor closed meanwhile).
 */
export function sameFile(pid1: number, fd1: number, pid2: number, fd2: number): boolean {
  const r = c().syscall5(
    BigInt(NR.kcmp),
    BigInt(pid1),
    BigInt(pid2),
    BigInt(KCMP.FILE),
    BigInt(fd1),
    BigInt(fd2),
  );
  if (r < 0n) throw new ErrnoError("kcmp", errno(), `${pid1}:${fd1}, ${pid2}:${fd2}`);
  return r === 0n;
}

/**
 * kcmp(2) KCMP_EPOLL_TFD: whether descriptor `fd` of `pid` is the file that
 * epoll instance `epfd` of the same process watches under number `tfd`.
 * Throws {@link ErrnoError} (ENOENT: it watches nothing under `tfd`).
 */
export function epollTargetIs(pid: number, fd: number, epfd: number, tfd: number): boolean {
  const slot = new Uint32Array([epfd, tfd, 0]);
  const r = c().syscall_kcmp_slot(
    BigInt(NR.kcmp),
    BigInt(pid),
    BigInt(pid),
    BigInt(KCMP.EPOLL_TFD),
    BigInt(fd),
    new Uint8Array(slot.buffer),
  );
  if (r < 0n) throw new ErrnoError("kcmp", errno(), `${pid}:${fd}, epoll ${epfd} target ${tfd}`);
  return r === 0n;
}

/** A timer's setting as timerfd_gettime(2) reports it: nanoseconds left and interval. */
export interface TimerSetting {
  /** Time left until the next expiry, ns (0: disarmed). */
  valueNs: bigint;
  /** Interval, ns (0: one shot). */
  intervalNs: bigint;
}

/**
 * timerfd_gettime(2) on a timerfd. On a periodic timer that expired and was
 * not read it also counts the expirations missed so far into its ticks and
 * restarts it, as the read that would come next does anyway.
 */
export function timerfdGettime(fd: number): TimerSetting {
  const buf = new BigInt64Array(4);
  const r = c().syscall_buf(BigInt(NR.timerfd_gettime), BigInt(fd), new Uint8Array(buf.buffer));
  if (r < 0n) throw new ErrnoError("timerfd_gettime", errno(), String(fd));
  return {
    intervalNs: buf[0] * 1_000_000_000n + buf[1],
    valueNs: buf[2] * 1_000_000_000n + buf[3],
  };
}
