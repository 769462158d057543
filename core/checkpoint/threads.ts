/**
 * The THREADS record of a frozen process: every thread but the leader
 * whole (registers with the syscall restart and rseq abort applied, FPU
 * state, signal mask and queue, and what the module reads of it), and the
 * leader's scheduling and affinity.
 *
 * @module
 */
import { withDevice } from "../../ffi/device.ts";
import { PpmError } from "../errors.ts";
import { applyRseqAbort, readRseqCs, readThreadFacts } from "../dump/threads.ts";
import type { ThreadEntry, ThreadsRecord } from "../image/schema.ts";
import type { ThreadGroup } from "../ptrace/group.ts";
import type { Tracee } from "../ptrace/tracee.ts";
import { normalizeSyscallRestart } from "./cpu.ts";

/**
 * Sends `regs` to the abort handler of the rseq critical section the
 * thread was stopped in, if any (`rseqAddr`: its registered area). A
 * thread stopped in a system call is never inside one.
 */
export async function rseqAbort(
  pid: number,
  regs: Uint8Array,
  restart: string,
  rseqAddr: bigint,
): Promise<void> {
  if (restart !== "none" || !rseqAddr) return;
  const cs = await readRseqCs(pid, rseqAddr);
  if (cs) applyRseqAbort(regs, cs);
}

async function dumpThread(pid: number, t: Tracee): Promise<ThreadEntry> {
  const regs = t.getRegs();
  const restart = normalizeSyscallRestart(regs);
  const task = withDevice((d) => d.dumpTask(t.pid));
  await rseqAbort(pid, regs, restart, task.rseq.addr);
  const facts = await readThreadFacts(pid, t.pid);
  if (facts.comm === undefined) {
    throw new PpmError(
      `process ${pid} cannot be checkpointed`,
      `the name of thread ${t.pid} is not UTF-8`,
      "",
    );
  }
  return {
    tid: t.pid,
    comm: facts.comm,
    ...facts.sched,
    affinity: facts.affinity,
    regs,
    xstate: t.getXstate(),
    sigmask: t.getSigmask(),
    restart,
    // As the leader's (records.ts): a caught signal goes first, with its siginfo.
    queue: [...(t.deliverInfo ? [t.deliverInfo] : []), ...t.peekSiginfo(false)],
    deliverOnResume: t.deliverInfo ? 0 : t.deliverOnResume,
    altstack: task.altstack,
    robustList: task.robustList,
    robustListLen: task.robustListLen,
    clearChildTid: task.clearChildTid,
    rseq: task.rseq,
  };
}

/** Reads the THREADS record of the frozen process `group`. */
export async function dumpThreads(group: ThreadGroup): Promise<ThreadsRecord> {
  const leader = await readThreadFacts(group.pid, group.pid);
  const others: ThreadEntry[] = [];
  for (const t of group.others) others.push(await dumpThread(group.pid, t));
  return { leader: { ...leader.sched, affinity: leader.affinity }, others };
}
