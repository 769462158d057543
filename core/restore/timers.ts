/**
 * The restored process's timers made again from its TIMERS record, by
 * system calls it makes itself (injected at the end of its restore,
 * finish.ts), once its threads exist with their TIDs (a thread-directed
 * timer needs its thread) and before its seccomp filters (which may forbid
 * these calls).
 *
 * POSIX timers first, in increasing id order, each with `timer_create` and
 * then, when it had time left, `timer_settime` with that time, relative
 * (a disarmed timer is made but not armed). The kernel chooses the ids:
 * where it lets the caller ask for one (PR_TIMER_CREATE_RESTORE_IDS, newer
 * kernels than 6.12) each is asked for; elsewhere the kernel gives them in
 * sequence from 0 in a process that never had a timer, so the ids the
 * image skips are made and deleted again, as CRIU does, at most
 * MAX_SKIPPED_IDS of them (core/image/timers.ts). An id other than the image's is refused.
 *
 * The interval timers last (`setitimer`), so that none fires while the
 * others are made (CRIU's restorer arms them last too). A signal of a timer
 * that fires before the process runs waits: the restore stub blocks every
 * signal until the image's mask is set.
 *
 * @module
 */
import { errnoName } from "../../ffi/libc.ts";
import { PpmError } from "../errors.ts";
import type { Injector } from "../ptrace/inject.ts";
import { readMem } from "../ptrace/memory.ts";
import {
  MAX_SKIPPED_IDS,
  NOTIFY,
  type PosixTimerEntry,
  type TimersRecord,
  type TimeState,
} from "../image/timers.ts";

/** x86-64 system call numbers. */
const NR = {
  setitimer: 38,
  prctl: 157,
  timer_create: 222,
  timer_settime: 223,
  timer_delete: 226,
} as const;

/** prctl(PR_TIMER_CREATE_RESTORE_IDS, ON or OFF). */
const PR_TIMER_CREATE_RESTORE_IDS = 77;

/** SIGEV_THREAD_ID, or-ed to SIGEV_SIGNAL for a thread-directed timer. */
const SIGEV_THREAD_ID = 4;

/** Size of `struct sigevent`. */
const SIGEVENT_SIZE = 64;

/** How the ids are got: asked for, or in sequence (made and deleted to skip). */
export type IdMode = "ask" | "sequence";

const ITIMER_NAMES = ["ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF"];

function timerError(what: string, why: string, fix = ""): PpmError {
  return new PpmError(
    "cannot restore",
    `${what}: ${why}`,
    fix || "the process was not started; nothing else was changed",
  );
}

/** `struct sigevent` of timer `t`, followed by the int its id is written to (or read from). */
function sigevent(t: PosixTimerEntry): Uint8Array {
  const b = new Uint8Array(SIGEVENT_SIZE + 8);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, t.value, true); // sigev_value
  v.setInt32(8, t.signal, true); // sigev_signo
  v.setInt32(12, NOTIFY.indexOf(t.notify) | (t.tid ? SIGEV_THREAD_ID : 0), true); // sigev_notify
  v.setInt32(16, t.tid ?? 0, true); // sigev_notify_thread_id
  v.setInt32(SIGEVENT_SIZE, t.id, true); // the id asked for
  return b;
}

/** Times as `struct itimerspec` (ns) or `struct itimerval` (µs, rounded up): interval, value. */
function spec(t: { interval: TimeState; value: TimeState }, usec: boolean): Uint8Array {
  const b = new Uint8Array(32);
  const v = new DataView(b.buffer);
  [t.interval, t.value].forEach((x, i) => {
    let sec = x.sec, sub = x.nsec;
    if (usec) {
      sub = Math.ceil(sub / 1000);
      if (sub === 1_000_000) (sec += 1n, sub = 0);
    }
    v.setBigInt64(i * 16, sec, true);
    v.setBigInt64(i * 16 + 8, BigInt(sub), true);
  });
  return b;
}

const armed = (t: TimeState) => t.sec !== 0n || t.nsec !== 0;

/**
 * Makes the timers of `rec` in the stopped process `pid` through `inj`
 * (its leader's injector): the POSIX timers with their ids, then the
 * interval timers. `mode` forces how ids are got (tests); by default they
 * are asked for where the kernel allows it. Throws a PpmError naming the
 * timer and the errno when a call fails, or when the kernel gives another
 * id than the image's.
 */
export async function restoreTimers(
  inj: Injector,
  pid: number,
  rec: TimersRecord,
  mode?: IdMode,
): Promise<void> {
  if (rec.posix.length) await makePosixTimers(inj, pid, rec.posix, mode);
  for (const t of rec.itimers) {
    const at = inj.scratch(32);
    await inj.write(at, spec(t, true));
    const r = inj.call(NR.setitimer, [BigInt(t.which), at, 0n]);
    if (r < 0n) {
      throw timerError(
        `interval timer ${ITIMER_NAMES[t.which]}`,
        `setitimer failed (${errnoName(Number(-r))})`,
      );
    }
  }
}

async function makePosixTimers(
  inj: Injector,
  pid: number,
  timers: PosixTimerEntry[],
  forced?: IdMode,
): Promise<void> {
  const sorted = [...timers].sort((a, b) => a.id - b.id);
  let mode: IdMode = forced ?? "sequence";
  if (forced !== "sequence") {
    const r = inj.call(NR.prctl, [BigInt(PR_TIMER_CREATE_RESTORE_IDS), 1n, 0n, 0n, 0n]);
    if (r === 0n) mode = "ask";
    else if (forced === "ask") {
      throw timerError(
        "POSIX timers",
        `this kernel cannot be asked for an id (${errnoName(Number(-r))})`,
      );
    }
  }
  const last = sorted.at(-1)!.id;
  if (mode === "sequence" && last - sorted.length >= MAX_SKIPPED_IDS) {
    throw timerError(
      `POSIX timer ${last}`,
      `this kernel gives timer ids in sequence, and reaching id ${last} would take making and ` +
        `deleting ${last + 1 - sorted.length} timers (ppm makes at most ${MAX_SKIPPED_IDS})`,
      "restore on a kernel that lets ppm ask for timer ids (PR_TIMER_CREATE_RESTORE_IDS, newer than 6.12)",
    );
  }
  try {
    for (const t of sorted) await makePosixTimer(inj, pid, t, mode);
  } finally {
    if (mode === "ask") inj.call(NR.prctl, [BigInt(PR_TIMER_CREATE_RESTORE_IDS), 0n, 0n, 0n, 0n]);
  }
}

async function makePosixTimer(
  inj: Injector,
  pid: number,
  t: PosixTimerEntry,
  mode: IdMode,
): Promise<void> {
  const what = `POSIX timer ${t.id} (clock ${t.clock}, ${t.notify}` +
    `${t.tid ? ` to thread ${t.tid}` : ""})`;
  const at = inj.scratch(SIGEVENT_SIZE + 8);
  await inj.write(at, sigevent(t));
  const idAt = at + BigInt(SIGEVENT_SIZE);
  for (let skipped = 0;; skipped++) {
    const r = inj.call(NR.timer_create, [BigInt(t.clock), at, idAt]);
    if (r < 0n) throw timerError(what, `timer_create failed (${errnoName(Number(-r))})`);
    const got = new DataView((await readMem(pid, idAt, 4)).buffer).getInt32(0, true);
    if (got === t.id) break;
    if (mode === "ask" || got > t.id || skipped >= MAX_SKIPPED_IDS) {
      inj.call(NR.timer_delete, [BigInt(got)]);
      throw timerError(
        what,
        `the kernel gave it id ${got}`,
        mode === "ask"
          ? "the process was not started; nothing else was changed"
          : "the new process had timers already (its ids come in sequence from 0); " +
            "the process was not started",
      );
    }
    const d = inj.call(NR.timer_delete, [BigInt(got)]);
    if (d < 0n) {
      throw timerError(
        what,
        `deleting timer ${got}, made to skip its id, failed (${errnoName(Number(-d))})`,
      );
    }
  }
  if (!armed(t.left)) return;
  const spAt = inj.scratch(32);
  await inj.write(spAt, spec({ interval: t.interval, value: t.left }, false));
  const r = inj.call(NR.timer_settime, [BigInt(t.id), 0n, spAt, 0n]);
  if (r < 0n) throw timerError(what, `timer_settime failed (${errnoName(Number(-r))})`);
}
