/**
 * The TIMERS record: a valid one comes back whole, through msgpack and
 * through a whole image; an image without it still loads; hostile values
 * of every field are refused naming the record, the timer and the field.
 */
import { checkTimers, cpuClock } from "../../core/image/timers.ts";
import { ImageError } from "../../core/image/errors.ts";
import { decodeValue, encodeValue } from "../../core/image/codec.ts";
import { RECORD } from "../../core/image/format.ts";
import { loadImage, mmRecord } from "../../core/image/schema.ts";
import { ImageWriter } from "../../core/image/writer.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

const PID = 100;
const TIDS = [101, 102];
const time = (sec: bigint, nsec = 0) => ({ sec, nsec });

function posix(id: number, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    clock: 1,
    notify: "signal",
    signal: 34,
    value: 0x5a5a00000000n,
    left: time(0n, 50_000_000),
    interval: time(0n, 100_000_000),
    overrun: 0,
    ...over,
  };
}

function valid(): Record<string, unknown> {
  return {
    itimers: [
      { which: 0, value: time(0n, 150_000_000), interval: time(0n, 200_000_000) },
      { which: 1, value: time(999n, 990_000_000), interval: time(7n) },
    ],
    posix: [
      posix(0),
      posix(1, { signal: 35, tid: 102, value: 0xbn }),
      posix(3, { notify: "none", signal: 0, left: time(0n), interval: time(0n) }),
      posix(4, { clock: 2, notify: "thread", signal: 32, overrun: 7 }),
      posix(6, { clock: -6 }), // CLOCK_PROCESS_CPUTIME_ID as the kernel keeps it
      posix(7, { clock: -2 }), // CLOCK_THREAD_CPUTIME_ID
      posix(8, { clock: (~PID << 3) | 0 }), // the process's CPUCLOCK_PROF, by PID
      posix(9, { clock: (~102 << 3) | 4 | 1 }), // thread 102's CPUCLOCK_VIRT
      posix(0x7fffffff, { clock: 11 }),
    ],
  };
}

function refused(v: unknown, pattern: RegExp): void {
  try {
    checkTimers(v, PID, TIDS);
  } catch (e) {
    assert(e instanceof ImageError, `not an ImageError: ${e}`);
    assertMatch(`${e.what}: ${e.why}`, pattern);
    return;
  }
  throw new Error(`accepted: ${pattern}`);
}

Deno.test("TIMERS: a valid record comes back whole, through msgpack too", () => {
  const r = checkTimers(decodeValue(encodeValue(valid()).slice()), PID, TIDS);
  assertEquals(r.itimers.map((t) => t.which), [0, 1]);
  assertEquals(r.itimers[1].value, time(999n, 990_000_000));
  assertEquals(r.posix.map((t) => t.id), [0, 1, 3, 4, 6, 7, 8, 9, 0x7fffffff]);
  assertEquals(r.posix.map((t) => t.clock).slice(4, 6), [-6, -2]);
  assertEquals(r.posix[0].value, 0x5a5a00000000n);
  assertEquals(r.posix[1].tid, 102);
  assertEquals(r.posix[0].tid, undefined);
  assertEquals(r.posix[2].notify, "none");
  assertEquals(r.posix[3].overrun, 7);
  // The leader is a thread too.
  assertEquals(
    checkTimers({ itimers: [], posix: [posix(0, { tid: PID })] }, PID, []).posix[0].tid,
    PID,
  );
  assertEquals(checkTimers({ itimers: [], posix: [] }, PID, []), { itimers: [], posix: [] });
});

Deno.test("TIMERS: CPU-time clock ids decoded as the kernel encodes them", () => {
  assertEquals(cpuClock(-6), { pid: 0, thread: false, kind: 2 });
  assertEquals(cpuClock(-2), { pid: 0, thread: true, kind: 2 });
  assertEquals(cpuClock((~4242 << 3) | 4 | 1), { pid: 4242, thread: true, kind: 1 });
  assertEquals(cpuClock(1), undefined);
  assertEquals(cpuClock(0), undefined);
});

Deno.test("TIMERS: hostile values are refused with the field named", () => {
  const one = (over: Record<string, unknown>) => ({ itimers: [], posix: [posix(5, over)] });
  const it = (over: Record<string, unknown>) => ({
    itimers: [{ which: 0, value: time(1n), interval: time(0n), ...over }],
    posix: [],
  });
  refused(null, /TIMERS/);
  refused([], /TIMERS/);
  refused({ itimers: [], posix: "x" }, /TIMERS.posix/);
  refused({ itimers: {}, posix: [] }, /TIMERS.itimers/);
  refused({ posix: [] }, /TIMERS.itimers/);
  // interval timers
  refused(it({ which: 3 }), /itimers\[0\].*which/);
  refused(it({ which: -1 }), /which/);
  refused(it({ value: time(0n) }), /itimers\[0\].*value is 0/);
  refused(it({ value: time(-1n) }), /itimers\[0\]\.value.*sec/);
  refused(it({ value: time(1n, 1_000_000_000) }), /itimers\[0\]\.value.*nsec/);
  refused(it({ interval: time(0n, -1) }), /itimers\[0\]\.interval.*nsec/);
  refused(it({ interval: { sec: 1n } }), /interval.*nsec/);
  refused(it({ interval: null }), /itimers\[0\]\.interval/);
  refused(it({ value: time(1n << 63n) }), /value.*sec/);
  refused({ itimers: [it({}).itimers[0], it({}).itimers[0]], posix: [] }, /timer 0 appears twice/);
  refused({ itimers: Array(4).fill(it({}).itimers[0]), posix: [] }, /TIMERS.itimers/);
  // POSIX timers: ids
  refused(one({ id: -1 }), /posix\[0\].*id/);
  refused(one({ id: 2 ** 31 }), /posix\[0\].*id/);
  refused(one({ id: 1.5 }), /id/);
  refused(one({ id: "0" }), /id/);
  refused({ itimers: [], posix: [posix(2), posix(2)] }, /timer 2 appears twice/);
  refused({ itimers: [], posix: [posix(3), posix(2)] }, /ascending/);
  refused(
    { itimers: [], posix: Array(4097).fill(0).map((_, i) => posix(i)) },
    /TIMERS.posix.*4096/,
  );
  // clocks
  // Not clocks with timers; CPU-time clocks of no kind (3), of another process, of a thread
  // not in the image, of thread 101 as if it were a process.
  const cpu = (pid: number, thread: boolean, kind = 2) => (~pid << 3) | (thread ? 4 : 0) | kind;
  for (
    const clock of [4, 5, 6, 10, 12, 2 ** 31, -1, cpu(0, false, 3), cpu(5, false), cpu(103, true)]
  ) {
    refused(one({ clock }), /timer 5.*clock/);
  }
  refused(one({ clock: cpu(101, false) }), /clock/);
  // notify, signal, tid
  refused(one({ notify: "thread-id" }), /timer 5.*notify/);
  refused(one({ notify: 4 }), /timer 5.*notify/);
  refused(one({ signal: 0 }), /timer 5.*signal/);
  refused(one({ signal: 65 }), /timer 5.*signal/);
  refused(one({ signal: -1 }), /timer 5.*signal/);
  refused(one({ notify: "thread", signal: 0 }), /signal/);
  refused(one({ notify: "none", signal: 14 }), /timer 5.*signal/);
  refused(one({ tid: 103 }), /timer 5.*tid 103 is not a thread/);
  refused(one({ tid: 0 }), /timer 5.*tid/);
  refused(one({ tid: 2 ** 40 }), /tid/);
  refused(one({ notify: "none", signal: 0, tid: 101 }), /a tid with notify none/);
  refused(one({ notify: "thread", tid: 101 }), /a tid with notify thread/);
  // value, times, overrun
  refused(one({ value: -1n }), /timer 5.*value/);
  refused(one({ value: 1n << 64n }), /value/);
  refused(one({ left: time(0n, 1e9) }), /timer 5\)\.left.*nsec/);
  refused(one({ left: time(-5n) }), /left.*sec/);
  refused(one({ interval: "1s" }), /timer 5\)\.interval/);
  refused(one({ overrun: -1 }), /overrun/);
  refused(one({ overrun: 2 ** 31 }), /overrun/);
  // A prototype key is data: it neither passes as a field nor breaks the check.
  refused({ itimers: [], posix: [JSON.parse('{"__proto__": {"id": 7}}')] }, /posix\[0\]/);
});

const task = {
  pid: PID,
  comm: "timers",
  exe: "/usr/bin/timers",
  cwd: "/",
  umask: 0o22,
  uid: [0, 0, 0, 0],
  gid: [0, 0, 0, 0],
  groups: [],
  caps: {},
  rlimits: [],
  personality: 0,
  kernel: "6.1.0-57-amd64",
  cpuFlags: ["sse2"],
  xsaveSize: 576,
  abi: 3,
  createdAt: "2026-12-01T00:00:00Z",
};

/** A whole image, with `timers` as its TIMERS record (none when undefined). */
async function image(timers?: unknown): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  const w = new ImageWriter((c) => (chunks.push(c.slice()), Promise.resolve()));
  await w.writeRecord(RECORD.TASK, task);
  await w.writeRecord(RECORD.MM, mmRecord({ brk: 0x401000n }, []));
  await w.writeRecord(RECORD.CPU, {
    regs: new Uint8Array(216),
    xstate: new Uint8Array(576),
    sigmask: 0n,
    restart: "none",
  });
  await w.writeRecord(RECORD.SIGNALS, {
    actions: [],
    altstack: { sp: 0n, size: 0n, flags: 2 },
    blocked: 0n,
    pending: 0n,
    sharedPending: 0n,
    deliverOnResume: 0,
    queue: [],
    robustList: 0n,
    robustListLen: 24n,
    clearChildTid: 0n,
    rseq: { addr: 0n, len: 0, sig: 0 },
  });
  await w.writeRecord(RECORD.VMAS, []);
  // deno-lint-ignore no-explicit-any
  if (timers !== undefined) await w.writeRecord(RECORD.TIMERS, timers as any);
  await w.writeRecord(RECORD.FILES, { fds: [], mapped: [] });
  await w.end();
  return chunks;
}

async function* from(chunks: Uint8Array[]) {
  yield* chunks;
}

Deno.test("TIMERS: through an image; optional; the thread of a timer is one of the image's", async () => {
  const old = await loadImage(from(await image()));
  assertEquals(old.timers, undefined);
  const timers = { itimers: [], posix: [posix(0), posix(2, { tid: PID })] };
  const img = await loadImage(from(await image(timers)));
  assertEquals(img.timers?.posix.map((t) => [t.id, t.tid]), [[0, undefined], [2, PID]]);
  // No THREADS record: only the leader is a thread of the process.
  try {
    await loadImage(from(await image({ itimers: [], posix: [posix(0, { tid: 101 })] })));
    throw new Error("accepted a timer aimed at a thread the image does not have");
  } catch (e) {
    assert(e instanceof ImageError, `not an ImageError: ${e}`);
    assertMatch(`${e.what}: ${e.why}`, /TIMERS.posix\[0\] \(timer 0\).*tid 101/);
  }
});
