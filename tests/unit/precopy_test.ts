/**
 * Pre-copy (issue 20) on this host, whose kernel may lack soft-dirty
 * tracking (the guests' has it: tests/guest/migrate_test.ts moves a process
 * that writes all the time with rounds):
 *
 * - what the destination holds (PrecopyState): kept, dropped, as runs;
 * - the PRECOPY record, and hostile values of it;
 * - the destination's store: the rounds' stream taken (a page sent again
 *   replaces its bytes), hostile streams refused with the reason, and the
 *   pages the image leaves to it added to the plan: inside its mappings,
 *   neither carried nor dropped, in runs that never cross a mapping; an
 *   image that relies on pages it does not hold is refused;
 * - a first round on a real running process: its pages sent, and it runs
 *   on; the choice to pre-copy (off, too small, no dirty tracking).
 */
import { PageReceiver, PageSender } from "../../core/transport/pagestream.ts";
import { PrecopyState } from "../../core/dump/precopy_state.ts";
import { precopyRound, softDirtyWorks } from "../../core/dump/precopy.ts";
import { checkPrecopy } from "../../core/image/precopy.ts";
import type { LoadedImage } from "../../core/image/schema.ts";
import {
  encodeRun,
  PRECOPY_DEFAULTS,
  precopyChoice,
  resolvePrecopyConfig,
} from "../../core/migrate/precopy.ts";
import type { PlanWriter } from "../../core/restore/memory_plan.ts";
import { PrecopyStore } from "../../core/restore/precopy_store.ts";
import { addressOf, PAGE_SIZE } from "../../ffi/libc.ts";
import { pread } from "../../ffi/fds.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "../support/assert.ts";
import { PROGRAMS_OUT, startProgram, waitUntil } from "../support/fd_kinds.ts";
import { buildProgram } from "../support/programs.ts";

const P = BigInt(PAGE_SIZE);

/** `n` pages, page i filled with byte `fill + i`. */
function pages(n: number, fill: number): Uint8Array {
  const d = new Uint8Array(n * PAGE_SIZE);
  for (let i = 0; i < n; i++) d.fill((fill + i) & 0xff, i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
  return d;
}

/** A stream of runs, cut into chunks of `cut` bytes. */
async function* stream(runs: { start: bigint; data: Uint8Array }[], cut = 5000) {
  const all = runs.flatMap((r) => encodeRun(r));
  const bytes = new Uint8Array(all.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of all) {
    bytes.set(c, off);
    off += c.length;
  }
  for (let i = 0; i < bytes.length; i += cut) yield bytes.slice(i, i + cut);
}

async function* raw(b: Uint8Array) {
  yield b;
}

/** A plan writer that notes the runs it is given (each page's first byte, read from the store). */
function fakeWriter() {
  const runs: { start: bigint; count: number; first: number; bytes: number[] }[] = [];
  const w = {
    addRunFrom(
      block: { start: bigint; count: number },
      from: { fd: number; parts: { offset: number; pages: number }[] },
    ) {
      const bytes: number[] = [];
      for (const p of from.parts) {
        for (let i = 0; i < p.pages; i++) {
          const b = new Uint8Array(1);
          pread(from.fd, b, p.offset + i * PAGE_SIZE);
          bytes.push(b[0]);
        }
      }
      assertEquals(bytes.length, block.count);
      runs.push({ start: block.start, count: block.count, first: bytes[0], bytes });
      return Promise.resolve();
    },
  } as unknown as PlanWriter;
  return { w, runs };
}

Deno.test("precopy state: kept pages are held, dropped ones go, as sorted runs", () => {
  const s = new PrecopyState();
  for (const i of [10, 11, 12, 20, 5]) s.keep(i);
  s.drop(11);
  s.drop(12);
  s.drop(5);
  s.drop(99); // never sent: nothing to drop
  s.keep(12); // sent again: held after all
  assertEquals([...s.sent].sort((a, b) => a - b), [10, 12, 20]);
  assertEquals(s.dropRuns(), [[5, 1], [11, 1]]);
  s.keep(40);
  s.drop(40);
  s.keep(41);
  s.drop(41);
  assertEquals(s.dropRuns(), [[5, 1], [11, 1], [40, 2]]);
});

Deno.test("precopy record: checked, hostile values refused", () => {
  assertEquals(checkPrecopy({ held: 3, drops: [[1, 2], [5, 1]] }), {
    held: 3,
    drops: [[1, 2], [5, 1]],
  });
  for (
    const [v, why] of [
      [null, /not a map/],
      [{ held: -1, drops: [] }, /held/],
      [{ held: 2 ** 36, drops: [] }, /held/],
      [{ held: 0, drops: "x" }, /not a list/],
      [{ held: 0, drops: [[1]] }, /not \[first page, count\]/],
      [{ held: 0, drops: [[1, 0]] }, /count/],
      [{ held: 0, drops: [[2 ** 35, 1]] }, /first/],
      [{ held: 0, drops: [[2 ** 35 - 1, 2]] }, /count/],
      [{ held: 0, drops: [[5, 2], [6, 1]] }, /not after/],
      [{ held: 0, drops: [[5, 1], [1, 1]] }, /not after/],
      [{ held: 0, drops: [["1", 1]] }, /first/],
    ] as const
  ) {
    assertThrows(() => checkPrecopy(v), (e) => why.test((e as Error).message), JSON.stringify(v));
  }
});

Deno.test("precopy store: runs taken (a page sent again replaces its bytes); the image's leftovers planned", async () => {
  const store = await PrecopyStore.create(1000);
  try {
    const a = 0x10000n; // the anonymous mapping: pages 16..31
    await store.take(stream([
      { start: a, data: pages(8, 1) }, // 16..23
      { start: a + 8n * P, data: pages(8, 9) }, // 24..31
      { start: a + 2n * P, data: pages(2, 100) }, // 18, 19 again
      { start: 0x40000n, data: pages(2, 50) }, // 64, 65: unmapped since
    ]));
    assertEquals(store.size, 18);
    assertEquals(store.received, 20);
    const img = {
      vmas: [
        { start: a, end: a + 16n * P, kind: "anon" },
        { start: a + 16n * P, end: a + 18n * P, kind: "anon" }, // 32, 33: nothing held
        { start: 0x7000_0000n, end: 0x7000_1000n, kind: "vdso" },
      ],
      precopy: { held: 12, drops: [[20, 2]] }, // 20, 21 zero now
    } as unknown as LoadedImage;
    // The freeze carried 24 and 25 (written since the last round).
    const { w, runs } = fakeWriter();
    const { added } = await store.addTo(w, img, new Set([24, 25]));
    assertEquals(added, 12);
    assertEquals(runs.map((r) => [Number(r.start / P), r.count, r.first]), [
      [16, 4, 1],
      [22, 2, 7],
      [26, 6, 11],
    ]);
    // 16, 17 from the first run, 18, 19 as sent again (100, 101).
    assertEquals(runs[0].bytes, [1, 2, 100, 101]);
    // 18 holds the bytes sent last.
    const again = await PrecopyStore.create(10);
    try {
      await again.take(stream([{ start: a, data: pages(1, 1) }, { start: a, data: pages(1, 7) }]));
      const f = fakeWriter();
      await again.addTo(f.w, {
        vmas: [{ start: a, end: a + P, kind: "anon" }],
        precopy: { held: 1, drops: [] },
      } as unknown as LoadedImage, new Set());
      assertEquals(f.runs[0].first, 7);
    } finally {
      await again.remove();
    }
    // An image relying on more than is held is refused.
    const { w: w2 } = fakeWriter();
    const e = await store.addTo(
      w2,
      { ...img, precopy: { held: 13, drops: [[20, 2]] } } as LoadedImage,
      new Set([24, 25]),
    ).then(() => null, (x) => x);
    assertMatch(String(e), /leaves 13 pages to the pre-copy rounds, and this node holds 12/);
  } finally {
    await store.remove();
  }
});

Deno.test("precopy store in the plan: held where the page stream put them, planned as runs pointing there", async () => {
  const store = PrecopyStore.inPlan("/nonexistent/plan", 100);
  const a = 0x10000n; // pages 16..23, in one mapping
  const base = 2 ** 40;
  store.hold(a, 4, base); // 16..19
  store.hold(a + 4n * P, 4, base + 4 * PAGE_SIZE); // 20..23
  store.hold(a + 2n * P, 1, base + 8 * PAGE_SIZE); // 18 again: its newest copy counts
  assertEquals(store.size, 8);
  assertEquals(store.received, 9);
  const at: [number, number, number][] = [];
  const w = {
    addRunAt(block: { start: bigint; count: number }, off: number) {
      at.push([Number(block.start / P), block.count, (off - base) / PAGE_SIZE]);
      return Promise.resolve();
    },
  } as unknown as PlanWriter;
  const img = {
    vmas: [{ start: a, end: a + 8n * P, kind: "anon" }],
    precopy: { held: 6, drops: [[23, 1]] },
  } as unknown as LoadedImage;
  assertEquals((await store.addTo(w, img, new Set([17]))).added, 6);
  // 16; 18 (slot 8); 19..22 (slots 3..6); 17 carried by the freeze, 23 dropped.
  assertEquals(at, [[16, 1, 0], [18, 1, 8], [19, 4, 3]]);
  // Pages on the link's stream are refused: they come on the page stream.
  const e = await store.take(stream([{ start: a, data: pages(1, 1) }])).then(() => null, (x) => x);
  assertMatch(String(e), /page stream was agreed/);
  await store.remove(); // nothing of its own to remove
});

Deno.test("precopy store with a vessel: kept pages stay, dropped ones become zeros, others are read back", async () => {
  // The vessel is this process: its pages are a buffer here, 8 pages from a page boundary.
  const raw = new Uint8Array(9 * PAGE_SIZE);
  const off = Number((P - (addressOf(raw) % P)) % P);
  const buf = raw.subarray(off, off + 8 * PAGE_SIZE);
  for (let i = 0; i < 8; i++) buf.fill(i + 1, i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
  const a = addressOf(raw) + BigInt(off), first = Number(a / P);
  const store = PrecopyStore.inPlan("/nonexistent/plan", 100);
  store.place(a, 8);
  store.hold(a + 8n * P, 1, 2 ** 40); // past the mappings: left out
  assertEquals(store.placed, 8);
  const img = {
    vmas: [
      // Kept: private anonymous read-write memory inside the vessel's room.
      { start: a, end: a + 4n * P, kind: "anon", prot: 3, vmFlags: 0n },
      // Not kept: a file's private copy.
      { start: a + 4n * P, end: a + 8n * P, kind: "file", path: "/lib/x", prot: 3, vmFlags: 0n },
    ],
    // Page 1 (kept) and page 5 (not kept) are dropped; 2 and 6 carried by the freeze.
    precopy: { held: 4, drops: [[first + 1, 1], [first + 5, 1]] },
  } as unknown as LoadedImage;
  const calls: string[] = [];
  const w = {
    addRunZero(b: { start: bigint; count: number }) {
      calls.push(`zero ${Number(b.start - a) / PAGE_SIZE} ${b.count}`);
      return Promise.resolve();
    },
    addRun(b: { start: bigint; count: number; data: Uint8Array }) {
      calls.push(`run ${Number(b.start - a) / PAGE_SIZE} ${b.count} ${[...b.data.subarray(0, 1)]}`);
      return Promise.resolve();
    },
    addRunAt() {
      calls.push("at");
      return Promise.resolve();
    },
  } as unknown as PlanWriter;
  const rooms: [bigint, bigint][] = [[a, a + 4n * P]];
  const got = await store.addTo(w, img, new Set([first + 2, first + 6]), { pid: Deno.pid, rooms });
  // 0 and 3 stay in place; 4 and 7 read back (their bytes: 5 and 8); 1 cleared.
  assertEquals(got, { added: 4, inPlace: 2 });
  assertEquals(calls, ["zero 1 1", "run 4 1 5", "run 7 1 8"]);
  // Without the vessel's rooms nothing is kept: every placed page it relies on is read back.
  calls.length = 0;
  const none = await store.addTo(w, img, new Set([first + 2, first + 6]), {
    pid: Deno.pid,
    rooms: [],
  });
  assertEquals(none, { added: 4, inPlace: 0 });
  assertEquals(calls, ["run 0 1 1", "run 3 1 4", "run 4 1 5", "run 7 1 8"]);
});

Deno.test("precopy store: hostile streams are refused with the reason", async () => {
  const header = (start: bigint, count: number, reserved = 0) => {
    const h = new Uint8Array(16);
    const v = new DataView(h.buffer);
    v.setBigUint64(0, start, true);
    v.setUint32(8, count, true);
    v.setUint32(12, reserved, true);
    return h;
  };
  const withData = (h: Uint8Array, n: number) => {
    const b = new Uint8Array(h.length + n);
    b.set(h);
    return b;
  };
  for (
    const [bytes, why] of [
      [header(0x1000n, 1).subarray(0, 9), /header is cut short/],
      [withData(header(0x1000n, 1, 7), PAGE_SIZE), /reserved/],
      [withData(header(0x1000n, 0), 0), /run of 0 pages/],
      [withData(header(0x1000n, 16385), 0), /run of 16385 pages/],
      [withData(header(0x1001n, 1), PAGE_SIZE), /outside user space/],
      [withData(header((1n << 47n) - P, 2), 2 * PAGE_SIZE), /outside user space/],
      [withData(header(0xffff_ffff_ffff_f000n, 1), PAGE_SIZE), /outside user space/],
      [withData(header(0x1000n, 2), PAGE_SIZE + 10), /cut short/],
      [withData(header(0x1000n, 5), 5 * PAGE_SIZE), /more than the 4 pages/],
    ] as const
  ) {
    const store = await PrecopyStore.create(4);
    try {
      const e = await store.take(raw(bytes)).then(() => null, (x) => x);
      assert(e instanceof Error, `accepted: ${why}`);
      assertMatch(e.message, why);
    } finally {
      await store.remove();
    }
  }
});

Deno.test("precopy: the choice, and a first round on a running process", async () => {
  assertEquals(precopyChoice({ ...PRECOPY_DEFAULTS, rounds: 0 }, 1 << 30), { precopy: false });
  assertEquals(precopyChoice(PRECOPY_DEFAULTS, 1 << 20), { precopy: false });
  const big = precopyChoice(PRECOPY_DEFAULTS, 1 << 30);
  if (softDirtyWorks()) assertEquals(big, { precopy: true });
  else assertMatch((big as { warning: string }).warning, /dirty tracking/);

  const bin = await buildProgram("bench_anon", PROGRAMS_OUT);
  const r = await startProgram(bin, ["1000", "2"]);
  try {
    await waitUntil("a tick", () => r.out().includes("tick 1 "));
    const state = new PrecopyState();
    const got: { start: bigint; n: number }[] = [];
    const st = await precopyRound(r.pid, state, {
      emit: (run) => {
        got.push({ start: run.start, n: run.data.length / PAGE_SIZE });
        return Promise.resolve();
      },
    });
    const sent = got.reduce((n, x) => n + x.n, 0);
    // Its 2 MiB (never zero) at least, each page once, and all of them held.
    assert(sent >= 512, `${sent} pages sent`);
    assertEquals(st.sent, sent);
    assertEquals(state.sent.size, sent);
    assert(st.dirty >= sent, `${st.dirty} chosen, ${sent} sent`);
    // It runs on: more ticks come.
    const ticks = (r.out().match(/^tick /gm) ?? []).length;
    await waitUntil("it ticks on", () => (r.out().match(/^tick /gm) ?? []).length > ticks + 1);
  } finally {
    r.end();
    await r.done();
  }
});

Deno.test("precopy: a round over the page stream lands in the store, page for page", async () => {
  const bin = await buildProgram("bench_anon", PROGRAMS_OUT);
  const r = await startProgram(bin, ["1000", "2"]);
  const dir = await Deno.makeTempDir({ prefix: "ppm-precopy-stream-" });
  try {
    await waitUntil("a tick", () => r.out().includes("tick 1 "));
    await Deno.writeFile(`${dir}/plan`, new Uint8Array(0));
    await Deno.writeFile(`${dir}/store`, new Uint8Array(0));
    let held = 0;
    const rx = await PageReceiver.start({
      bind: "127.0.0.1",
      from: "127.0.0.1",
      plan: `${dir}/plan`,
      layout: { head: 4096, vma: 64 },
      maxPages: 8192,
      timeoutMs: 10_000,
      store: { path: `${dir}/store`, maxPages: 8192, onHeld: (_a, n) => held += n },
    });
    const tx = await PageSender.start({
      to: "127.0.0.1",
      ticket: rx.ticket,
      pid: r.pid,
      timeoutMs: 10_000,
    });
    const state = new PrecopyState();
    const st = await precopyRound(r.pid, state, { stream: tx });
    await tx.freeze(0);
    await tx.finish();
    await rx.done;
    assert(st.sent >= 512, `${st.sent} pages sent`);
    assertEquals(held, st.sent);
    assertEquals(state.sent.size, st.sent);
    assertEquals((await Deno.stat(`${dir}/store`)).size, st.sent * PAGE_SIZE);
  } finally {
    r.end();
    await r.done();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("precopy config: the file's object checked, defaults for what it leaves out", () => {
  assertEquals(resolvePrecopyConfig(undefined), PRECOPY_DEFAULTS);
  assertEquals(resolvePrecopyConfig({ rounds: 0 }), { ...PRECOPY_DEFAULTS, rounds: 0 });
  assertEquals(resolvePrecopyConfig({ rounds: 8, minMiB: 0.5, stopMiB: 4 }), {
    rounds: 8,
    minBytes: 512 * 1024,
    minPages: 1024,
  });
  for (
    const [v, why] of [
      [[], /not an object/],
      ["4", /not an object/],
      [{ round: 4 }, /no setting "round"/],
      [{ rounds: 17 }, /rounds is 17/],
      [{ rounds: 1.5 }, /rounds is 1.5/],
      [{ rounds: "4" }, /rounds is "4"/],
      [{ minMiB: -1 }, /minMiB is -1/],
      [{ stopMiB: null }, /stopMiB is null/],
    ] as const
  ) {
    assertThrows(() => resolvePrecopyConfig(v), (e) => why.test((e as Error).message));
  }
});
