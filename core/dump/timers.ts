/**
 * A frozen process's timers, for the TIMERS record: its POSIX timers as
 * /proc/PID/timers lists them (id, signal and value, how it notifies and
 * whom, clock), and what only the process itself can ask the kernel for,
 * read by system calls run in its leader while it is frozen
 * (core/ptrace/borrow.ts): the time left to each POSIX timer's next expiry
 * and its interval (`timer_gettime`), its last overrun
 * (`timer_getoverrun`), and the interval timers (`getitimer`: ITIMER_REAL,
 * ITIMER_VIRTUAL, ITIMER_PROF).
 *
 * What the image cannot carry is a reason not to checkpoint
 * ({@link timerReasons}): a timer on the CPU-time clock of another process,
 * one on CLOCK_THREAD_CPUTIME_ID in a multi-threaded process (the kernel
 * does not tell which thread's time it counts), one that signals a thread
 * that has ended.
 *
 * @module
 */
import { errnoName } from "../../ffi/libc.ts";
import { EXIT, PpmError } from "../errors.ts";
import { borrow, type BorrowPlace } from "../ptrace/borrow.ts";
import { listThreads } from "../ptrace/group.ts";
import type { Tracee } from "../ptrace/tracee.ts";
import {
  cpuClock,
  ITIMER,
  type ItimerEntry,
  MAX_IMAGE_TIMERS,
  MAX_SKIPPED_IDS,
  MAX_TIMER_ID,
  NOTIFY,
  type PosixTimerEntry,
  TIMER_CLOCKS,
  type TimerNotify,
  type TimersRecord,
  type TimeState,
} from "../image/timers.ts";

/** x86-64 system call numbers. */
const NR = { getitimer: 36, prctl: 157, timer_gettime: 224, timer_getoverrun: 225 } as const;

/** prctl(PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_GET): fails where unknown. */
const PR_TIMER_CREATE_RESTORE_IDS_GET = [77n, 2n, 0n, 0n, 0n];

/** A POSIX timer as /proc/PID/timers shows it. */
export interface ProcTimer {
  /** Its id. */
  id: number;
  /** Its signal (for `none` whatever the process gave, unused). */
  signal: number;
  /** The sigev_value its signal carries. */
  value: bigint;
  /** How it notifies. */
  notify: TimerNotify;
  /** Whether its signal goes to one thread (SIGEV_THREAD_ID) rather than the process. */
  toThread: boolean;
  /** That thread's TID, or the process's PID. */
  target: number;
  /** Its clock id (negative: a CPU-time clock, see `cpuClock`). */
  clock: number;
}

const FIELDS = [
  ["ID", /^ID: (\d{1,10})$/],
  ["signal", /^signal: (-?\d{1,10})\/([0-9a-f]{1,16})$/],
  ["notify", /^notify: ([a-z]+)\/(pid|tid)\.(\d{1,10})$/],
  ["ClockID", /^ClockID: (-?\d{1,11})$/],
] as const;

function unreadable(why: string): PpmError {
  return new PpmError(
    "cannot read the process's POSIX timers",
    `/proc/PID/timers: ${why}`,
    "this kernel shows them in a form ppm does not know; please report it with the kernel version",
    EXIT.FAILURE,
  );
}

/**
 * The POSIX timers of a /proc/PID/timers text (four lines each: `ID: n`,
 * `signal: SIG/VALUE_HEX`, `notify: signal|none|thread/pid.N|tid.N`,
 * `ClockID: c`, as fs/proc/base.c's show_timer writes them), ascending by
 * id. Throws a PpmError naming the line for anything else.
 */
export function parseProcTimers(text: string): ProcTimer[] {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  if (lines.length % FIELDS.length) {
    throw unreadable(`${lines.length} lines, not ${FIELDS.length} for each timer`);
  }
  const out: ProcTimer[] = [];
  const seen = new Set<number>();
  for (let i = 0; i < lines.length; i += FIELDS.length) {
    const m = FIELDS.map(([name, re], k) => {
      const got = re.exec(lines[i + k]);
      if (!got) {
        throw unreadable(`line ${i + k + 1} (${JSON.stringify(lines[i + k])}) is not its ${name}`);
      }
      return got;
    });
    const id = Number(m[0][1]);
    const signal = Number(m[1][1]);
    const target = Number(m[2][3]);
    const clock = Number(m[3][1]);
    const notify = m[2][1] as TimerNotify;
    if (id > MAX_TIMER_ID || seen.has(id)) {
      throw unreadable(`timer id ${id} is out of range or twice`);
    }
    if (!NOTIFY.includes(notify)) throw unreadable(`timer ${id}: unknown notify ${notify}`);
    if (Math.abs(signal) > MAX_TIMER_ID || Math.abs(clock) > 2 ** 31 || target > 4194304) {
      throw unreadable(`timer ${id}: a number out of range`);
    }
    seen.add(id);
    out.push({
      id,
      signal,
      value: BigInt(`0x${m[1][2]}`),
      notify,
      toThread: m[2][2] === "tid",
      target,
      clock,
    });
  }
  return out.sort((a, b) => a.id - b.id);
}

/**
 * Why the POSIX `timers` of process `pid`, whose threads are `tids` (the
 * leader's included), cannot be carried: one sentence per timer.
 */
export function timerProblems(pid: number, timers: ProcTimer[], tids: number[]): string[] {
  const r: string[] = [];
  if (timers.length > MAX_IMAGE_TIMERS) {
    r.push(`it has ${timers.length} POSIX timers; ppm carries at most ${MAX_IMAGE_TIMERS}`);
  }
  for (const t of timers) {
    const what = `POSIX timer ${t.id}`;
    const cpu = cpuClock(t.clock);
    if (!cpu) {
      if (!TIMER_CLOCKS.includes(t.clock)) {
        r.push(`${what} runs on clock ${t.clock}, which ppm cannot carry`);
      }
    } else if (cpu.kind > 2) {
      r.push(`${what} runs on clock ${t.clock}, which ppm cannot carry`);
    } else if (cpu.pid === 0 && cpu.thread && tids.length > 1) {
      r.push(
        `${what} counts the CPU time of one of its threads (CLOCK_THREAD_CPUTIME_ID), and the ` +
          "kernel does not tell which",
      );
    } else if (cpu.pid !== 0 && cpu.pid !== pid && !(cpu.thread && tids.includes(cpu.pid))) {
      r.push(
        `${what} counts the CPU time of ${cpu.thread ? "thread" : "process"} ${cpu.pid}, ` +
          "which is not part of this process",
      );
    }
    if (t.toThread && t.notify !== "signal") r.push(`${what} notifies ${t.notify} to a thread`);
    else if (t.toThread && !tids.includes(t.target)) {
      r.push(`${what} signals thread ${t.target}, which has ended`);
    } else if (!t.toThread && t.target !== pid) {
      r.push(`${what} signals process ${t.target}, not this one`);
    }
  }
  return r;
}

/** The text of /proc/PID/timers; empty when the kernel has no POSIX timers to show. */
async function readTimersFile(pid: number): Promise<string> {
  try {
    return await Deno.readTextFile(`/proc/${pid}/timers`);
  } catch (e) {
    // Without CONFIG_POSIX_TIMERS there is none (without CONFIG_CHECKPOINT_RESTORE, preflight fails).
    if (e instanceof Deno.errors.NotFound) return "";
    throw e;
  }
}

/** Why the timers of process `pid` keep it from being checkpointed (empty: they do not). */
export async function timerReasons(pid: number): Promise<string[]> {
  let timers: ProcTimer[];
  try {
    timers = parseProcTimers(await readTimersFile(pid));
  } catch (e) {
    if (e instanceof PpmError) return [`its POSIX timers cannot be read (${e.why})`];
    if (e instanceof Deno.errors.PermissionDenied) return ["its POSIX timers cannot be read"];
    throw e;
  }
  return timerProblems(pid, timers, listThreads(pid));
}

/** A `timeval` (µs) or `timespec` (ns) at `off` of `v` as a time. */
function timeAt(v: DataView, off: number, unitNs: number): TimeState {
  const sec = v.getBigInt64(off, true);
  const sub = Number(v.getBigInt64(off + 8, true)) * unitNs;
  return { sec: sec < 0n ? 0n : sec, nsec: sub < 0 || sub > 999_999_999 ? 0 : sub };
}

const isZero = (t: TimeState) => t.sec === 0n && t.nsec === 0;

/**
 * The TIMERS record of the frozen process whose leader is `leader`, read
 * by system calls in it (`place`: its vDSO, mappings, seccomp; see
 * core/ptrace/borrow.ts), which is then as it was. Throws a PpmError when
 * a call fails.
 */
export async function dumpTimers(leader: Tracee, place: BorrowPlace): Promise<TimersRecord> {
  const pid = leader.pid;
  const found = parseProcTimers(await readTimersFile(pid));
  const failed = (what: string, r: bigint) =>
    new PpmError(
      `cannot checkpoint process ${pid}`,
      `reading its ${what} failed (${errnoName(Number(-r))})`,
      "",
      EXIT.FAILURE,
    );
  return await borrow(leader, place, async (inj) => {
    const buf = inj.scratch(32);
    const itimers: ItimerEntry[] = [];
    for (const which of [0, 1, 2]) {
      const r = inj.call(NR.getitimer, [BigInt(which), buf]);
      if (r < 0n) throw failed(`interval timer ${which} (getitimer)`, r);
      const b = await inj.read(buf, 32);
      const v = new DataView(b.buffer, b.byteOffset, 32);
      // struct itimerval: it_interval, then it_value; timevals.
      const e = { which, interval: timeAt(v, 0, 1000), value: timeAt(v, 16, 1000) };
      // A periodic ITIMER_REAL whose SIGALRM is pending waits for it to be taken before it runs
      // again (the kernel restarts it then), and reads 0 left meanwhile: it is kept with a whole
      // interval left (its SIGALRM is in the image's queue).
      if (which === ITIMER.real && isZero(e.value)) e.value = e.interval;
      if (!isZero(e.value)) itimers.push(e);
    }
    const posix: PosixTimerEntry[] = [];
    for (const t of found) {
      const r = inj.call(NR.timer_gettime, [BigInt(t.id), buf]);
      if (r < 0n) throw failed(`POSIX timer ${t.id} (timer_gettime)`, r);
      const b = await inj.read(buf, 32);
      const v = new DataView(b.buffer, b.byteOffset, 32);
      const overrun = inj.call(NR.timer_getoverrun, [BigInt(t.id)]);
      if (overrun < 0n) throw failed(`POSIX timer ${t.id} (timer_getoverrun)`, overrun);
      posix.push({
        id: t.id,
        clock: t.clock,
        notify: t.notify,
        ...(t.toThread ? { tid: t.target } : {}),
        // A SIGEV_NONE timer sends nothing: its signal number is whatever the process left there.
        signal: t.notify === "none" ? 0 : t.signal,
        value: BigInt.asUintN(64, t.value),
        // struct itimerspec: it_interval, then it_value; timespecs.
        interval: timeAt(v, 0, 1),
        left: timeAt(v, 16, 1),
        overrun: Number(overrun),
      });
    }
    // A restore on this kernel build makes and deletes the ids it skips unless it can ask for them.
    const last = posix.at(-1)?.id ?? 0;
    if (
      last - posix.length >= MAX_SKIPPED_IDS &&
      inj.call(NR.prctl, PR_TIMER_CREATE_RESTORE_IDS_GET) < 0n
    ) {
      throw new PpmError(
        `process ${pid} cannot be checkpointed`,
        `its POSIX timer ids reach ${last}: restoring them on this kernel, which gives timer ids ` +
          `in sequence, would take making and deleting ${last + 1 - posix.length} timers (ppm ` +
          `makes at most ${MAX_SKIPPED_IDS})`,
        "a kernel that lets ppm ask for timer ids (PR_TIMER_CREATE_RESTORE_IDS, newer than 6.12) can",
        EXIT.FAILURE,
      );
    }
    return { itimers, posix };
  });
}
