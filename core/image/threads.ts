/**
 * The THREADS record: what each thread of a multi-threaded process keeps
 * for itself (registers, FPU state, signal mask and queue, alternate stack,
 * robust list, clear_child_tid, rseq, name, scheduling and affinity), and
 * the leader's scheduling and affinity. Read back and checked field by
 * field: TIDs unique and not the leader's, FPU state as long as the
 * leader's, every address in user space.
 *
 * @module
 */
import { arr, bad, big, bytes, int, obj, str } from "./fields.ts";

const TASK_SIZE = 1n << 47n;

/** Most threads an image may hold (the dump's limit too). */
export const MAX_IMAGE_THREADS = 4096;

/** Most bytes of a CPU affinity mask (8192 CPUs). */
const MAX_AFFINITY = 1024;

/** A thread's scheduling and CPU affinity. */
export interface ThreadSched {
  /** SCHED_OTHER 0, FIFO 1, RR 2, BATCH 3, IDLE 5 (DEADLINE is refused at dump). */
  policy: number;
  /** Real-time priority, 0..99. */
  priority: number;
  /** Nice value, -20..19. */
  nice: number;
  /** CPU affinity mask: bit N of byte N/8 is CPU N. */
  affinity: Uint8Array;
}

/** A thread other than the leader: everything it keeps for itself. */
export interface ThreadEntry extends ThreadSched {
  /** Its TID (kept on restore). */
  tid: number;
  /** Its name. */
  comm: string;
  /** Raw user_regs_struct (216 bytes), restart normalised, rseq abort applied. */
  regs: Uint8Array;
  /** Uncompacted xsave area (as long as the leader's). */
  xstate: Uint8Array;
  /** Blocked signals. */
  sigmask: bigint;
  /** Syscall restart normalisation applied. */
  restart: string;
  /** Signals queued for this thread, with their siginfo (128 bytes each), in order. */
  queue: Uint8Array[];
  /** Signal to deliver to it on resume (0 none). */
  deliverOnResume: number;
  /** Alternate stack. */
  altstack: { sp: bigint; size: bigint; flags: number };
  /** Robust list head. */
  robustList: bigint;
  /** Its length. */
  robustListLen: bigint;
  /** clear_child_tid. */
  clearChildTid: bigint;
  /** rseq registration. */
  rseq: { addr: bigint; len: number; sig: number };
}

/** The THREADS record. */
export interface ThreadsRecord {
  /** The leader's scheduling and affinity (the rest of it is in CPU and SIGNALS). */
  leader: ThreadSched;
  /** The other threads, ascending by TID. */
  others: ThreadEntry[];
}

function checkSched(o: Record<string, unknown>, w: string): ThreadSched {
  const policy = int(o, "policy", w, 0, 5);
  if (policy === 4) throw bad(w, "policy 4 is not a scheduling policy");
  const priority = int(o, "priority", w, 0, 99);
  if ((policy === 1 || policy === 2) !== (priority > 0)) {
    throw bad(w, `priority ${priority} does not fit policy ${policy}`);
  }
  return {
    policy,
    priority,
    nice: int(o, "nice", w, -20, 19),
    affinity: bytes(o, "affinity", w, 1, MAX_AFFINITY),
  };
}

/** A thread's name: at most 15 bytes (TASK_COMM_LEN - 1), no NUL. */
function threadName(o: Record<string, unknown>, w: string): string {
  const v = str(o, "comm", w, 64);
  if (v.includes("\0") || new TextEncoder().encode(v).length > 15) {
    throw bad(w, "comm is not a name of at most 15 bytes without NUL");
  }
  return v;
}

function checkThread(v: unknown, i: number, xsaveSize: number): ThreadEntry {
  const w = `THREADS.others[${i}]`;
  const o = obj(v, w);
  const alt = obj(o.altstack, `${w}.altstack`);
  const rs = obj(o.rseq, `${w}.rseq`);
  return {
    tid: int(o, "tid", w, 1, 4194304),
    comm: threadName(o, w),
    ...checkSched(o, w),
    regs: bytes(o, "regs", w, 216, 216),
    xstate: bytes(o, "xstate", w, xsaveSize, xsaveSize),
    sigmask: big(o, "sigmask", w),
    restart: str(o, "restart", w, 16),
    queue: arr(o.queue, `${w}.queue`, 4096).map((q, k) =>
      bytes({ q }, "q", `${w}.queue[${k}]`, 128, 128)
    ),
    deliverOnResume: int(o, "deliverOnResume", w, 0, 64),
    altstack: {
      sp: big(alt, "sp", `${w}.altstack`, TASK_SIZE),
      size: big(alt, "size", `${w}.altstack`, TASK_SIZE),
      flags: int(alt, "flags", `${w}.altstack`),
    },
    robustList: big(o, "robustList", w, TASK_SIZE),
    robustListLen: big(o, "robustListLen", w, 1024n),
    clearChildTid: big(o, "clearChildTid", w, TASK_SIZE),
    rseq: {
      addr: big(rs, "addr", `${w}.rseq`, TASK_SIZE),
      len: int(rs, "len", `${w}.rseq`, 0, 1024),
      sig: int(rs, "sig", `${w}.rseq`),
    },
  };
}

/**
 * The THREADS record of the process `pid` whose FPU state is `xsaveSize`
 * bytes, checked: throws an ImageError naming the field otherwise.
 */
export function checkThreads(v: unknown, pid: number, xsaveSize: number): ThreadsRecord {
  const o = obj(v, "THREADS");
  const leader = checkSched(obj(o.leader, "THREADS.leader"), "THREADS.leader");
  const others = arr(o.others, "THREADS.others", MAX_IMAGE_THREADS - 1).map((t, i) =>
    checkThread(t, i, xsaveSize)
  );
  const seen = new Set([pid]);
  for (const t of others) {
    if (seen.has(t.tid)) throw bad("THREADS", `TID ${t.tid} appears twice or is the leader's`);
    seen.add(t.tid);
  }
  return { leader, others };
}
