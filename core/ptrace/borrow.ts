/**
 * System calls run inside a frozen process, which is then given back
 * exactly as it was frozen: what a checkpoint needs to read the state that
 * only the process itself can ask the kernel for (its timers). The calls
 * run in one thread (the leader) with inject.ts, the way CRIU's compel runs
 * its parasite's, and around them:
 *
 * - every signal is blocked (PTRACE_SETSIGMASK), so none is taken while the
 *   thread runs the calls: signals that arrive meanwhile stay pending. Only
 *   SIGSTOP and SIGKILL cannot be blocked; a SIGSTOP, and a signal the
 *   freeze caught the thread with (`Tracee.deliverOnResume`), are queued
 *   again with their siginfo at the end (the thread sends them to itself);
 * - seccomp is suspended (PTRACE_O_SUSPEND_SECCOMP) when the process runs
 *   under it, so that a filter cannot refuse the calls, or kill it for them;
 * - their arguments and results live in scratch memory below the red zone
 *   of its stack, whose bytes are written back after;
 * - its registers are set back (with what the kernel would do on the way
 *   back to user space, `fixRegs`: the calls ran in user space, so the
 *   kernel's rseq fix-up on that way is spent), its signal mask, its ptrace
 *   options; and it is stopped again where a freeze stops a thread
 *   (PTRACE_INTERRUPT, a PTRACE_EVENT_STOP inside the kernel's signal
 *   handling), so that a system call it was in is restarted as it would
 *   have been.
 *
 * The calls may also change the process for good (an execve: the deputy
 * a moved process's original becomes, core/deputy/become.ts): then it is
 * not given back, and the signals caught on the way are queued again by
 * the caller's choice (`Borrowed.requeueCaught`) before the execve.
 *
 * The signal mask is set back as PTRACE_GETSIGMASK reads it: for a thread
 * in sigsuspend, ppoll, pselect or epoll_pwait that is the mask it had
 * before the call, and the call, restarted, sets its own again (what CRIU
 * does too).
 *
 * @module
 */
import {
  decodeWaitStatus,
  E,
  ErrnoError,
  PTRACE,
  ptrace,
  ptraceBuf,
  waitpid,
  WALL,
} from "../../ffi/libc.ts";
import { EXIT, PpmError } from "../errors.ts";
import {
  findSyscallInsn,
  inject,
  type Injector,
  injector,
  type Span,
  spareMapping,
} from "./inject.ts";
import { readMem } from "./memory.ts";
import { getReg, type Tracee } from "./tracee.ts";

/** Most scratch memory, in bytes, that a borrowed process gives below its red zone. */
export const BORROW_SCRATCH = 4096;

/** The red zone below a stack pointer that code may use without moving it (x86-64 ABI). */
const RED_ZONE = 128n;

const NR_RT_TGSIGQUEUEINFO = 297;

/** Size of a siginfo. */
const SIGINFO_SIZE = 128;

/** Where the calls run, and what the process is. */
export interface BorrowPlace {
  /** Its vDSO (a `syscall` instruction there runs the calls). */
  vdso: Span;
  /**
   * Its mappings (the stack its thread's stack pointer is in among them);
   * with their permissions ("rw-p"), a private writable one serves for
   * scratch when the stack has no room below the red zone.
   */
  vmas: readonly (Span & { perms?: string })[];
  /** Whether it runs under seccomp (the filters are then suspended meanwhile). */
  seccomp?: boolean;
  /** The ptrace options it was seized with, set again after (default none). */
  options?: number;
  /**
   * What the kernel would do to its registers on its way back to user
   * space (an rseq critical section aborted), applied to the registers it
   * is given back with when it was not in a system call.
   */
  fixRegs?: (regs: Uint8Array) => Promise<void>;
}

/** An {@link Injector} into a borrowed process: calls, and memory read back. */
export interface Borrowed extends Injector {
  /** Reads `len` bytes of the process's memory at `addr` (what a call wrote). */
  read(addr: bigint, len: number): Promise<Uint8Array>;
  /**
   * Queues again now, in the thread, the signals caught so far (the one the
   * freeze caught it with, a SIGSTOP that stopped it on the way) that
   * `keep` accepts, given their siginfo; the others are dropped. They stay
   * pending, blocked, through what the calls do next (an execve keeps
   * them). Uses the scratch memory.
   */
  requeueCaught(keep?: (info: Uint8Array) => boolean): Promise<void>;
  /**
   * Says the calls changed the thread for good (it ran execve): it is not
   * given back at the end, but left in the stop it is in for the caller.
   */
  consumed(): void;
}

function died(pid: number, cause?: unknown): PpmError {
  return new PpmError(
    `process ${pid} ended while frozen`,
    "it was killed while ppm read its state",
    "",
    EXIT.FAILURE,
    cause ? { cause } : undefined,
  );
}

/** The siginfo of the signal the thread is stopped for (a signal-delivery stop). */
function siginfo(t: Tracee): Uint8Array<ArrayBuffer> {
  const info = new Uint8Array(SIGINFO_SIZE);
  ptraceBuf(PTRACE.GETSIGINFO, t.pid, 0n, info);
  return info;
}

/**
 * Stops the thread again as a freeze does: a PTRACE_EVENT_STOP inside the
 * kernel's signal handling, on its way back to user space. A signal that
 * stops it first is kept for its resume, as a freeze keeps it.
 */
function stopAgain(t: Tracee): void {
  ptrace(PTRACE.INTERRUPT, t.pid);
  ptrace(PTRACE.CONT, t.pid, 0n, 0n);
  for (let i = 0; i < 64; i++) {
    const [, status] = waitpid(t.pid, WALL);
    const w = decodeWaitStatus(status);
    if (!w.stopped) throw died(t.pid);
    if (w.event !== 0) return;
    if (w.stopSig !== 5 && w.stopSig !== (5 | 0x80)) {
      t.deliverOnResume = w.stopSig;
      return;
    }
    ptrace(PTRACE.CONT, t.pid, 0n, 0n);
  }
  throw new PpmError(`process ${t.pid} did not stop again`, "too many stops", "");
}

/**
 * Where the calls' scratch memory goes (saved first, written back after):
 * below the red zone under stack pointer `rsp`, within its mapping; or, when
 * the stack pointer sits at the bottom of its mapping (a stack that just
 * grew), at the start of a private writable mapping (every thread is
 * stopped meanwhile, and the bytes are put back).
 */
export function scratchSpan(
  pid: number,
  rsp: bigint,
  vmas: readonly (Span & { perms?: string })[],
): { low: bigint; top: bigint } {
  const stack = vmas.find((v) => v.start <= rsp && rsp <= v.end);
  const top = rsp - RED_ZONE;
  let low = (top - BigInt(BORROW_SCRATCH)) & ~15n;
  if (stack && low < stack.start) low = stack.start;
  if (stack && top - low >= BigInt(SIGINFO_SIZE)) return { low, top };
  const other = spareMapping(
    vmas,
    (v) => v !== stack && !!v.perms?.startsWith("rw") && v.perms.endsWith("p"),
    BigInt(BORROW_SCRATCH),
  );
  if (other) return { low: other.start, top: other.start + BigInt(BORROW_SCRATCH) };
  throw new PpmError(
    `cannot read the state of process ${pid}`,
    `its stack pointer (0x${
      rsp.toString(16)
    }) leaves no room in a mapping for ppm's system calls, and it has no private writable mapping`,
    "",
  );
}

/**
 * Runs `fn` with system calls in the frozen thread `t` (see the module's
 * text) and gives the thread back as it was frozen, also when `fn` throws.
 * Throws a PpmError when the process runs under seccomp and the kernel
 * does not let ppm suspend it, or when it dies meanwhile.
 */
export async function borrow<T>(
  t: Tracee,
  place: BorrowPlace,
  fn: (inj: Borrowed) => Promise<T>,
): Promise<T> {
  const regs = t.getRegs();
  const mask = t.getSigmask();
  const back = regs.slice();
  if (BigInt.asIntN(64, getReg(regs, "orig_rax")) < 0n) await place.fixRegs?.(back);
  const at = await findSyscallInsn(t.pid, place.vdso.start, place.vdso.end);
  const rsp = getReg(regs, "rsp");
  const { low, top } = scratchSpan(t.pid, rsp, place.vmas);
  const saved = await readMem(t.pid, low, Number(top - low));
  // The signals to queue again at the end: the one the freeze caught it with, first.
  const caught: Uint8Array[] = t.deliverOnResume ? [siginfo(t)] : [];
  const onSignal = () => caught.push(siginfo(t));

  try {
    ptrace(
      PTRACE.SETOPTIONS,
      t.pid,
      0n,
      BigInt(PTRACE.O_TRACESYSGOOD | (place.seccomp ? PTRACE.O_SUSPEND_SECCOMP : 0)),
    );
  } catch (e) {
    throw new PpmError(
      `cannot read the state of process ${t.pid}`,
      "it runs under seccomp, and the kernel does not let ppm suspend its filters for the " +
        `system calls it reads that state with (PTRACE_O_SUSPEND_SECCOMP: ${(e as Error).message})`,
      "run ppm as root (CAP_SYS_ADMIN), on a kernel built with CONFIG_CHECKPOINT_RESTORE",
      EXIT.FAILURE,
      { cause: e },
    );
  }
  t.setSigmask((1n << 64n) - 1n);
  let gone = false;
  let changed = false;
  const inj: Borrowed = {
    write: injector(t, at, regs, rsp, place.vmas).write,
    read: (addr, len) => readMem(t.pid, addr, len),
    call: (nr, args) => {
      try {
        return inject(t, at, regs, nr, args, onSignal);
      } catch (e) {
        gone = true;
        // inject throws a PpmError only when the process ended.
        const ended = e instanceof PpmError || (e instanceof ErrnoError && e.errno === E.ESRCH);
        throw ended ? died(t.pid, e) : e;
      }
    },
    scratch: (bytes) => {
      const addr = (top - BigInt(bytes)) & ~15n;
      if (bytes > BORROW_SCRATCH || addr < low) {
        throw new PpmError(
          `cannot read the state of process ${t.pid}`,
          `no room for ${bytes} bytes of scratch memory`,
          "",
        );
      }
      return addr;
    },
    requeueCaught: async (keep = () => true) => {
      await queueAgain(t, inj, caught.splice(0).filter(keep));
      t.deliverOnResume = 0;
    },
    consumed: () => {
      changed = true;
    },
  };
  const restore = async () => {
    if (changed) return;
    await giveBack(t, inj, caught, { at: low, bytes: saved });
    t.setRegs(back);
    t.setSigmask(mask);
    ptrace(PTRACE.SETOPTIONS, t.pid, 0n, BigInt(place.options ?? 0));
    stopAgain(t);
  };
  let result: T;
  try {
    result = await fn(inj);
  } catch (e) {
    if (!gone) await restore();
    throw e;
  }
  await restore();
  return result;
}

/** Queues the caught signals again (still blocked) and writes the scratch memory back. */
async function giveBack(
  t: Tracee,
  inj: Borrowed,
  caught: Uint8Array[],
  saved: { at: bigint; bytes: Uint8Array },
): Promise<void> {
  if (caught.length) {
    await queueAgain(t, inj, caught);
    t.deliverOnResume = 0;
  }
  await inj.write(saved.at, saved.bytes);
}

/** Queues signals `infos` (their siginfo) again in thread `t`, by calls in it. */
async function queueAgain(t: Tracee, inj: Borrowed, infos: Uint8Array[]): Promise<void> {
  if (infos.length) {
    const at = inj.scratch(SIGINFO_SIZE);
    for (const info of infos) {
      await inj.write(at, info);
      const sig = new DataView(info.buffer, info.byteOffset).getInt32(0, true);
      const pid = BigInt(t.pid);
      const r = inj.call(NR_RT_TGSIGQUEUEINFO, [pid, pid, BigInt(sig), at]);
      if (r < 0n) {
        throw new PpmError(
          `cannot give process ${t.pid} back as it was frozen`,
          `queueing signal ${sig} again failed (errno ${-r})`,
          "it may have lost that signal",
        );
      }
    }
  }
}
