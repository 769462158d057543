/**
 * System calls run inside a stopped tracee, the way CRIU's compel does it:
 * the tracee's registers are pointed at a `syscall` instruction of its own
 * (in its vDSO), PTRACE_SYSCALL runs it from entry to exit, and the result
 * is read from rax. The restore uses it to finish a process from inside
 * (exe link, credentials, signals, descriptors), and to wait for the
 * restore stub's own system calls.
 *
 * All of it runs on the thread that attached (see tracee.ts).
 *
 * @module
 */
import { decodeWaitStatus, PTRACE, ptrace, waitpid, WALL, WNOHANG } from "../../ffi/libc.ts";
import { PpmError } from "../errors.ts";
import { writeAll } from "../host/write_all.ts";
import { readMem } from "./memory.ts";
import { getReg, setReg, type Tracee } from "./tracee.ts";

/**
 * What is told of a signal that stopped a tracee on its way to a system
 * call (a signal-delivery stop, `sig`), while the tracee still is in that
 * stop: the signal is then suppressed.
 */
export type OnSignal = (sig: number) => void;

/**
 * Waits for the next syscall stop of `t` (entry or exit, with
 * PTRACE_O_TRACESYSGOOD), letting signal stops pass silently (a signal's
 * own stop told to `onSignal` first); returns its registers, or null when
 * it exited.
 */
export function nextSyscallStop(t: Tracee, onSignal?: OnSignal): Uint8Array<ArrayBuffer> | null {
  for (let i = 0; i < 1000; i++) {
    const [, status] = waitpid(t.pid, WALL);
    const w = decodeWaitStatus(status);
    if (!w.stopped) return null;
    if (w.stopSig === (5 | 0x80)) return t.getRegs();
    if (w.event === 0) onSignal?.(w.stopSig);
    // SIGSTOP from the stub, a group stop, or anything else: suppress and go on.
    ptrace(PTRACE.SYSCALL, t.pid, 0n, 0n);
  }
  throw new PpmError("restore stub did not reach its ioctl", "too many stops", "");
}

/** The longest the stub may take to reach its ioctl, or to finish it. */
const STUB_WAIT_MS = 300_000;

/**
 * Like {@link nextSyscallStop}, for the long waits (the stub starting, the
 * module filling the memory): the status is polled, so the agent's event
 * loop runs on meanwhile (announcements, relays). Still this thread, as
 * ptrace requires.
 */
export async function nextSyscallStopAsync(t: Tracee): Promise<Uint8Array<ArrayBuffer> | null> {
  const deadline = Date.now() + STUB_WAIT_MS;
  for (let i = 0; i < 1000; i++) {
    let status = 0;
    for (let pause = 0;; pause = Math.min(20, pause * 2 + 1)) {
      const [r, st] = waitpid(t.pid, WALL | WNOHANG);
      if (r === t.pid) {
        status = st;
        break;
      }
      if (Date.now() > deadline) {
        throw new PpmError(
          "cannot restore",
          `the restore stub did not stop within ${STUB_WAIT_MS / 1000} s`,
          "see dmesg on this node",
        );
      }
      await new Promise((res) => setTimeout(res, pause));
    }
    const w = decodeWaitStatus(status);
    if (!w.stopped) return null;
    if (w.stopSig === (5 | 0x80)) return t.getRegs();
    ptrace(PTRACE.SYSCALL, t.pid, 0n, 0n);
  }
  throw new PpmError("restore stub did not reach its ioctl", "too many stops", "");
}

/**
 * Runs one system call in the stopped tracee at a `syscall` instruction;
 * returns its result.
 *
 * @param at the address of a `syscall` instruction in the tracee
 * @param base the registers it was stopped with (the call's other registers)
 * @param nr the system call's number (x86-64)
 * @param args up to six arguments; missing ones are 0
 * @param onSignal told of a signal that stops it on the way (then suppressed)
 */
export function inject(
  t: Tracee,
  at: bigint,
  base: Uint8Array<ArrayBuffer>,
  nr: number,
  args: bigint[],
  onSignal?: OnSignal,
): bigint {
  const regs = base.slice();
  setReg(regs, "rip", at);
  setReg(regs, "rax", BigInt(nr));
  setReg(regs, "orig_rax", -1n);
  (["rdi", "rsi", "rdx", "r10", "r8", "r9"] as const).forEach((r, i) =>
    setReg(regs, r, args[i] ?? 0n)
  );
  t.setRegs(regs);
  ptrace(PTRACE.SYSCALL, t.pid);
  if (!nextSyscallStop(t, onSignal)) {
    throw new PpmError("the restored process died", "during setup", "");
  }
  ptrace(PTRACE.SYSCALL, t.pid);
  const r = nextSyscallStop(t, onSignal);
  if (!r) throw new PpmError("the restored process died", "during setup", "");
  return BigInt.asIntN(64, getReg(r, "rax"));
}

/**
 * The address of the first `syscall` instruction (0f 05) in the tracee's
 * memory from `vdso` to `end` (its vDSO), where {@link inject} runs calls.
 */
export async function findSyscallInsn(pid: number, vdso: bigint, end: bigint): Promise<bigint> {
  const code = await readMem(pid, vdso, Number(end - vdso));
  for (let i = 0; i + 1 < code.length; i++) {
    if (code[i] === 0x0f && code[i + 1] === 0x05) return vdso + BigInt(i);
  }
  throw new PpmError("cannot finish the restore", "no syscall instruction in the vDSO", "");
}

/** System calls and memory of a stopped process (what creds.ts works with). */
export interface Injector {
  /** Runs system call `nr` in the process; its result (negative errno on failure). */
  call(nr: number, args: bigint[]): bigint;
  /** Writes `data` into the process's memory at `addr`. */
  write(addr: bigint, data: Uint8Array): Promise<void>;
  /** Scratch memory of the process (below its stack's red zone) of at least `bytes`. */
  scratch(bytes: number): bigint;
}

/** A mapping's bounds. */
export interface Span {
  /** First address. */
  start: bigint;
  /** End address (exclusive). */
  end: bigint;
}

/** The most scratch memory any request takes (a seccomp filter: 4096 instructions, 32 KiB). */
export const SPARE_SCRATCH = 64 * 1024;

/** A mapping as the image records it (what {@link lendSpare} looks at). */
export interface SpareCandidate extends Span {
  /** PROT_* bits. */
  prot: number;
  /** VM_* flags. */
  vmFlags: bigint;
  /** Kind (heap, anon, stack, file, vdso, ...). */
  kind: string;
}

/**
 * Scratch memory outside every stack, for a stack pointer with no room
 * below it (a stack that had just grown when it was frozen): the start of
 * a private writable mapping, whose contents were read before and are
 * written back by {@link SpareScratch.putBack}.
 */
export interface SpareScratch {
  /** First address. */
  start: bigint;
  /** Bytes lent. */
  size: number;
  /** Marks it used; its address. */
  use(): bigint;
  /** Writes the saved contents back, when it was used. */
  putBack(): Promise<void>;
}

const PROT_RW = 3;
const VM_SHARED = 0x8n;
const NOT_SPARE = new Set(["stack", "vdso", "vvar", "vsyscall"]);

/**
 * The mapping to lend scratch memory from when a stack has no room: among
 * `vmas` those `usable` and at least `min` bytes long, the lowest `rank`
 * first (the heap before other memory), then the largest. Shared by the
 * checkpoint's borrowed calls (borrow.ts) and the restore's (below).
 */
export function spareMapping<T extends Span>(
  vmas: readonly T[],
  usable: (v: T) => boolean,
  min: bigint,
  rank: (v: T) => number = () => 0,
): T | undefined {
  return vmas.filter((v) => usable(v) && v.end - v.start >= min)
    .sort((a, b) => rank(a) - rank(b) || Number((b.end - b.start) - (a.end - a.start)))[0];
}

/** True when the stack `rsp` points into (one of `vmas`) has `bytes` of room below its red zone. */
function roomBelow(rsp: bigint, vmas: readonly Span[], bytes: number): boolean {
  const stack = vmas.find((v) => v.start <= rsp && rsp <= v.end);
  return !!stack && ((rsp - 128n - BigInt(bytes)) & ~15n) >= stack.start;
}

/**
 * Lends the start of a private writable mapping of stopped process `pid`
 * as scratch memory (its contents saved first), when one of the stack
 * pointers `rsps` it will run with leaves less than {@link SPARE_SCRATCH}
 * bytes below it; undefined when every stack has room, or it has no such
 * mapping. The heap is preferred, then anonymous memory, then a file's
 * private copy.
 */
export async function lendSpare(
  pid: number,
  vmas: readonly SpareCandidate[],
  rsps: readonly bigint[],
): Promise<SpareScratch | undefined> {
  if (rsps.every((rsp) => roomBelow(rsp, vmas, SPARE_SCRATCH))) return undefined;
  const pick = spareMapping(
    vmas,
    (v) =>
      (v.prot & PROT_RW) === PROT_RW && (v.vmFlags & VM_SHARED) === 0n && !NOT_SPARE.has(v.kind),
    4096n,
    (v) => v.kind === "heap" ? 0 : v.kind === "anon" ? 1 : 2,
  );
  if (!pick) return undefined;
  const size = Number(
    pick.end - pick.start < BigInt(SPARE_SCRATCH) ? pick.end - pick.start : BigInt(SPARE_SCRATCH),
  );
  const saved = await readMem(pid, pick.start, size);
  let used = false;
  return {
    start: pick.start,
    size,
    use: () => {
      used = true;
      return pick.start;
    },
    putBack: async () => {
      if (used) await writeMem(pid, pick.start, saved);
      used = false;
    },
  };
}

/** Writes `data` into the memory of process `pid` at `addr`. */
async function writeMem(pid: number, addr: bigint, data: Uint8Array): Promise<void> {
  const mem = await Deno.open(`/proc/${pid}/mem`, { read: true, write: true });
  try {
    await mem.seek(addr, Deno.SeekMode.Start);
    await writeAll(mem, data);
  } finally {
    mem.close();
  }
}

/**
 * System calls and memory of the stopped process `t`; scratch memory lies
 * below the red zone of the stack that `rsp` points into (one of `vmas`),
 * or, when that leaves too little room, in `spare`.
 *
 * @param at the address of a `syscall` instruction in the tracee
 * @param base the registers it was stopped with
 * @param rsp the stack pointer the process will run with
 * @param vmas its mappings
 * @param spare memory lent when the stack has no room (put back by its owner)
 */
export function injector(
  t: Tracee,
  at: bigint,
  base: Uint8Array<ArrayBuffer>,
  rsp: bigint,
  vmas: readonly Span[],
  spare?: SpareScratch,
): Injector {
  return {
    call: (nr, args) => inject(t, at, base, nr, args),
    write: (addr, data) => writeMem(t.pid, addr, data),
    scratch: (bytes) => {
      // Below the red zone only: a deep stack may have little room left below its pointer.
      if (roomBelow(rsp, vmas, bytes)) return (rsp - 128n - BigInt(bytes)) & ~15n;
      if (spare && bytes <= spare.size) return spare.use();
      throw new PpmError(
        "cannot finish the restored process",
        `no room for ${bytes} bytes below its stack pointer, and no private writable mapping to lend`,
        "",
      );
    },
  };
}
