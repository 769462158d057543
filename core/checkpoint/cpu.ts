/**
 * A frozen process's CPU state as its image keeps it: registers (a system
 * call it was in set to restart, as the kernel would after a signal), FPU
 * state, signal mask and its queued signals.
 *
 * @module
 */
import type { CpuRecord, SignalsRecord } from "../image/schema.ts";
import { getReg, setReg, type Tracee } from "../ptrace/tracee.ts";

/** Restart-syscall normalisation, as the kernel would do after a signal. */
export function normalizeSyscallRestart(regs: Uint8Array): string {
  const orig = BigInt.asIntN(64, getReg(regs, "orig_rax"));
  const ax = BigInt.asIntN(64, getReg(regs, "rax"));
  if (orig < 0n) return "none";
  if (ax === -512n || ax === -513n || ax === -514n) {
    setReg(regs, "rip", getReg(regs, "rip") - 2n);
    setReg(regs, "rax", orig);
    return "restart";
  }
  if (ax === -516n) {
    setReg(regs, "rax", -4n);
    return "eintr";
  }
  return "none";
}

/** The CPU record, and the queued signals of the SIGNALS record. */
export interface CpuState extends CpuRecord {
  /** Queued signals with their siginfo, the thread's first, then the process's. */
  queue: SignalsRecord["queue"];
}

/** Reads the CPU state of the frozen `tracee`. */
export function readCpu(tracee: Tracee): CpuState {
  const regs = tracee.getRegs();
  const restart = normalizeSyscallRestart(regs);
  const xstate = tracee.getXstate();
  const sigmask = tracee.getSigmask();
  const queue = [
    ...tracee.peekSiginfo(false).map((info) => ({ shared: false, info })),
    ...tracee.peekSiginfo(true).map((info) => ({ shared: true, info })),
  ];
  return { regs, restart, xstate, sigmask, queue };
}
