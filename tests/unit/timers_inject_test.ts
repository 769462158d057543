/**
 * Timers dumped and made again by injected system calls, on the host (no
 * module needed):
 *
 * - `timers` (tests/programs/timers.c) is frozen again and again while it
 *   runs, its timers read each time by calls in its leader
 *   (core/dump/timers.ts through core/ptrace/borrow.ts): what is read is
 *   what it armed, the signals its timers sent while it was frozen are
 *   still pending after, and it runs on to its end as if nothing happened;
 * - so does `sleeper mixed`, frozen and borrowed inside each of its
 *   sleeping calls, which must resume exactly;
 * - a signal the freeze caught a thread with is still delivered after;
 * - what was read is made again (core/restore/timers.ts) in `timers
 *   target`, a second process that made none, with ids got in sequence and
 *   asked for: there they fire with the same ids, values and threads, and it
 *   runs its ticks to the end;
 * - hand-made records: a wide gap in the ids, ids the kernel does not give,
 *   a gap too wide for the sequence.
 */
import { parseMaps } from "../../core/dump/proc.ts";
import { dumpTimers, parseProcTimers } from "../../core/dump/timers.ts";
import { PpmError } from "../../core/errors.ts";
import { checkTimers, MAX_SKIPPED_IDS, type TimersRecord } from "../../core/image/timers.ts";
import { borrow, type BorrowPlace } from "../../core/ptrace/borrow.ts";
import { listThreads, ThreadGroup } from "../../core/ptrace/group.ts";
import { Tracee } from "../../core/ptrace/tracee.ts";
import { restoreTimers } from "../../core/restore/timers.ts";
import { PROGRAMS_OUT, type Running, startProgram } from "../support/fd_kinds.ts";
import { startTarget, type Target } from "../support/inject_target.ts";
import { buildProgram } from "../support/programs.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Where calls run in process `pid`. */
function placeOf(pid: number): BorrowPlace {
  const maps = parseMaps(Deno.readTextFileSync(`/proc/${pid}/maps`));
  return { vdso: maps.find((m) => m.name === "[vdso]")!, vmas: maps };
}

/** A pending-signal mask of /proc/PID/status (`SigPnd` of the thread, `ShdPnd` of the process). */
function pending(pid: number, field: "SigPnd" | "ShdPnd", tid = pid): bigint {
  const status = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/status`);
  return BigInt(`0x${new RegExp(`^${field}:\\s*([0-9a-f]+)$`, "m").exec(status)![1]}`);
}

const bit = (sig: number) => 1n << BigInt(sig - 1);
const SIGALRM = 14, SIGTERM = 15, SIGRTMIN = 34;
const ms = (n: number) => ({ sec: BigInt(Math.floor(n / 1000)), nsec: (n % 1000) * 1_000_000 });

/** The lines of a run that must be the same every time. */
const lines = (out: string) => out.split("\n").filter((l) => /^(tick|ok|FAIL) /.test(l));

function expected(ticks: number): string[] {
  return [
    ...Array.from({ length: ticks }, (_, i) => `tick ${i} timers=5 itimers=3`),
    `ok timers ticks=${ticks}`,
  ];
}

/** What `timers` armed, as its dump must show it (`worker`: its second thread). */
function checkDumped(rec: TimersRecord, pid: number, worker: number): void {
  const r = checkTimers(structuredClone(rec), pid, [worker]);
  assertEquals(r.itimers.map((t) => [t.which, t.interval]), [
    [0, ms(200)],
    [1, { sec: 7n, nsec: 0 }],
    [2, ms(30)],
  ]);
  assert(r.itimers[0].value.sec === 0n && r.itimers[0].value.nsec <= 200_000_000);
  assert(r.itimers[1].value.sec > 900n && r.itimers[1].value.sec <= 1000n);
  assertEquals(r.posix.map((t) => t.id), [0, 1, 3, 4, 5]);
  const [a, b, d, e, f] = r.posix;
  assertEquals([a.clock, a.notify, a.signal, a.value, a.tid, a.interval], [
    1,
    "signal",
    SIGRTMIN,
    0x5a5a00000000n,
    undefined,
    ms(100),
  ]);
  assertEquals([b.clock, b.signal, b.value, b.tid, b.interval], [1, 35, 0xb0bn, worker, ms(150)]);
  assertEquals([d.clock, d.notify, d.signal, d.left, d.interval], [0, "none", 0, ms(0), ms(0)]);
  assertEquals([e.clock, e.notify, e.interval], [7, "none", { sec: 500n, nsec: 0 }]);
  assert(e.left.sec > 900n && e.left.sec <= 1000n, `timer 4 has ${e.left.sec} s left`);
  assertEquals([f.clock, f.signal, f.value, f.interval], [-6, 36, 0xfn, ms(20)]);
  for (const t of [a, b, f]) {
    assert(t.left.sec === 0n && t.left.nsec > 0, `timer ${t.id} has ${t.left.nsec} ns left`);
  }
}

async function buildTimers(): Promise<string> {
  return await buildProgram("timers", PROGRAMS_OUT);
}

/** Starts `timers ticks`; its second thread's TID. */
async function startTimers(ticks: number): Promise<{ r: Running; worker: number }> {
  const r = await startProgram(await buildTimers(), [String(ticks)]);
  const worker = listThreads(r.pid).find((t) => t !== r.pid)!;
  return { r, worker };
}

/** Freezes `pid`, lets its timers fire a while, reads them; checks nothing pending was taken. */
async function dumpFrozen(pid: number, frozenMs = 250): Promise<TimersRecord> {
  const g = ThreadGroup.freeze(pid);
  try {
    await sleep(frozenMs);
    const before = pending(pid, "ShdPnd");
    const rec = await dumpTimers(g.leader, placeOf(pid));
    const after = pending(pid, "ShdPnd");
    assertEquals(after & before, before, "signals pending before the dump are taken");
    if (frozenMs >= 250) {
      assert(
        before & bit(SIGALRM) && before & bit(SIGRTMIN),
        "the timers did not fire while frozen",
      );
    }
    return rec;
  } finally {
    g.resume();
  }
}

Deno.test({
  name: "timers: read again and again from a running process, which runs on as if nothing happened",
  ...opts,
  fn: async () => {
    const { r, worker } = await startTimers(14);
    try {
      for (let i = 0; i < 6; i++) {
        await sleep(100 + 37 * i);
        checkDumped(await dumpFrozen(r.pid, i % 2 ? 0 : 250), r.pid, worker);
      }
      const status = await r.done(60_000);
      assertEquals(lines(r.out()), expected(14));
      assertEquals(status.code, 0);
    } finally {
      r.end();
    }
  },
});

Deno.test({
  name: "borrow: sleeping calls resume exactly; a signal the freeze caught is delivered after",
  ...opts,
  fn: async () => {
    const bin = await buildProgram("sleeper", PROGRAMS_OUT);
    const r = await startProgram(bin, ["20", "mixed"]);
    try {
      for (let i = 0; i < 10; i++) {
        await sleep(90 + 41 * i);
        const t = Tracee.freeze(r.pid);
        try {
          assertEquals(
            await borrow(t, placeOf(r.pid), (inj) => Promise.resolve(inj.call(39, []))),
            BigInt(r.pid),
          );
        } finally {
          t.resume();
        }
      }
      // Caught with SIGTERM on the way: the signal is queued again and ends it once let go.
      const t = Tracee.attach(r.pid);
      Deno.kill(r.pid, "SIGTERM");
      t.waitStop();
      assertEquals(t.deliverOnResume, SIGTERM);
      await borrow(t, placeOf(r.pid), (inj) => Promise.resolve(inj.call(39, [])));
      assertEquals(t.deliverOnResume, 0);
      assert(pending(r.pid, "SigPnd") & bit(SIGTERM), "SIGTERM is not pending");
      t.resume();
      const status = await r.done();
      assertEquals([status.signal, lines(r.out()).filter((l) => l.startsWith("FAIL"))], [
        "SIGTERM",
        [],
      ]);
    } finally {
      r.end();
    }
  },
});

/** A dump of `timers` (from a run that then ends). */
async function dumpOfTimers(): Promise<TimersRecord> {
  const { r, worker } = await startTimers(3);
  try {
    await sleep(150);
    const rec = await dumpFrozen(r.pid);
    checkDumped(rec, r.pid, worker);
    assertEquals((await r.done(60_000)).code, 0, r.out());
    return rec;
  } finally {
    r.end();
  }
}

const TIMERS_TARGET = (ticks: number) => ({
  name: "timers",
  args: [String(ticks), "target"],
  done: "ok timers",
});

/** `timers target`, stopped and seized; its worker's TID. */
async function startTimersTarget(ticks: number): Promise<{ tg: Target; worker: number }> {
  await buildTimers();
  const tg = await startTarget(TIMERS_TARGET(ticks));
  const worker = Number(/^target worker=(\d+)$/m.exec(tg.run.out())![1]);
  return { tg, worker };
}

for (const mode of ["sequence", undefined] as const) {
  Deno.test({
    name:
      `timers: made again in another process (ids ${mode ?? "asked for where the kernel can"}), ` +
      "they fire there as they did",
    ...opts,
    fn: async () => {
      const rec = await dumpOfTimers();
      const { tg, worker } = await startTimersTarget(4);
      try {
        const pid = tg.run.pid;
        // The same timers in another process: its worker has another TID than the original's.
        const moved = structuredClone(rec);
        moved.posix.find((t) => t.id === 1)!.tid = worker;
        await restoreTimers(tg.inj, pid, checkTimers(moved, pid, [worker]), mode);
        const made = parseProcTimers(Deno.readTextFileSync(`/proc/${pid}/timers`));
        assertEquals(made.map((t) => [t.id, t.notify, t.signal, t.value, t.clock]), [
          [0, "signal", SIGRTMIN, 0x5a5a00000000n, 1],
          [1, "signal", 35, 0xb0bn, 1],
          [3, "none", 0, 3n, 0],
          [4, "none", 0, 4n, 7],
          [5, "signal", 36, 0xfn, -6],
        ]);
        assertEquals([made[1].toThread, made[1].target], [true, worker]);
        const out = await tg.report();
        if (lines(out).length === 0) {
          const st = await tg.run.done(5000).catch((e) => String(e));
          throw new Error(`the target said:\n${out}\nand ended: ${JSON.stringify(st)}`);
        }
        assertEquals(lines(out), expected(4), `the target said:\n${out}`);
      } finally {
        tg.run.end();
      }
    },
  });
}

const none = (id: number, leftS = 0) => ({
  id,
  clock: 1,
  notify: "none" as const,
  signal: 0,
  value: BigInt(id),
  left: { sec: BigInt(leftS), nsec: 0 },
  interval: { sec: 0n, nsec: 0 },
  overrun: 0,
});

Deno.test({
  name: "timers: a wide gap in the ids; ids the kernel does not give are refused, naming the timer",
  ...opts,
  fn: async () => {
    const { tg } = await startTimersTarget(1);
    try {
      const pid = tg.run.pid;
      await restoreTimers(
        tg.inj,
        pid,
        { itimers: [], posix: [none(0), none(300, 100)] },
        "sequence",
      );
      assertEquals(parseProcTimers(Deno.readTextFileSync(`/proc/${pid}/timers`)).map((t) => t.id), [
        0,
        300,
      ]);
      // Timers made already: the next id in sequence is past the one asked for.
      const refused = async (rec: TimersRecord, mode: "sequence" | undefined, re: RegExp) => {
        try {
          await restoreTimers(tg.inj, pid, rec, mode);
        } catch (e) {
          assert(e instanceof PpmError, `not a PpmError: ${e}`);
          assertMatch(e.message, re);
          return;
        }
        throw new Error(`accepted ${JSON.stringify(rec.posix.map((t) => t.id))}`);
      };
      await refused(
        { itimers: [], posix: [none(5)] },
        "sequence",
        /POSIX timer 5 \(clock 1, none\): the kernel gave it id 301/,
      );
      const far = MAX_SKIPPED_IDS + 400;
      await refused(
        { itimers: [], posix: [none(far)] },
        "sequence",
        new RegExp(`POSIX timer ${far}: this kernel gives timer ids in sequence`),
      );
      // Asked for, where the kernel can: any id, at once; one taken is refused.
      const r = tg.inj.call(157, [77n, 2n, 0n, 0n, 0n]); // PR_TIMER_CREATE_RESTORE_IDS_GET
      if (r >= 0n) {
        await restoreTimers(tg.inj, pid, { itimers: [], posix: [none(1_000_000)] });
        assert(
          parseProcTimers(Deno.readTextFileSync(`/proc/${pid}/timers`)).some((t) =>
            t.id === 1_000_000
          ),
        );
        await refused(
          { itimers: [], posix: [none(300)] },
          undefined,
          /POSIX timer 300.*timer_create failed/,
        );
        assertEquals(tg.inj.call(157, [77n, 2n, 0n, 0n, 0n]), 0n, "the kernel is left asking");
      }
    } finally {
      tg.run.end();
    }
  },
});
