/**
 * Freezing every thread of a process, the way CRIU's seize does: ptrace
 * stops one thread at a time, so each thread is seized and interrupted on
 * its own, and /proc/PID/task is read again until a scan finds no thread
 * that is not stopped yet (a thread that was running may have made
 * another). Threads that end meanwhile are left out. Resuming and ending
 * act on all of them.
 *
 * @module
 */
import { E, ErrnoError, kill, PTRACE, ptrace } from "../../ffi/libc.ts";
import { EXIT, PpmError } from "../errors.ts";
import { Tracee } from "./tracee.ts";

/** Scans of /proc/PID/task before giving up on a process whose threads keep changing. */
export const MAX_SCANS = 20;

/** Most threads ppm freezes in one process. */
export const MAX_THREADS = 4096;

/** The thread IDs in /proc/PID/task, ascending; empty when the process is gone. */
export function listThreads(pid: number): number[] {
  const tids: number[] = [];
  try {
    for (const e of Deno.readDirSync(`/proc/${pid}/task`)) {
      if (/^[1-9][0-9]*$/.test(e.name)) tids.push(Number(e.name));
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return tids.sort((a, b) => a - b);
}

/**
 * Whether seizing thread `tid` of `pid` failed because the thread is ending:
 * ESRCH once it is reaped, EPERM while it is exiting (the kernel refuses to
 * attach to a task with an exit state set, and such a thread is still listed).
 */
function gone(e: unknown, pid: number, tid: number): boolean {
  const cause = e instanceof PpmError ? e.cause : e;
  if (!(cause instanceof ErrnoError)) return false;
  if (cause.errno === E.ESRCH) return true;
  if (cause.errno !== E.EPERM) return false;
  const state = taskState(`/proc/${pid}/task/${tid}/stat`);
  return state === "" || state === "Z" || state === "X";
}

/** Every thread of one process, stopped by this OS thread with ptrace. */
export class ThreadGroup {
  /** The other threads, ascending by TID. */
  readonly others: Tracee[] = [];

  private constructor(readonly leader: Tracee) {}

  /** The process (its leader's TID). */
  get pid(): number {
    return this.leader.pid;
  }

  /** Every thread, the leader first. */
  get all(): Tracee[] {
    return [this.leader, ...this.others];
  }

  /** How many threads are stopped. */
  get size(): number {
    return 1 + this.others.length;
  }

  /** A signal that arrived at the leader while freezing, delivered on resume. */
  get deliverOnResume(): number {
    return this.leader.deliverOnResume;
  }

  /** Its siginfo, when it could be read (see Tracee.deliverInfo). */
  get deliverInfo(): Uint8Array | undefined {
    return this.leader.deliverInfo;
  }

  /**
   * Seizes and stops every thread of `pid`. Throws a PpmError when the
   * kernel does not let the caller trace it, when its main thread has
   * exited while others run (a zombie leader cannot be stopped), or when
   * its threads keep changing over {@link MAX_SCANS} scans.
   */
  static freeze(pid: number, opts: { scans?: number } = {}): ThreadGroup {
    const state = leaderState(pid);
    if (state === "Z" && listThreads(pid).length > 1) {
      throw new PpmError(
        `cannot freeze process ${pid}`,
        "its main thread has exited while other threads run on (a zombie leader cannot be stopped or restored)",
        "wait until the process ends, or end it",
        EXIT.FAILURE,
      );
    }
    const g = new ThreadGroup(Tracee.freeze(pid));
    try {
      g.stopTheRest(opts.scans ?? MAX_SCANS);
    } catch (e) {
      g.resume();
      throw e;
    }
    return g;
  }

  private stopTheRest(scans: number): void {
    const have = new Set([this.pid]);
    for (let scan = 0; scan < scans; scan++) {
      const fresh = listThreads(this.pid).filter((tid) => !have.has(tid));
      if (!fresh.length) {
        this.others.sort((a, b) => a.pid - b.pid);
        return;
      }
      if (have.size + fresh.length > MAX_THREADS) {
        throw new PpmError(
          `cannot freeze process ${this.pid}`,
          `it has more than ${MAX_THREADS} threads`,
          "",
          EXIT.FAILURE,
        );
      }
      // Seize and interrupt them all first, so they stop together; then collect the stops.
      const seized: Tracee[] = [];
      for (const tid of fresh) {
        have.add(tid);
        try {
          const t = Tracee.attach(tid);
          seized.push(t);
          ptrace(PTRACE.INTERRUPT, tid);
        } catch (e) {
          if (!gone(e, this.pid, tid)) throw e;
        }
      }
      for (const t of seized) {
        try {
          t.waitStop();
          this.others.push(t);
        } catch (e) {
          // A thread that ended while being frozen is no longer part of the process.
          if (!(e instanceof PpmError && /ended while frozen/.test(e.message))) throw e;
        }
      }
    }
    throw new PpmError(
      `cannot freeze process ${this.pid}`,
      `its threads kept changing over ${scans} scans of /proc/${this.pid}/task`,
      "try again; a process that starts threads all the time cannot be frozen",
      EXIT.FAILURE,
    );
  }

  /** Detaches every thread: the process runs on, as if nothing happened. */
  resume(): void {
    let first: unknown;
    for (const t of [...this.others, this.leader]) {
      try {
        t.resume();
      } catch (e) {
        first ??= e;
      }
    }
    if (first) throw first;
  }

  /**
   * Lets go of the process leaving it stopped: a SIGSTOP is queued for the
   * process before any thread is detached, so each thread stops in the
   * kernel on its way out of the ptrace stop.
   */
  detachStopped(): void {
    if (!this.leader.held) return; // let go for good: no longer ppm's to stop
    try {
      kill(this.pid, 19);
    } catch { /* gone */ }
    for (const t of this.others) t.resume();
    this.leader.detachStopped();
  }

  /**
   * Ends the process (SIGKILL) and collects every thread's exit, the
   * leader's last; nothing once its leader was let go ({@link Tracee.letGo}).
   */
  kill(): void {
    if (!this.leader.held) return; // let go for good (a deputy now): not ppm's to end
    try {
      kill(this.pid, 9);
    } catch { /* gone */ }
    for (const t of this.others) t.kill();
    this.leader.kill();
  }
}

function leaderState(pid: number): string {
  return taskState(`/proc/${pid}/stat`);
}

/** The state letter of a /proc stat file; empty when it is gone. */
function taskState(path: string): string {
  try {
    const stat = Deno.readTextFileSync(path);
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] ?? "";
  } catch {
    return "";
  }
}
