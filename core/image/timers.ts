/**
 * The TIMERS record: a process's interval timers (`setitimer`) and POSIX
 * timers (`timer_create`), each with the time left to its next expiry and
 * its interval. Read back and checked field by field: timer ids unique and
 * in the kernel's range, clocks that `timer_create` takes (a CPU-time clock
 * only of the process or one of its threads), signals that exist, a thread-directed timer aimed at one of the image's threads, times
 * that are times.
 *
 * @module
 */
import { arr, bad, big, int, obj, str } from "./fields.ts";
import type { TimeState } from "./fds.ts";
export type { TimeState } from "./fds.ts";

/** Most POSIX timers an image may hold (the dump refuses more). */
export const MAX_IMAGE_TIMERS = 4096;

/** The largest POSIX timer id (INT_MAX): the kernel gives ids in 0..INT_MAX. */
export const MAX_TIMER_ID = 0x7fffffff;

/**
 * Most ids a restore makes and deletes to reach the image's where the
 * kernel cannot be asked for an id (its ids come in sequence): a process
 * that made and deleted more timers than this before its checkpoint moves
 * only between kernels that can be asked (PR_TIMER_CREATE_RESTORE_IDS).
 */
export const MAX_SKIPPED_IDS = 65536;

/** ITIMER_REAL 0, ITIMER_VIRTUAL 1, ITIMER_PROF 2, by name. */
export const ITIMER = { real: 0, virtual: 1, prof: 2 } as const;

/**
 * The clocks a POSIX timer can run on, by id: REALTIME 0, MONOTONIC 1,
 * PROCESS_CPUTIME_ID 2, THREAD_CPUTIME_ID 3, BOOTTIME 7, REALTIME_ALARM 8,
 * BOOTTIME_ALARM 9, TAI 11 (MONOTONIC_RAW and the coarse clocks have no
 * timers). The kernel keeps (and /proc/PID/timers shows) a timer on one of
 * the CPU-time clocks under that clock's negative id instead, see
 * {@link cpuClock}.
 */
export const TIMER_CLOCKS: readonly number[] = [0, 1, 2, 3, 7, 8, 9, 11];

/** What a CPU-time clock id (negative: the kernel's encoding) names. */
export interface CpuClock {
  /** The process (or with `thread` the thread) whose CPU time it counts; 0: the caller's. */
  pid: number;
  /** Whether it counts one thread's time rather than the whole process's. */
  thread: boolean;
  /** What it counts: CPUCLOCK_PROF 0 (user and system), VIRT 1 (user), SCHED 2 (run time); 3 is none. */
  kind: number;
}

/**
 * The process or thread and the kind a CPU-time clock id names (the
 * kernel's MAKE_PROCESS_CPUCLOCK and MAKE_THREAD_CPUCLOCK: the PID or TID,
 * inverted, above three bits), or undefined for a clock id that is not
 * negative. CLOCK_PROCESS_CPUTIME_ID is -6, CLOCK_THREAD_CPUTIME_ID -2.
 */
export function cpuClock(clock: number): CpuClock | undefined {
  if (clock >= 0) return undefined;
  return { pid: ~(clock >> 3), thread: (clock & 4) !== 0, kind: clock & 3 };
}

/**
 * How a POSIX timer tells its expiry, as /proc/PID/timers names it:
 * `signal` (SIGEV_SIGNAL, to the process, or with `tid` to that thread,
 * SIGEV_THREAD_ID), `none` (SIGEV_NONE: nothing, it is only read), `thread`
 * (SIGEV_THREAD, which the kernel treats as `signal`; glibc makes its own
 * SIGEV_THREAD timers thread-directed signals to a helper thread).
 */
export type TimerNotify = "signal" | "none" | "thread";

/** The notify kinds, in the kernel's numbering (SIGEV_SIGNAL 0, SIGEV_NONE 1, SIGEV_THREAD 2). */
export const NOTIFY: readonly TimerNotify[] = ["signal", "none", "thread"];

/** An armed interval timer of the process (`setitimer`). */
export interface ItimerEntry {
  /** ITIMER_REAL 0, ITIMER_VIRTUAL 1, ITIMER_PROF 2. */
  which: number;
  /** Time left to its next expiry when the image was taken (never 0: a disarmed one is left out). */
  value: TimeState;
  /** Its interval (0: one shot). */
  interval: TimeState;
}

/** A POSIX timer of the process (`timer_create`). */
export interface PosixTimerEntry {
  /** Its id (kept on restore). */
  id: number;
  /**
   * The clock it runs on: one of {@link TIMER_CLOCKS}, or a CPU-time clock
   * ({@link cpuClock}) of the process itself or of one of its threads.
   */
  clock: number;
  /** How it tells its expiry. */
  notify: TimerNotify;
  /** With `notify` "signal": the thread its signal goes to (SIGEV_THREAD_ID); absent: the process. */
  tid?: number;
  /** Its signal, 1..64; 0 with `notify` "none". */
  signal: number;
  /** The sigev_value its signal carries (sival_int or sival_ptr, 64 bits). */
  value: bigint;
  /** Time left to its next expiry when the image was taken (0: disarmed); restored as relative. */
  left: TimeState;
  /** Its interval (0: one shot). */
  interval: TimeState;
  /** Its last overrun count (timer_getoverrun), for information: a restore cannot set it. */
  overrun: number;
}

/** The TIMERS record. */
export interface TimersRecord {
  /** The armed interval timers, at most one of each kind. */
  itimers: ItimerEntry[];
  /** The POSIX timers, ascending by id. */
  posix: PosixTimerEntry[];
}

const I63_MAX = (1n << 63n) - 1n;

function time(v: unknown, what: string): TimeState {
  const o = obj(v, what);
  return { sec: big(o, "sec", what, I63_MAX), nsec: int(o, "nsec", what, 0, 999_999_999) };
}

const isZero = (t: TimeState) => t.sec === 0n && t.nsec === 0;

function checkItimer(v: unknown, i: number): ItimerEntry {
  const w = `TIMERS.itimers[${i}]`;
  const o = obj(v, w);
  const e = {
    which: int(o, "which", w, 0, 2),
    value: time(o.value, `${w}.value`),
    interval: time(o.interval, `${w}.interval`),
  };
  if (isZero(e.value)) throw bad(w, "value is 0 (a disarmed timer is not recorded)");
  return e;
}

function checkPosix(
  v: unknown,
  i: number,
  pid: number,
  threads: Set<number>,
): PosixTimerEntry {
  const w = `TIMERS.posix[${i}]`;
  const o = obj(v, w);
  const id = int(o, "id", w, 0, MAX_TIMER_ID);
  const at = `${w} (timer ${id})`;
  const clock = int(o, "clock", at, -(2 ** 31), 2 ** 31 - 1);
  const cpu = cpuClock(clock);
  if (
    cpu
      ? cpu.kind > 2 || !(cpu.pid === 0 || cpu.pid === pid || (cpu.thread && threads.has(cpu.pid)))
      : !TIMER_CLOCKS.includes(clock)
  ) {
    throw bad(at, `clock ${clock} is not a clock ppm carries`);
  }
  const notify = str(o, "notify", at, 16) as TimerNotify;
  if (!NOTIFY.includes(notify)) throw bad(at, `notify ${JSON.stringify(notify)} is not known`);
  const e: PosixTimerEntry = {
    id,
    clock,
    notify,
    signal: notify === "none" ? int(o, "signal", at, 0, 0) : int(o, "signal", at, 1, 64),
    value: big(o, "value", at),
    left: time(o.left, `${at}.left`),
    interval: time(o.interval, `${at}.interval`),
    overrun: int(o, "overrun", at, 0, MAX_TIMER_ID),
  };
  if (o.tid !== undefined) {
    if (notify !== "signal") throw bad(at, `a tid with notify ${notify}`);
    const tid = int(o, "tid", at, 1, 4194304);
    if (!threads.has(tid)) throw bad(at, `tid ${tid} is not a thread of the process`);
    e.tid = tid;
  }
  return e;
}

/**
 * The TIMERS record of the process `pid` whose other threads are `tids`,
 * checked: throws an ImageError naming the field otherwise.
 */
export function checkTimers(v: unknown, pid: number, tids: readonly number[]): TimersRecord {
  const o = obj(v, "TIMERS");
  const itimers = arr(o.itimers, "TIMERS.itimers", 3).map(checkItimer);
  const kinds = new Set<number>();
  for (const t of itimers) {
    if (kinds.has(t.which)) throw bad("TIMERS.itimers", `timer ${t.which} appears twice`);
    kinds.add(t.which);
  }
  const threads = new Set([pid, ...tids]);
  const posix = arr(o.posix, "TIMERS.posix", MAX_IMAGE_TIMERS).map((t, i) =>
    checkPosix(t, i, pid, threads)
  );
  for (let i = 1; i < posix.length; i++) {
    if (posix[i].id <= posix[i - 1].id) {
      throw bad(
        "TIMERS.posix",
        posix[i].id === posix[i - 1].id
          ? `timer ${posix[i].id} appears twice`
          : "the timers are not in ascending order of id",
      );
    }
  }
  return { itimers, posix };
}
