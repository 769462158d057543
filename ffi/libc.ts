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

/** x86-64 system call numbers used through `syscall(2)`. */
export const SYS = {
  delete_module: 176,
  finit_module: 313,
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

function errno(): number {
  const p = libc().__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

function cstr(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(s + "\0");
}

/** open(2) flags ppm uses. */
export const O = { RDONLY: 0, RDWR: 2, CREAT: 0o100, CLOEXEC: 0o2000000 } as const;

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
export const DELETE_MODULE = { O_NONBLOCK: 0o4000, O_TRUNC: 0o1000 } as const;

/** delete_module(2); throws {@link ErrnoError}. */
export function deleteModule(name: string, flags: number = DELETE_MODULE.O_NONBLOCK): void {
  const r = libc().syscall_delete_module(BigInt(SYS.delete_module), cstr(name), BigInt(flags));
  if (r < 0n) throw new ErrnoError("delete_module", errno(), name);
}
