/**
 * /proc/PID/timers read as the kernel writes it (fs/proc/base.c,
 * show_timer): good text comes back sorted by id; damaged text is a
 * PpmError naming the line; and what the image cannot carry is a reason,
 * one sentence per timer.
 */
import { parseProcTimers, timerProblems } from "../../core/dump/timers.ts";
import { PpmError } from "../../core/errors.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

/** What `timers` (tests/programs/timers.c) shows, as read on Linux 6.18: newest first. */
const GOOD = `ID: 5
signal: 36/000000000000000f
notify: signal/pid.30282
ClockID: -6
ID: 4
signal: 0/0000000000000004
notify: none/pid.30282
ClockID: 7
ID: 3
signal: 12345/0000000000000003
notify: none/pid.30282
ClockID: 0
ID: 1
signal: 35/0000000000000b0b
notify: signal/tid.30284
ClockID: 1
ID: 0
signal: 34/00005a5a00000000
notify: signal/pid.30282
ClockID: 1
`;

Deno.test("/proc/PID/timers: every field, sorted by id", () => {
  const t = parseProcTimers(GOOD);
  assertEquals(t.map((x) => x.id), [0, 1, 3, 4, 5]);
  assertEquals(t[0], {
    id: 0,
    signal: 34,
    value: 0x5a5a00000000n,
    notify: "signal",
    toThread: false,
    target: 30282,
    clock: 1,
  });
  assertEquals([t[1].toThread, t[1].target, t[1].value], [true, 30284, 0xb0bn]);
  assertEquals([t[2].notify, t[2].signal], ["none", 12345]);
  assertEquals(t[4].clock, -6);
  assertEquals(parseProcTimers(""), []);
  // glibc's SIGEV_THREAD timers, and a pointer with the top bit set.
  const thread = parseProcTimers(
    "ID: 2147483647\nsignal: 32/ffff8880deadbeef\nnotify: thread/pid.7\nClockID: 11\n",
  );
  assertEquals([thread[0].id, thread[0].notify, thread[0].value], [
    2147483647,
    "thread",
    0xffff8880deadbeefn,
  ]);
});

function damaged(text: string, pattern: RegExp): void {
  try {
    parseProcTimers(text);
  } catch (e) {
    assert(e instanceof PpmError, `not a PpmError: ${e}`);
    assertMatch(`${e.message} ${e.why}`, pattern);
    return;
  }
  throw new Error(`accepted: ${JSON.stringify(text)}`);
}

Deno.test("/proc/PID/timers: damaged text is refused, naming the line", () => {
  const one = (id: string, sig: string, notify: string, clock: string) =>
    `ID: ${id}\nsignal: ${sig}\nnotify: ${notify}\nClockID: ${clock}\n`;
  damaged("ID: 0\n", /1 lines, not 4/);
  damaged(GOOD.replace("ID: 4", "Id: 4"), /line 5 .*"Id: 4".* is not its ID/);
  damaged(GOOD.replace("ClockID: 7", "ClockID: seven"), /line 8 .*ClockID/);
  damaged(one("0", "14/xyz", "signal/pid.1", "1"), /line 2 .*signal/);
  damaged(one("0", "14/00000000000000000", "signal/pid.1", "1"), /line 2/); // 17 digits
  damaged(one("0", "14", "signal/pid.1", "1"), /line 2/);
  damaged(one("0", "14/0", "signal/pgid.1", "1"), /line 3 .*notify/);
  damaged(one("0", "14/0", "signal/pid.", "1"), /line 3/);
  damaged(one("0", "14/0", "sigev/pid.1", "1"), /unknown notify sigev/);
  damaged(one("0", "14/0", "Signal/pid.1", "1"), /line 3/);
  damaged(one("2147483648", "14/0", "signal/pid.1", "1"), /timer id 2147483648/);
  damaged(one("-1", "14/0", "signal/pid.1", "1"), /line 1/);
  damaged(one("0", "14/0", "signal/pid.1", "1") + one("0", "14/0", "signal/pid.1", "1"), /twice/);
  damaged(one("0", "14/0", "signal/pid.99999999", "1"), /out of range/);
  damaged(one("0", "14/0", "signal/pid.1", "1") + "\n", /5 lines/);
  damaged(one("0", "14/0", "signal/pid.1", "1 "), /line 4/);
  damaged(one("0\0", "14/0", "signal/pid.1", "1"), /line 1/);
});

Deno.test("timer reasons: what the image cannot carry, one sentence per timer", () => {
  const t = (id: number, clock: number, over: Record<string, unknown> = {}) => ({
    id,
    signal: 14,
    value: 0n,
    notify: "signal" as const,
    toThread: false,
    target: 100,
    clock,
    ...over,
  });
  const cpu = (pid: number, thread: boolean, kind = 2) => (~pid << 3) | (thread ? 4 : 0) | kind;
  assertEquals(
    timerProblems(100, [t(0, 0), t(1, 1), t(2, 7), t(3, -6), t(4, cpu(100, false))], [100]),
    [],
  );
  // CLOCK_THREAD_CPUTIME_ID is fine alone, and a thread clock by TID always.
  assertEquals(timerProblems(100, [t(0, -2)], [100]), []);
  assertEquals(timerProblems(100, [t(0, cpu(101, true))], [100, 101]), []);
  assertEquals(timerProblems(100, [t(0, 1, { toThread: true, target: 101 })], [100, 101]), []);
  const why = (x: ReturnType<typeof t>, tids = [100, 101]) => timerProblems(100, [x], tids);
  assertMatch(why(t(7, 4))[0], /POSIX timer 7 runs on clock 4/);
  assertMatch(why(t(7, -1))[0], /POSIX timer 7 runs on clock -1/);
  assertMatch(why(t(7, -2))[0], /POSIX timer 7 counts the CPU time of one of its threads/);
  assertMatch(why(t(7, cpu(55, false)))[0], /CPU time of process 55, which is not part/);
  assertMatch(why(t(7, cpu(102, true)))[0], /CPU time of thread 102/);
  assertMatch(why(t(7, 1, { toThread: true, target: 102 }))[0], /signals thread 102, which has/);
  assertMatch(why(t(7, 1, { target: 55 }))[0], /signals process 55/);
  assertMatch(why(t(7, 1, { toThread: true, notify: "none" }))[0], /notifies none to a thread/);
  const many = Array.from({ length: 4097 }, (_, i) => t(i, 1));
  assertMatch(timerProblems(100, many, [100])[0], /4097 POSIX timers; ppm carries at most 4096/);
});
