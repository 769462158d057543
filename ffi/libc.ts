/**
 * libc bindings through Deno FFI: the system calls ppm needs that Deno does
 * not expose. The library is opened lazily, on first use, so commands that
 * never touch the kernel (help, completions) work anywhere.
 *
 * All symbols are synchronous: they run on the calling JS thread, which is
 * what ptrace-style calls in later steps require.
 *
 * @module
 */

/** Bytes per memory page (x86-64); also the page of ppm's image format and of the module's plans. */
export const PAGE_SIZE = 4096;

/** x86-64 system call numbers used through `syscall(2)`. */
export const SYS = {
  delete_module: 176,
  finit_module: 313,
  tgkill: 234,
} as const;

const symbols = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  flock: { parameters: ["i32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  syscall_finit_module: {
    name: "syscall",
    parameters: ["i64", "i64", "buffer", "i64"],
    result: "i64",
  },
  ptrace_int: { name: "ptrace", parameters: ["i64", "i32", "u64", "u64"], result: "i64" },
  ptrace_buf: { name: "ptrace", parameters: ["i64", "i32", "u64", "buffer"], result: "i64" },
  waitpid: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  kill: { parameters: ["i32", "i32"], result: "i32" },
  mkfifo: { parameters: ["buffer", "u32"], result: "i32" },
  write_nb: {
    name: "write",
    parameters: ["i32", "buffer", "usize"],
    result: "isize",
    nonblocking: true,
  },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  read_nb: {
    name: "read",
    parameters: ["i32", "buffer", "usize"],
    result: "isize",
    nonblocking: true,
  },
  poll_nb: { name: "poll", parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  process_vm_readv_nb: {
    name: "process_vm_readv",
    parameters: ["i32", "buffer", "u64", "buffer", "u64", "u64"],
    result: "isize",
    nonblocking: true,
  },
  syscall2: { name: "syscall", parameters: ["i64", "i64", "i64"], result: "i64" },
  syscall3: { name: "syscall", parameters: ["i64", "i64", "i64", "i64"], result: "i64" },
  syscall_delete_module: {
    name: "syscall",
    parameters: ["i64", "buffer", "i64"],
    result: "i64",
  },
} as const satisfies Deno.ForeignLibraryInterface;

let lib: Deno.DynamicLibrary<typeof symbols> | undefined;

function libc(): Deno.DynamicLibrary<typeof symbols>["symbols"] {
  if (!lib) lib = Deno.dlopen("libc.so.6", symbols);
  return lib.symbols;
}

/** Errno names for the values ppm reports; the rest print as numbers. */
export const ERRNO: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  8: "ENOEXEC",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  22: "EINVAL",
  25: "ENOTTY",
  38: "ENOSYS",
  61: "ENODATA",
  74: "EBADMSG",
  95: "EOPNOTSUPP",
  98: "EADDRINUSE",
  99: "EADDRNOTAVAIL",
  126: "ENOKEY",
  129: "EKEYREJECTED",
};

/** Errno values by name, for the ones ppm branches on. */
export const E = Object.fromEntries(
  Object.entries(ERRNO).map(([n, name]) => [name, Number(n)]),
) as Record<string, number>;

/** A failed system call: which one, on what, and errno. */
export class ErrnoError extends Error {
  /** Creates the error for `call` failing with `errno` on `subject`. */
  constructor(
    readonly call: string,
    readonly errno: number,
    readonly subject = "",
  ) {
    super(`${call}${subject ? `(${subject})` : ""}: ${errnoName(errno)}`);
    this.name = "ErrnoError";
  }

  /** The symbolic name of errno, e.g. `EPERM`. */
  get code(): string {
    return errnoName(this.errno);
  }
}

/** The symbolic name of an errno value, or `errno N`. */
export function errnoName(errno: number): string {
  return ERRNO[errno] ?? `errno ${errno}`;
}

/** The calling thread's errno (the same variable whichever library handle made the call). */
export function errno(): number {
  const p = libc().__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

function cstr(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(s + "\0");
}

/** open(2) flags ppm uses (x86-64 values; also what /proc/PID/fdinfo's `flags` holds). */
export const O = {
  RDONLY: 0,
  WRONLY: 1,
  RDWR: 2,
  /** The access-mode bits (RDONLY, WRONLY or RDWR). */
  ACCMODE: 3,
  CREAT: 0o100,
  TRUNC: 0o1000,
  APPEND: 0o2000,
  NONBLOCK: 0o4000,
  CLOEXEC: 0o2000000,
} as const;

/** open(2); throws {@link ErrnoError}. */
export function open(path: string, flags: number, mode = 0): number {
  const fd = libc().open(cstr(path), flags | O.CLOEXEC, mode);
  if (fd < 0) throw new ErrnoError("open", errno(), path);
  return fd;
}

/** close(2); errors are ignored as there is nothing to do about them. */
export function close(fd: number): void {
  libc().close(fd);
}

/** ioctl(2) with a buffer argument; throws {@link ErrnoError}. */
export function ioctl(fd: number, request: bigint, arg: Uint8Array<ArrayBuffer>): number {
  const r = libc().ioctl(fd, request, arg);
  if (r < 0) throw new ErrnoError("ioctl", errno(), `0x${request.toString(16)}`);
  return r;
}

/** flock(2) operations. */
export const LOCK = { EX: 2, NB: 4, UN: 8 } as const;

/** flock(2); returns false when LOCK_NB was given and the lock is held elsewhere. */
export function flock(fd: number, op: number): boolean {
  if (libc().flock(fd, op) === 0) return true;
  const e = errno();
  if (e === E.EAGAIN) return false;
  throw new ErrnoError("flock", e);
}

/** finit_module(2): loads the module file open at `fd`; throws {@link ErrnoError}. */
export function finitModule(fd: number, params = "", flags = 0): void {
  const r = libc().syscall_finit_module(
    BigInt(SYS.finit_module),
    BigInt(fd),
    cstr(params),
    BigInt(flags),
  );
  if (r < 0n) throw new ErrnoError("finit_module", errno());
}

/** delete_module(2) flags. */
export const DELETE_MODULE = { O_NONBLOCK: O.NONBLOCK, O_TRUNC: O.TRUNC } as const;

/** delete_module(2); throws {@link ErrnoError}. */
export function deleteModule(name: string, flags: number = DELETE_MODULE.O_NONBLOCK): void {
  const r = libc().syscall_delete_module(BigInt(SYS.delete_module), cstr(name), BigInt(flags));
  if (r < 0n) throw new ErrnoError("delete_module", errno(), name);
}

/** ptrace(2) requests ppm uses (x86-64). */
export const PTRACE = {
  CONT: 7,
  KILL: 8,
  SETOPTIONS: 0x4200,
  GETSIGINFO: 0x4202,
  GETREGS: 12,
  SETREGS: 13,
  DETACH: 17,
  SYSCALL: 24,
  GETREGSET: 0x4204,
  SETREGSET: 0x4205,
  SEIZE: 0x4206,
  INTERRUPT: 0x4207,
  LISTEN: 0x4208,
  PEEKSIGINFO: 0x4209,
  GETSIGMASK: 0x420a,
  SETSIGMASK: 0x420b,
  SECCOMP_GET_FILTER: 0x420c,
  SECCOMP_GET_METADATA: 0x420d,
  O_TRACESYSGOOD: 1,
  O_EXITKILL: 1 << 20,
  O_SUSPEND_SECCOMP: 1 << 21,
  EVENT_STOP: 128,
} as const;

/** ptrace(2) with integer addr and data; throws {@link ErrnoError}. */
export function ptrace(req: number, pid: number, addr: bigint = 0n, data: bigint = 0n): bigint {
  const r = libc().ptrace_int(BigInt(req), pid, addr, data);
  if (r < 0n) throw new ErrnoError("ptrace", errno(), `${req}, ${pid}`);
  return r;
}

/** ptrace(2) with a buffer as data; throws {@link ErrnoError}. */
export function ptraceBuf(
  req: number,
  pid: number,
  addr: bigint,
  data: Uint8Array<ArrayBuffer>,
): bigint {
  const r = libc().ptrace_buf(BigInt(req), pid, addr, data);
  if (r < 0n) throw new ErrnoError("ptrace", errno(), `${req}, ${pid}`);
  return r;
}

/** waitpid(2) option: wait for all children, threads included. */
export const WALL = 0x40000000;
/** waitpid(2) option: do not block. */
export const WNOHANG = 1;

/** waitpid(2); returns [pid, status]; throws {@link ErrnoError}. */
export function waitpid(pid: number, options: number): [number, number] {
  const st = new Uint8Array(4);
  const r = libc().waitpid(pid, st, options);
  if (r < 0) throw new ErrnoError("waitpid", errno(), String(pid));
  return [r, new DataView(st.buffer).getInt32(0, true)];
}

/** A waitpid(2) status, decoded as the C macros do (each value is meaningful only under its flag). */
export interface WaitStatus {
  /** WIFEXITED: the process called exit. */
  exited: boolean;
  /** WEXITSTATUS: its exit code. */
  code: number;
  /** WIFSIGNALED: a signal ended it. */
  signaled: boolean;
  /** WTERMSIG: that signal. */
  signal: number;
  /** WIFSTOPPED: it is in a stop (a ptrace stop, or a job-control stop). */
  stopped: boolean;
  /** WSTOPSIG: the stop's signal (SIGTRAP | 0x80 for a syscall stop under PTRACE_O_TRACESYSGOOD). */
  stopSig: number;
  /** The PTRACE_EVENT_* of a stop (status >> 16); 0 for none. */
  event: number;
}

/** Decodes a waitpid(2) status: WIFEXITED, WEXITSTATUS, WIFSIGNALED, WTERMSIG, WIFSTOPPED, WSTOPSIG. */
export function decodeWaitStatus(status: number): WaitStatus {
  const low = status & 0x7f;
  const stopped = (status & 0xff) === 0x7f;
  return {
    exited: low === 0,
    code: (status >> 8) & 0xff,
    signaled: low !== 0 && low !== 0x7f,
    signal: low,
    stopped,
    stopSig: (status >> 8) & 0xff,
    event: stopped ? (status >> 16) & 0xff : 0,
  };
}

/** tgkill(2): signal `sig` to thread `tid` of process `tgid`; throws {@link ErrnoError}. */
export function tgkill(tgid: number, tid: number, sig: number): void {
  if (libc().syscall3(BigInt(SYS.tgkill), BigInt(tgid), BigInt(tid), BigInt(sig)) < 0n) {
    throw new ErrnoError("tgkill", errno(), `${tgid}, ${tid}, ${sig}`);
  }
}

/** kill(2); throws {@link ErrnoError}. */
export function kill(pid: number, sig: number): void {
  if (libc().kill(pid, sig) < 0) throw new ErrnoError("kill", errno(), `${pid}, ${sig}`);
}

/** The address of a buffer, for structures that carry pointers (iovec). */
export function addressOf(buf: Uint8Array<ArrayBuffer>): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

/** mkfifo(3); throws {@link ErrnoError}. */
export function mkfifo(path: string, mode = 0o600): void {
  if (libc().mkfifo(cstr(path), mode) < 0) throw new ErrnoError("mkfifo", errno(), path);
}

/** pidfd_open(2): a descriptor for process `pid`; throws {@link ErrnoError}. */
export function pidfdOpen(pid: number): number {
  const r = libc().syscall2(434n, BigInt(pid), 0n);
  if (r < 0n) throw new ErrnoError("pidfd_open", errno(), String(pid));
  return Number(r);
}

/** pidfd_getfd(2): a copy of descriptor `fd` of the process behind `pidfd`. */
export function pidfdGetfd(pidfd: number, fd: number): number {
  const r = libc().syscall3(438n, BigInt(pidfd), BigInt(fd), 0n);
  if (r < 0n) throw new ErrnoError("pidfd_getfd", errno(), String(fd));
  return Number(r);
}

/**
 * write(2) of all of `data` to a raw descriptor, on a worker thread (it may
 * block on a full pipe); throws {@link ErrnoError}.
 */
export async function writeFd(fd: number, data: Uint8Array<ArrayBuffer>): Promise<void> {
  for (let off = 0; off < data.length;) {
    const n = await libc().write_nb(fd, data.subarray(off), BigInt(data.length - off));
    if (n <= 0n) throw new ErrnoError("write", 5, String(fd));
    off += Number(n);
  }
}

/**
 * Waits up to `timeoutMs` for raw descriptor `fd` to be readable, then
 * read(2)s into `buf`, both on a worker thread (a terminal or a pipe may
 * have nothing for a long time).
 *
 * @returns the bytes read, 0 at end of file, or null when nothing came in time
 * @throws ErrnoError when poll or read fails (the descriptor is unusable)
 */
export async function readFdWithin(
  fd: number,
  buf: Uint8Array<ArrayBuffer>,
  timeoutMs: number,
): Promise<number | null> {
  const pfd = new Uint8Array(8);
  const v = new DataView(pfd.buffer);
  v.setInt32(0, fd, true);
  v.setInt16(4, 1, true); // POLLIN
  const r = await libc().poll_nb(pfd, 1n, Math.max(0, Math.floor(timeoutMs)));
  if (r === 0) return null;
  if (r < 0) return null; // EINTR: the caller asks again
  if (v.getInt16(6, true) & 0x20) throw new ErrnoError("poll", 9, String(fd)); // POLLNVAL
  const n = await libc().read_nb(fd, buf, BigInt(buf.length));
  if (n < 0n) throw new ErrnoError("read", 5, String(fd));
  return Number(n);
}

/**
 * Waits up to `timeoutMs` (on a worker thread) until raw descriptor `fd` is
 * readable or at its end; false when the time passed (or a signal came).
 * Throws {@link ErrnoError} when `fd` is not open.
 */
export async function pollIn(fd: number, timeoutMs: number): Promise<boolean> {
  const pfd = new Uint8Array(8);
  const v = new DataView(pfd.buffer);
  v.setInt32(0, fd, true);
  v.setInt16(4, 1, true); // POLLIN
  const r = await libc().poll_nb(pfd, 1n, Math.max(0, Math.floor(timeoutMs)));
  if (r <= 0) return false;
  if (v.getInt16(6, true) & 0x20) throw new ErrnoError("poll", 9, String(fd)); // POLLNVAL
  return true;
}

/** poll(2) events and results. */
export const POLL = { IN: 1, OUT: 4, ERR: 8, HUP: 0x10, NVAL: 0x20 } as const;

/**
 * poll(2) on a worker thread: `pfds` holds `struct pollfd` records (8 bytes
 * each: fd, events, revents), whose revents the kernel fills; waits up to
 * `timeoutMs`. Returns how many have events, 0 when the time passed, -1
 * when the call failed or a signal came (errno is the worker's: ask again).
 * `pfds` must not be touched until it resolves.
 */
export function pollMany(pfds: Uint8Array<ArrayBuffer>, timeoutMs: number): Promise<number> {
  return libc().poll_nb(pfds, BigInt(pfds.length / 8), Math.max(0, Math.floor(timeoutMs)));
}

/**
 * read(2) of a non-blocking descriptor, at once: the bytes read, 0 at end of
 * file, or null when nothing is there now (EAGAIN, EINTR). Throws
 * {@link ErrnoError} otherwise.
 */
export function readNow(fd: number, buf: Uint8Array<ArrayBuffer>): number | null {
  const n = Number(libc().read(fd, buf, BigInt(buf.length)));
  if (n >= 0) return n;
  const e = errno();
  if (e === 11 || e === 4) return null;
  throw new ErrnoError("read", e, String(fd));
}

/**
 * Copies `buf.length` bytes at `addr` in process `pid` into `buf` with
 * process_vm_readv(2), on a worker thread: one copy, straight from the
 * process's pages (reading /proc/PID/mem goes through a bounce page). Needs
 * what ptrace attach needs. The process must not unmap the range meanwhile.
 *
 * @returns the bytes copied: fewer than asked when the range reaches memory
 *   the call cannot read (a mapping without read permission, say), or -1 when
 *   it fails at once (errno is not kept: it belongs to the worker thread)
 */
export async function processVmRead(
  pid: number,
  addr: bigint,
  buf: Uint8Array<ArrayBuffer>,
): Promise<number> {
  const local = new BigUint64Array([addressOf(buf), BigInt(buf.length)]);
  const remote = new BigUint64Array([addr, BigInt(buf.length)]);
  const n = await libc().process_vm_readv_nb(
    pid,
    new Uint8Array(local.buffer),
    1n,
    new Uint8Array(remote.buffer),
    1n,
    0n,
  );
  return Number(n);
}
