/**
 * Freezing a process invisibly with PTRACE_SEIZE + PTRACE_INTERRUPT (no
 * SIGSTOP, so its parent's job control sees nothing), reading its CPU state
 * in the kernel's stable user formats, and letting it go again.
 *
 * All ptrace and waitpid calls for one tracee must come from one OS thread;
 * the FFI symbols are synchronous, so they run on the JS main thread.
 *
 * @module
 */
import {
  addressOf,
  decodeWaitStatus,
  E,
  ErrnoError,
  kill,
  PTRACE,
  ptrace,
  ptraceBuf,
  waitpid,
  WALL,
} from "../../ffi/libc.ts";
import { EXIT, PpmError } from "../errors.ts";

/** `struct user_regs_struct` field order on x86-64. */
export const REG_NAMES = [
  "r15",
  "r14",
  "r13",
  "r12",
  "rbp",
  "rbx",
  "r11",
  "r10",
  "r9",
  "r8",
  "rax",
  "rcx",
  "rdx",
  "rsi",
  "rdi",
  "orig_rax",
  "rip",
  "cs",
  "eflags",
  "rsp",
  "ss",
  "fs_base",
  "gs_base",
  "ds",
  "es",
  "fs",
  "gs",
] as const;

/** A register name. */
export type RegName = typeof REG_NAMES[number];

/** Size of `struct user_regs_struct`. */
export const REGS_SIZE = REG_NAMES.length * 8;

/** NT_X86_XSTATE regset. */
const NT_X86_XSTATE = 0x202n;

/** Reads register `name` from a raw user_regs_struct. */
export function getReg(regs: Uint8Array, name: RegName): bigint {
  return new DataView(regs.buffer, regs.byteOffset).getBigUint64(REG_NAMES.indexOf(name) * 8, true);
}

/** Writes register `name` into a raw user_regs_struct. */
export function setReg(regs: Uint8Array, name: RegName, v: bigint): void {
  new DataView(regs.buffer, regs.byteOffset).setBigUint64(
    REG_NAMES.indexOf(name) * 8,
    BigInt.asUintN(64, v),
    true,
  );
}

/** Decoded wait status. */
export interface StopInfo {
  /** Whether the task exited or was killed. */
  exited: boolean;
  /** The stop signal (SIGTRAP for ptrace events). */
  sig: number;
  /** PTRACE_EVENT_* in the high byte, 0 for none. */
  event: number;
  /** Raw status. */
  status: number;
}

function decodeStatus(status: number): StopInfo {
  const w = decodeWaitStatus(status);
  return { exited: !w.stopped, sig: w.stopped ? w.stopSig : 0, event: w.event, status };
}

/** A process frozen with ptrace by this thread. */
export class Tracee {
  /** A signal that arrived while freezing and must be delivered on resume. */
  deliverOnResume = 0;
  /**
   * Its siginfo, read in its signal-delivery stop (128 bytes): an image
   * queues it again with it, so the handler sees what it would have seen
   * (a POSIX timer's si_code, id and value), not a kill's.
   */
  deliverInfo?: Uint8Array;
  private attached = false;
  private killed = false;
  private released = false;

  private constructor(readonly pid: number) {}

  /**
   * Seizes and stops `pid`. Throws a PpmError when the kernel does not let
   * the caller trace it (EPERM: not root and not its owner, or not dumpable).
   */
  static freeze(pid: number, opts: { sysgood?: boolean } = {}): Tracee {
    const t = Tracee.attach(pid, opts);
    try {
      ptrace(PTRACE.INTERRUPT, pid);
      t.waitStop();
    } catch (e) {
      t.resume();
      throw e;
    }
    return t;
  }

  /**
   * Attaches to `pid` without stopping it (it is expected to stop itself).
   * With `exitKill` the kernel kills it if this process dies before
   * detaching (a restored copy held for a commit must never run alone).
   */
  static attach(pid: number, opts: { sysgood?: boolean; exitKill?: boolean } = {}): Tracee {
    const t = new Tracee(pid);
    const o = (opts.sysgood ? PTRACE.O_TRACESYSGOOD : 0) | (opts.exitKill ? PTRACE.O_EXITKILL : 0);
    try {
      ptrace(PTRACE.SEIZE, pid, 0n, BigInt(o));
    } catch (e) {
      throw explainSeize(pid, e);
    }
    t.attached = true;
    return t;
  }

  /**
   * A thread the kernel attached to us itself (PTRACE_O_TRACECLONE): it is
   * traced already, and stops on its own before it runs.
   */
  static adopt(tid: number): Tracee {
    const t = new Tracee(tid);
    t.attached = true;
    return t;
  }

  /** Waits for the next stop; remembers a signal-delivery stop's signal. */
  waitStop(): StopInfo {
    for (let i = 0; i < 64; i++) {
      const [, status] = waitpid(this.pid, WALL);
      const s = decodeStatus(status);
      if (s.exited) {
        this.attached = false;
        throw new PpmError(
          `process ${this.pid} ended while frozen`,
          `wait status 0x${status.toString(16)}`,
          "",
        );
      }
      // A signal arrived before our interrupt: keep it for later and stop again.
      if (s.event === 0 && s.sig !== 5 && s.sig !== (5 | 0x80) && s.sig !== 19) {
        this.deliverOnResume = s.sig;
        this.deliverInfo = this.#caughtInfo();
        return s;
      }
      return s;
    }
    throw new PpmError(`process ${this.pid} did not stop`, "too many wait events", "");
  }

  /** The siginfo of the signal-delivery stop it is in; undefined when it cannot be read. */
  #caughtInfo(): Uint8Array | undefined {
    try {
      const info = new Uint8Array(128);
      ptraceBuf(PTRACE.GETSIGINFO, this.pid, 0n, info);
      return info;
    } catch {
      return undefined;
    }
  }

  /** PTRACE_GETREGS: the raw user_regs_struct. */
  getRegs(): Uint8Array<ArrayBuffer> {
    const buf = new Uint8Array(REGS_SIZE);
    ptraceBuf(PTRACE.GETREGS, this.pid, 0n, buf);
    return buf;
  }

  /** PTRACE_SETREGS. */
  setRegs(regs: Uint8Array<ArrayBuffer>): void {
    ptraceBuf(PTRACE.SETREGS, this.pid, 0n, regs);
  }

  /** PTRACE_GETREGSET NT_X86_XSTATE: the uncompacted xsave area. */
  getXstate(): Uint8Array<ArrayBuffer> {
    const area = new Uint8Array(16384);
    const iov = new Uint8Array(16);
    const dv = new DataView(iov.buffer);
    dv.setBigUint64(0, addressOf(area), true);
    dv.setBigUint64(8, BigInt(area.length), true);
    ptraceBuf(PTRACE.GETREGSET, this.pid, NT_X86_XSTATE, iov);
    return area.slice(0, Number(dv.getBigUint64(8, true)));
  }

  /** PTRACE_SETREGSET NT_X86_XSTATE. */
  setXstate(xstate: Uint8Array<ArrayBuffer>): void {
    const iov = new Uint8Array(16);
    const dv = new DataView(iov.buffer);
    dv.setBigUint64(0, addressOf(xstate), true);
    dv.setBigUint64(8, BigInt(xstate.length), true);
    ptraceBuf(PTRACE.SETREGSET, this.pid, NT_X86_XSTATE, iov);
  }

  /** PTRACE_GETSIGMASK. */
  getSigmask(): bigint {
    const buf = new Uint8Array(8);
    ptraceBuf(PTRACE.GETSIGMASK, this.pid, 8n, buf);
    return new DataView(buf.buffer).getBigUint64(0, true);
  }

  /** PTRACE_SETSIGMASK. */
  setSigmask(mask: bigint): void {
    const buf = new Uint8Array(8);
    new DataView(buf.buffer).setBigUint64(0, mask, true);
    ptraceBuf(PTRACE.SETSIGMASK, this.pid, 8n, buf);
  }

  /**
   * PTRACE_PEEKSIGINFO: the queued signals with their full siginfo (128
   * bytes each), of the thread or, with `shared`, of the whole process.
   */
  peekSiginfo(shared: boolean): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (let off = 0; off < 65536;) {
      const args = new Uint8Array(16);
      const dv = new DataView(args.buffer);
      dv.setBigUint64(0, BigInt(off), true);
      dv.setUint32(8, shared ? 1 : 0, true);
      dv.setInt32(12, 32, true);
      const buf = new Uint8Array(32 * 128);
      const n = Number(ptraceBuf(PTRACE.PEEKSIGINFO, this.pid, addressOf(args), buf));
      for (let i = 0; i < n; i++) out.push(buf.slice(i * 128, (i + 1) * 128));
      if (n < 32) break;
      off += n;
    }
    return out;
  }

  /** Resumes until the next syscall entry or exit (PTRACE_SYSCALL). */
  syscall(sig = 0): void {
    ptrace(PTRACE.SYSCALL, this.pid, 0n, BigInt(sig));
  }

  /** Whether the thread is still ppm's to resume or end: not let go for good ({@link letGo}). */
  get held(): boolean {
    return !this.released;
  }

  /**
   * Lets go of the thread for good: detached if still attached (it runs on
   * as something ppm no longer holds: the deputy the process became), or
   * known gone (its end collected by the caller). A later resume, kill or
   * detachStopped does nothing.
   */
  letGo(): void {
    this.resume();
    this.released = true;
    this.killed = true;
  }

  /** Detaches: the process runs on, untraced, with a signal that arrived meanwhile delivered. */
  resume(): void {
    if (!this.attached) return;
    try {
      ptrace(PTRACE.DETACH, this.pid, 0n, BigInt(this.deliverOnResume));
    } catch (e) {
      if (!(e instanceof ErrnoError && e.errno === E.ESRCH)) throw e;
    }
    this.attached = false;
  }

  /**
   * Lets go of the process leaving it stopped (SIGSTOP): nobody knows yet
   * whether it runs elsewhere, so it must not run here.
   */
  detachStopped(): void {
    this.deliverOnResume = 19;
    this.resume();
  }

  /**
   * Ends the process (SIGKILL) and collects its exit as its tracer, so it
   * does not linger as a zombie until this process ends (bounded wait).
   */
  kill(): void {
    if (this.killed) return; // the PID may already belong to someone else
    this.killed = true;
    try {
      kill(this.pid, 9);
    } catch { /* gone */ }
    if (this.attached) {
      // SIGKILL cannot be blocked: the exit is reported at once.
      for (let i = 0; i < 4; i++) {
        try {
          const [, status] = waitpid(this.pid, WALL);
          if (!decodeWaitStatus(status).stopped) break;
        } catch {
          break; // already collected
        }
      }
    }
    this.attached = false;
  }
}

function explainSeize(pid: number, e: unknown): PpmError {
  if (e instanceof ErrnoError) {
    if (e.errno === E.ESRCH) {
      return new PpmError(
        `cannot freeze process ${pid}`,
        "no such process",
        "check the PID",
        EXIT.MISSING,
        { cause: e },
      );
    }
    if (e.errno === E.EPERM) {
      return new PpmError(
        `cannot freeze process ${pid}`,
        "the kernel does not let you trace it (only root, or its owner where ptrace is allowed, may; " +
          "it may also be traced already or not dumpable)",
        "run ppm as root, or as the process's owner",
        EXIT.PERMISSION,
        { cause: e },
      );
    }
  }
  return new PpmError(`cannot freeze process ${pid}`, (e as Error).message, "", EXIT.FAILURE, {
    cause: e,
  });
}
