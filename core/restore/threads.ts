/**
 * Restoring the threads of a multi-threaded process, once PPM_IOC_RESTORE
 * has rebuilt its memory in the leader: the leader makes each thread with
 * `clone3(CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM, set_tid = its TID)`
 * (the kernel attaches the new thread to us, stopped, through
 * PTRACE_O_TRACECLONE); then each thread runs, as itself, the system calls
 * that only a thread can make for itself (scheduling, affinity, name,
 * robust list, clear_child_tid, alternate stack, rseq, credentials, its
 * queued signals, seccomp), and finally gets its registers, FPU state and
 * signal mask through ptrace. Threads are made while the leader still has
 * the stub's privileges: choosing a TID needs CAP_CHECKPOINT_RESTORE.
 *
 * @module
 */
import { E, PTRACE, ptrace, tgkill } from "../../ffi/libc.ts";
import { PpmError } from "../errors.ts";
import type { ThreadEntry, ThreadSched, ThreadsRecord } from "../image/schema.ts";
import { setReg, Tracee } from "../ptrace/tracee.ts";
import type { Injector } from "../ptrace/inject.ts";

/** System call numbers (x86-64) used here. */
export const NR = {
  sigaltstack: 131,
  prctl: 157,
  sched_setaffinity: 203,
  set_tid_address: 218,
  tgkill: 234,
  set_robust_list: 273,
  rt_tgsigqueueinfo: 297,
  sched_setattr: 314,
  rseq: 334,
  clone3: 435,
} as const;

/** The clone flags of a thread, as pthread_create uses them (without the TID and TLS ones). */
export const THREAD_FLAGS = 0x100n | 0x200n | 0x400n | 0x800n | 0x10000n | 0x40000n;

/** CLONE_ARGS_SIZE_VER1: up to set_tid_size. */
const CLONE_ARGS_SIZE = 80;

const PTRACE_SETOPTIONS = 0x4200;
const PTRACE_O_TRACECLONE = 1 << 3;

/** `struct clone_args` for one thread with TID `tid`, whose set_tid array sits at `tidAt`. */
export function cloneArgs(tid: number, tidAt: bigint): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(CLONE_ARGS_SIZE + 8);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, THREAD_FLAGS, true); // flags
  v.setBigUint64(64, tidAt, true); // set_tid
  v.setBigUint64(72, 1n, true); // set_tid_size
  v.setInt32(CLONE_ARGS_SIZE, tid, true); // the set_tid array itself
  return b;
}

function failed(what: string, r: bigint, tid: number): PpmError {
  const errno = Number(-r);
  const taken = errno === E.EEXIST ? ": the TID is taken on this node" : "";
  return new PpmError(
    "cannot restore",
    `${what} for thread ${tid} failed (errno ${errno}${taken})`,
    "nothing else was changed; the new process was ended",
  );
}

/**
 * Makes every thread of `rec` in the stopped leader `leader` through
 * `inj` (the leader's injector) and returns them, stopped and traced.
 * Threads already made are ended with the process by the caller on failure.
 */
export async function makeThreads(
  leader: Tracee,
  inj: Injector,
  rec: ThreadsRecord,
): Promise<Tracee[]> {
  const opts = PTRACE.O_TRACESYSGOOD | PTRACE.O_EXITKILL | PTRACE_O_TRACECLONE;
  ptrace(PTRACE_SETOPTIONS, leader.pid, 0n, BigInt(opts));
  const made: Tracee[] = [];
  for (const t of rec.others) {
    const at = inj.scratch(CLONE_ARGS_SIZE + 8);
    await inj.write(at, cloneArgs(t.tid, at + BigInt(CLONE_ARGS_SIZE)));
    const r = inj.call(NR.clone3, [at, BigInt(CLONE_ARGS_SIZE)]);
    if (r < 0n) throw failed("clone3", r, t.tid);
    if (r !== BigInt(t.tid)) {
      throw new PpmError("cannot restore", `a thread got TID ${r}, not ${t.tid}`, "");
    }
    const tr = Tracee.adopt(t.tid);
    made.push(tr);
    tr.waitStop();
    tr.deliverOnResume = 0; // its first stop is the kernel's, not a signal of the process
  }
  return made;
}

/** sched_setattr and sched_setaffinity in the calling thread; affinity is kept where it can be. */
export async function applySched(inj: Injector, s: ThreadSched, tid: number): Promise<void> {
  const attr = new Uint8Array(48);
  const v = new DataView(attr.buffer);
  v.setUint32(0, 48, true); // size (SCHED_ATTR_SIZE_VER0)
  v.setUint32(4, s.policy, true);
  v.setInt32(16, s.nice, true);
  v.setUint32(20, s.priority, true);
  const at = inj.scratch(48 + s.affinity.length);
  await inj.write(at, attr);
  const r = inj.call(NR.sched_setattr, [0n, at, 0n]);
  if (r !== 0n) throw failed("sched_setattr", r, tid);
  // An affinity naming CPUs this node lacks falls back to every CPU, as a user would expect.
  await inj.write(at + 48n, s.affinity);
  inj.call(NR.sched_setaffinity, [0n, BigInt(s.affinity.length), at + 48n]);
}

/**
 * The system calls only thread `t` can make for itself, run in it through
 * `inj`: name, robust list, clear_child_tid, alternate stack and rseq.
 * Scheduling and credentials are applied by the caller (see applySched).
 */
export async function setupThread(inj: Injector, t: ThreadEntry): Promise<void> {
  const name = new TextEncoder().encode(t.comm);
  const nameAt = inj.scratch(16);
  await inj.write(nameAt, new Uint8Array([...name, 0]));
  const must = (r: bigint, what: string) => {
    if (r < 0n) throw failed(what, r, t.tid);
  };
  must(inj.call(NR.prctl, [15n, nameAt]), "PR_SET_NAME");
  if (t.robustList) {
    must(inj.call(NR.set_robust_list, [t.robustList, t.robustListLen]), "set_robust_list");
  }
  inj.call(NR.set_tid_address, [t.clearChildTid]);
  if (t.altstack.size || t.altstack.flags) {
    const ss = new Uint8Array(24);
    const v = new DataView(ss.buffer);
    v.setBigUint64(0, t.altstack.sp, true);
    // SS_ONSTACK is what the kernel reports, not what it accepts: keep SS_DISABLE and SS_AUTODISARM.
    v.setInt32(8, t.altstack.flags & ~1, true);
    v.setBigUint64(16, t.altstack.size, true);
    const at = inj.scratch(24);
    await inj.write(at, ss);
    must(inj.call(NR.sigaltstack, [at, 0n]), "sigaltstack");
  }
  if (t.rseq.addr) {
    must(
      inj.call(NR.rseq, [t.rseq.addr, BigInt(t.rseq.len), 0n, BigInt(t.rseq.sig)]),
      "rseq",
    );
  }
}

/** Queues thread `t`'s own signals again, in order, each sent by the thread to itself. */
export async function requeueThreadSignals(
  inj: Injector,
  pid: number,
  t: ThreadEntry,
): Promise<void> {
  for (const info of t.queue) {
    const at = inj.scratch(128);
    await inj.write(at, info);
    const sig = BigInt(new DataView(info.buffer, info.byteOffset).getInt32(0, true));
    const r = inj.call(NR.rt_tgsigqueueinfo, [BigInt(pid), BigInt(t.tid), sig, at]);
    if (r !== 0n) throw failed(`re-queueing signal ${sig}`, r, t.tid);
  }
}

/** Gives thread `tr` its registers, FPU state and signal mask from the image. */
export function finishThread(tr: Tracee, t: ThreadEntry): void {
  const regs = new Uint8Array(t.regs) as Uint8Array<ArrayBuffer>;
  setReg(regs, "orig_rax", -1n);
  tr.setRegs(regs);
  tr.setXstate(new Uint8Array(t.xstate) as Uint8Array<ArrayBuffer>);
  tr.setSigmask(t.sigmask);
}

/** Lets the restored threads run, each with the signal it was about to take when frozen. */
export function startThreads(pid: number, made: Tracee[], rec: ThreadsRecord): void {
  rec.others.forEach((t, i) => {
    made[i]?.resume();
    if (t.deliverOnResume) {
      try {
        tgkill(pid, t.tid, t.deliverOnResume);
      } catch { /* the thread ended already */ }
    }
  });
}
