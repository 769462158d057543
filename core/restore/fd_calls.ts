/**
 * The system calls the restored process makes to get its kernel objects
 * back (fds.ts), through an {@link Injector}: numbers, flags, checked
 * results, memory for their arguments, and the move of a new descriptor to
 * the number the image gives it.
 *
 * The process's memory is its image's by then, so arguments go where
 * nothing of it lives: small ones below its stack's red zone (the
 * injector's scratch), data (pipe contents, queued messages, memfd
 * contents) in a private anonymous mapping made for the purpose and
 * removed after.
 *
 * @module
 */
import { PAGE_SIZE } from "../../ffi/libc.ts";
import { PpmError } from "../errors.ts";
import type { Injector } from "../ptrace/inject.ts";
import { readMem } from "../ptrace/memory.ts";

/** x86-64 system call numbers. */
export const NR = {
  write: 1,
  close: 3,
  lseek: 8,
  mmap: 9,
  munmap: 11,
  ioctl: 16,
  pwrite64: 18,
  socket: 41,
  connect: 42,
  sendto: 44,
  shutdown: 48,
  socketpair: 53,
  setsockopt: 54,
  fcntl: 72,
  ftruncate: 77,
  fchmod: 91,
  clock_gettime: 228,
  epoll_ctl: 233,
  openat: 257,
  timerfd_create: 283,
  timerfd_settime: 286,
  signalfd4: 289,
  eventfd2: 290,
  epoll_create1: 291,
  dup3: 292,
  pipe2: 293,
  memfd_create: 319,
} as const;

/** Flags (x86-64). */
export const FL = {
  O_RDONLY: 0,
  O_WRONLY: 1,
  O_RDWR: 2,
  O_NONBLOCK: 0o4000,
  O_DIRECT: 0o40000,
  O_CLOEXEC: 0o2000000,
  /** What F_SETFL changes (O_ASYNC is refused at the dump). */
  SETFL_MASK: 0o2000 | 0o4000 | 0o40000 | 0o1000000,
  F_DUPFD_CLOEXEC: 1030,
  F_SETFD: 2,
  F_SETFL: 4,
  F_SETPIPE_SZ: 1031,
  F_GETPIPE_SZ: 1032,
  F_ADD_SEALS: 1033,
  AT_FDCWD: -100,
  MSG_DONTWAIT: 0x40,
  MSG_NOSIGNAL: 0x4000,
} as const;

/** What failed while the restored process remade its descriptor `fd`. */
export function fdError(fd: number, what: string, why: string, fix = ""): PpmError {
  return new PpmError(
    "cannot restore",
    `fd ${fd}: ${what}: ${why}`,
    fix || "the process was not started; nothing else was changed",
  );
}

/** The system calls of one restored process, checked. */
export class Calls {
  #stage?: { addr: bigint; size: number };

  /**
   * @param inj its injector
   * @param pid the process (to read back what a call wrote)
   */
  constructor(readonly inj: Injector, readonly pid: number) {}

  /** Runs `nr`; throws naming descriptor `fd` and `what` when it fails. */
  must(fd: number, what: string, nr: number, args: (bigint | number)[]): bigint {
    const r = this.inj.call(nr, args.map((a) => BigInt.asUintN(64, BigInt(a))));
    if (r < 0n) throw fdError(fd, what, `errno ${-r}`);
    return r;
  }

  /** Runs `nr`; returns its result, negative errno included. */
  try(nr: number, args: (bigint | number)[]): bigint {
    return this.inj.call(nr, args.map((a) => BigInt.asUintN(64, BigInt(a))));
  }

  /** Puts `data` (at most 4 KiB) below the stack's red zone; its address. */
  async small(data: Uint8Array): Promise<bigint> {
    const at = this.inj.scratch(Math.max(16, data.length));
    await this.inj.write(at, data);
    return at;
  }

  /** Reads `len` bytes of the process's memory at `addr`. */
  read(addr: bigint, len: number): Promise<Uint8Array> {
    return readMem(this.pid, addr, len);
  }

  /**
   * Puts `data` in the staging mapping (made, or made larger, as needed);
   * its address there.
   */
  async stage(fd: number, data: Uint8Array): Promise<bigint> {
    const need = Math.max(PAGE_SIZE, Math.ceil(data.length / PAGE_SIZE) * PAGE_SIZE);
    if (!this.#stage || this.#stage.size < need) {
      this.release();
      const addr = this.must(fd, "mapping memory for its contents", NR.mmap, [
        0,
        need,
        3, // PROT_READ | PROT_WRITE
        0x22, // MAP_PRIVATE | MAP_ANONYMOUS
        -1,
        0,
      ]);
      this.#stage = { addr, size: need };
    }
    await this.inj.write(this.#stage.addr, data);
    return this.#stage.addr;
  }

  /** Removes the staging mapping, if one was made. */
  release(): void {
    if (this.#stage) this.try(NR.munmap, [this.#stage.addr, this.#stage.size]);
    this.#stage = undefined;
  }

  /** Closes a descriptor of the process. */
  close(fd: number): void {
    this.try(NR.close, [fd]);
  }

  /** Sets the F_SETFL flags of the description at `fd` to those of `flags`. */
  setFl(fd: number, flags: number): void {
    this.must(fd, "setting its flags", NR.fcntl, [fd, FL.F_SETFL, flags & FL.SETFL_MASK]);
  }

  /**
   * Moves the new descriptor `temp` to `target`, close-on-exec as `flags`
   * says. `live`: the other new descriptors of the same object still to be
   * placed; one that sits on `target` is moved away first (its entry
   * updated).
   */
  place(temp: number, target: number, flags: number, live: number[] = []): void {
    const cloexec = (flags & FL.O_CLOEXEC) !== 0;
    if (temp === target) {
      this.must(target, "setting close-on-exec", NR.fcntl, [target, FL.F_SETFD, cloexec ? 1 : 0]);
      return;
    }
    const i = live.indexOf(target);
    if (i >= 0) {
      live[i] = Number(this.must(target, "moving a new descriptor", NR.fcntl, [
        target,
        FL.F_DUPFD_CLOEXEC,
        0,
      ]));
      this.close(target);
    }
    this.must(target, "putting it at its number", NR.dup3, [
      temp,
      target,
      cloexec ? FL.O_CLOEXEC : 0,
    ]);
    this.close(temp);
  }
}

/** `n` as 8 little-endian bytes. */
export function u64(...ns: bigint[]): Uint8Array {
  const b = new Uint8Array(8 * ns.length);
  const v = new DataView(b.buffer);
  ns.forEach((n, i) => v.setBigUint64(i * 8, BigInt.asUintN(64, n), true));
  return b;
}

/** `s` as a NUL-terminated string. */
export function cstr(s: string): Uint8Array {
  const e = new TextEncoder().encode(s);
  const b = new Uint8Array(e.length + 1);
  b.set(e);
  return b;
}
