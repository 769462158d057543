/**
 * The page stream (core/transport/pagestream.ts): the helper's AEGIS-128L
 * test vectors; pages of a real process go from a sender to a receiver over
 * loopback into a plan file, zero pages left out; and hostile streams
 * (forged, altered, oversized, over the announced size, cut short) are each
 * refused with the reason.
 */
import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { withPagePattern } from "../support/page_pattern.ts";
import {
  ensurePagestream,
  PageReceiver,
  PageSender,
  pagestreamUnusable,
} from "../../core/transport/pagestream.ts";

const PAGES = 600;

/** The error `p` rejects with (fails when it resolves). */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a rejection");
}

function withTarget(fn: (pid: number, addr: bigint, dir: string) => Promise<void>) {
  return withPagePattern(PAGES, "ppm-pagestream-", fn);
}

function receiver(plan: string, maxPages = PAGES) {
  return PageReceiver.start({
    bind: "127.0.0.1",
    from: "127.0.0.1",
    plan,
    layout: { head: 4000, vma: 32 },
    maxPages,
    timeoutMs: 10_000,
  });
}

const pageByte = (i: number) => (i % 3 === 2 ? 0 : (i % 251) + 1);

Deno.test("page stream: the helper passes the AEGIS-128L test vectors of the draft", async () => {
  assertEquals(await pagestreamUnusable(), undefined);
  const out = await new Deno.Command(await ensurePagestream(), { args: ["selftest"] }).output();
  assertEquals(new TextDecoder().decode(out.stdout).trim(), "AEGIS-128L test vectors: ok");
});

Deno.test("page stream: a process's pages reach the plan as runs, zero pages left out", async () => {
  await withTarget(async (pid, addr, dir) => {
    const plan = join(dir, "plan");
    await Deno.writeFile(plan, new Uint8Array(0), { mode: 0o600 });
    const rx = await receiver(plan);
    const tx = await PageSender.start({
      to: "127.0.0.1",
      ticket: rx.ticket,
      pid,
      timeoutMs: 10_000,
    });
    await tx.freeze(3);
    // Two requests in flight at once: answered in order.
    const [a, b] = await Promise.all([
      tx.request(addr, 512),
      tx.request(addr + 512n * 4096n, PAGES - 512),
    ]);
    const zeros = [...a, ...b];
    assertEquals(zeros, Array.from({ length: PAGES }, (_, i) => i % 3 === 2));
    const sent = await tx.finish();
    const got = await rx.done;
    assertEquals(sent.pages, PAGES - PAGES / 3);
    assertEquals(got.pages, sent.pages);
    assertEquals(got.frames, sent.frames);
    assertEquals(got.vmas, 3);
    // Each run in the plan: its header, then its pages, byte for byte the process's.
    const bytes = await Deno.readFile(plan);
    assertEquals(got.end, bytes.length);
    let off = 4096;
    let pages = 0;
    for (const r of got.runs) {
      const dv = new DataView(bytes.buffer, off, 16);
      assertEquals(dv.getBigUint64(0, true), r.start);
      assertEquals(dv.getUint32(8, true), r.count);
      off += 16;
      for (let k = 0; k < r.count; k++) {
        const i = Number((r.start - addr) / 4096n) + k;
        const page = bytes.subarray(off, off + 4096);
        assert(page.every((x) => x === pageByte(i)), `page ${i}`);
        off += 4096;
      }
      pages += r.count;
    }
    assertEquals(pages, got.pages);
    assertEquals(off, bytes.length);
  });
});

Deno.test("page stream: a sender without the key is closed; the source still gets through", async () => {
  await withTarget(async (pid, addr, dir) => {
    const plan = join(dir, "plan");
    await Deno.writeFile(plan, new Uint8Array(0));
    const rx = await receiver(plan);
    const forged = await PageSender.start({
      to: "127.0.0.1",
      ticket: { ...rx.ticket, key: "00".repeat(16) },
      pid,
      timeoutMs: 5_000,
    });
    await forged.freeze(1);
    await forged.request(addr, 4).catch(() => {});
    forged.stop();
    const tx = await PageSender.start({
      to: "127.0.0.1",
      ticket: rx.ticket,
      pid,
      timeoutMs: 5_000,
    });
    await tx.freeze(1);
    await tx.request(addr, 2);
    await tx.finish();
    const got = await rx.done;
    assertEquals(got.pages, 2, "only the source's pages");
  });
});

/** Connects to the receiver and writes raw bytes, as an attacker on the network would. */
async function rawStream(port: number, chunks: Uint8Array[]): Promise<void> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    for (const b of chunks) await c.write(b);
  } catch { /* the receiver hung up */ }
  c.close();
}

function head(addr: bigint, pages: number, kind: number): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(0, addr, true);
  dv.setUint32(8, pages, true);
  dv.setUint32(12, kind, true);
  return b;
}

Deno.test("page stream: connections without the hello are closed, unread; 16 of them end the wait", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ppm-pagestream-" });
  try {
    const plan = join(dir, "plan");
    await Deno.writeFile(plan, new Uint8Array(0));
    const hostile: Uint8Array[][] = [
      [head(0n, 0, 1), new Uint8Array(48)], // a hello under another key
      [head(0x1000n, 300, 2)], // pages first, and too many
      [head(0n, 0, 9)], // an unknown kind
      [head(0x1000n, 0, 1)], // a malformed hello
      [head(0n, 0, 1), new Uint8Array(10)], // cut short
      [], // nothing at all
    ];
    const rx = await receiver(plan);
    for (let i = 0; i < 16; i++) await rawStream(rx.ticket.port, hostile[i % hostile.length]);
    assertMatch((await rejection(rx.done)).message, /failed its check 16 times/);
    assertEquals((await Deno.stat(plan)).size, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("page stream: more pages than announced, or a sender cut off, fail the receiver", async () => {
  await withTarget(async (pid, addr, dir) => {
    const plan = join(dir, "plan");
    await Deno.writeFile(plan, new Uint8Array(0));
    const rx = await receiver(plan, 100);
    const tx = await PageSender.start({
      to: "127.0.0.1",
      ticket: rx.ticket,
      pid,
      timeoutMs: 5_000,
    });
    await tx.freeze(1);
    await tx.request(addr, 512).catch(() => {});
    const e = await rejection(rx.done);
    assertMatch(e.message, /more than the 100 pages announced/);
    tx.stop();

    const rx2 = await receiver(plan);
    const tx2 = await PageSender.start({
      to: "127.0.0.1",
      ticket: rx2.ticket,
      pid,
      timeoutMs: 5_000,
    });
    await tx2.freeze(1);
    await tx2.request(addr, 10);
    tx2.stop(); // no end frame
    const e2 = await rejection(rx2.done);
    assertMatch(e2.message, /ended early/);
  });
});

Deno.test("page stream: the sender refuses a request outside user space or unaligned", async () => {
  await withTarget(async (pid, _addr, dir) => {
    const plan = join(dir, "plan");
    await Deno.writeFile(plan, new Uint8Array(0));
    for (const bad of [0x800000000000n - 4096n, 0x1001n]) {
      const rx = await receiver(plan);
      const tx = await PageSender.start({
        to: "127.0.0.1",
        ticket: rx.ticket,
        pid,
        timeoutMs: 5_000,
      });
      await tx.freeze(1);
      const e = await rejection(tx.request(bad, 2));
      assertMatch(e.message, /a bad request/);
      rx.stop();
      await rx.done.catch(() => {});
    }
  });
});

Deno.test("page stream: pre-copy pages go to the store, unreadable ones are told, order is kept", async () => {
  await withTarget(async (pid, addr, dir) => {
    const plan = join(dir, "plan");
    const store = join(dir, "store");
    await Deno.writeFile(plan, new Uint8Array(0));
    await Deno.writeFile(store, new Uint8Array(0));
    const held: [bigint, number, number][] = [];
    const rx = await PageReceiver.start({
      bind: "127.0.0.1",
      from: "127.0.0.1",
      plan,
      layout: { head: 4000, vma: 32 },
      maxPages: PAGES,
      timeoutMs: 10_000,
      store: { path: store, maxPages: 2 * PAGES, onHeld: (a, n, o) => held.push([a, n, o]) },
    });
    const tx = await PageSender.start({
      to: "127.0.0.1",
      ticket: rx.ticket,
      pid,
      timeoutMs: 10_000,
    });
    // A round, and a page sent again; an address the process does not map is told, not fatal.
    const a = await tx.held(addr, 6);
    assertEquals(a, { unreadable: false, zeros: [false, false, true, false, false, true] });
    assertEquals(await tx.held(addr + 4096n, 1), { unreadable: false, zeros: [false] });
    assertEquals((await tx.held(0x10000n, 4)).unreadable, true);
    await tx.freeze(2);
    assertEquals(await tx.request(addr + 3n * 4096n, 2), [false, false]);
    await tx.finish();
    const got = await rx.done;
    assertEquals(got.runs, [{ start: addr + 3n * 4096n, count: 2 }]);
    // Runs of non-zero pages, appended in the order sent.
    assertEquals(held, [[addr, 2, 0], [addr + 3n * 4096n, 2, 8192], [addr + 4096n, 1, 16384]]);
    const bytes = await Deno.readFile(store);
    assertEquals(bytes.length, 5 * 4096);
    for (const [i, page] of [[0, 0], [1, 1], [3, 2], [4, 3], [1, 4]]) {
      assert(bytes.subarray(page * 4096, page * 4096 + 4096).every((x) => x === pageByte(i)));
    }
  });
});

Deno.test("page stream: pre-copy pages without a store, past its bound, or after the freeze are refused", async () => {
  await withTarget(async (pid, addr, dir) => {
    const plan = join(dir, "plan");
    const store = join(dir, "store");
    await Deno.writeFile(plan, new Uint8Array(0));
    await Deno.writeFile(store, new Uint8Array(0));
    const rx = await receiver(plan);
    const tx = await PageSender.start({
      to: "127.0.0.1",
      ticket: rx.ticket,
      pid,
      timeoutMs: 5_000,
    });
    await tx.held(addr, 1).catch(() => {});
    assertMatch((await rejection(rx.done)).message, /no pre-copy was agreed/);
    tx.stop();

    const rx2 = await PageReceiver.start({
      bind: "127.0.0.1",
      from: "127.0.0.1",
      plan,
      layout: { head: 4000, vma: 32 },
      maxPages: PAGES,
      timeoutMs: 5_000,
      store: { path: store, maxPages: 3, onHeld: () => {} },
    });
    const tx2 = await PageSender.start({
      to: "127.0.0.1",
      ticket: rx2.ticket,
      pid,
      timeoutMs: 5_000,
    });
    await tx2.held(addr, 8).catch(() => {});
    assertMatch((await rejection(rx2.done)).message, /more than the 3 pre-copy pages allowed/);
    tx2.stop();

    const rx3 = await receiver(plan);
    const tx3 = await PageSender.start({
      to: "127.0.0.1",
      ticket: rx3.ticket,
      pid,
      timeoutMs: 5_000,
    });
    await tx3.freeze(1);
    assertMatch((await rejection(tx3.held(addr, 1))).message, /out of turn/);
    rx3.stop();
    await rx3.done.catch(() => {});
  });
});
