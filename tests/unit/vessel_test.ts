/**
 * The vessel (core/restore/vessel.ts, core/restore/stub/vessel.h): the
 * restore stub started ahead with a chosen PID reserves the address space
 * around its own mappings; a page stream's pre-copy pages that a room
 * holds whole are written into it where they belong, the rest go to the
 * store; it ends when asked, or when its stdin closes. Its report is
 * checked as any input. The restore that keeps its mappings (PPM_VMA_KEEP)
 * runs in the guests (tests/guest/migrate_test.ts, pre-copy step).
 */
import { join } from "node:path";
import { assert, assertEquals, assertThrows } from "../support/assert.ts";
import { withPagePattern } from "../support/page_pattern.ts";
import { processVmRead } from "../../ffi/libc.ts";
import { PageReceiver, PageSender } from "../../core/transport/pagestream.ts";
import { parseVesselReport, Vessel } from "../../core/restore/vessel.ts";

const opts = { sanitizeResources: false, sanitizeOps: false, ignore: Deno.uid() !== 0 };

Deno.test("vessel report: rooms until the ready line; hostile lines refused", () => {
  assertEquals(parseVesselReport("room 10000 20000\n", 7), undefined);
  assertEquals(
    parseVesselReport("room 10000 20000\nroom 7f0000000000 7ffffffff000\nready 7\n", 7),
    [
      [0x10000n, 0x20000n],
      [0x7f0000000000n, 0x7ffffffff000n],
    ],
  );
  assertEquals(parseVesselReport("ready 7\n", 7), []);
  // A line being written is not read yet.
  assertEquals(parseVesselReport("room 10000 20000\nroom 30", 7), undefined);
  assertEquals(parseVesselReport("room 10000 20000\nready 7", 7), undefined);
  for (
    const bad of [
      "room 20000 10000\nready 7\n", // empty
      "room 10000 10000\nready 7\n",
      "room 10001 20000\nready 7\n", // unaligned
      "room 10000 1000000000000\nready 7\n", // past user space
      "room -1 20000\nready 7\n",
      "room 10000 20000 30000\nready 7\n",
      "ready 8\n", // another PID's
      "rm -rf /\n",
    ]
  ) {
    assertThrows(() => parseVesselReport(bad, 7), Error);
  }
});

/** A PID no process has now, high up. */
function freePid(): number {
  const max = Number(Deno.readTextFileSync("/proc/sys/kernel/pid_max").trim());
  for (let p = max - 1; p > max - 5000; p--) {
    try {
      Deno.statSync(`/proc/${p}`);
    } catch {
      return p;
    }
  }
  throw new Error("no free PID");
}

const pageByte = (i: number) => (i % 3 === 2 ? 0 : (i % 251) + 1);

Deno.test(
  "vessel: pre-copy pages a room holds go into it where they belong; the rest to the store",
  opts,
  async () => {
    await withPagePattern(64, "ppm-vessel-", async (target, addr, dir) => {
      let vessel: Vessel | undefined;
      try {
        const pid = freePid();
        vessel = await Vessel.launch(pid, dir);
        assertEquals(vessel.pid, pid);
        assert(vessel.rooms.length > 0, "no rooms");
        // Its own mappings lie outside its rooms.
        for (const l of Deno.readTextFileSync(`/proc/${pid}/maps`).trim().split("\n")) {
          if (!/ rw-p 00000000 00:00 0 *$/.test(l)) {
            const [a, b] = l.split(" ")[0].split("-").map((x) => BigInt(`0x${x}`));
            assert(!vessel.rooms.some(([s, e]) => a < e && s < b), `${l} in a room`);
          }
        }
        assert(vessel.holds(addr, 6), "the target's pages are outside the rooms");
        const plan = join(dir, "plan"), store = join(dir, "store");
        await Deno.writeFile(plan, new Uint8Array(0));
        await Deno.writeFile(store, new Uint8Array(0));
        const held: [bigint, number, number][] = [];
        const placed: [bigint, number][] = [];
        const rx = await PageReceiver.start({
          bind: "127.0.0.1",
          from: "127.0.0.1",
          plan,
          layout: { head: 4000, vma: 32 },
          maxPages: 64,
          timeoutMs: 10_000,
          store: {
            path: store,
            maxPages: 64,
            onHeld: (a, n, o) => held.push([a, n, o]),
            // One room of 2 pages: the run after it is not held whole there.
            vessel: { pid, rooms: [[addr, addr + 2n * 4096n]] },
            onPlaced: (a, n) => placed.push([a, n]),
          },
        });
        const tx = await PageSender.start({
          to: "127.0.0.1",
          ticket: rx.ticket,
          pid: target,
          timeoutMs: 10_000,
        });
        await tx.held(addr, 6); // runs: pages 0-1 (placed), 3-4 (stored); 2 and 5 hold zeros
        await tx.freeze(1);
        await tx.finish();
        await rx.done;
        assertEquals(placed, [[addr, 2]]);
        assertEquals(held, [[addr + 3n * 4096n, 2, 0]]);
        const back = new Uint8Array(2 * 4096);
        assertEquals(await processVmRead(pid, addr, back), back.length);
        for (let i = 0; i < 2; i++) {
          assert(
            back.subarray(i * 4096, (i + 1) * 4096).every((x) => x === pageByte(i)),
            `page ${i}`,
          );
        }
        // Asked to end: gone, collected.
        await vessel.end();
        let gone = false;
        try {
          Deno.statSync(`/proc/${pid}`);
        } catch {
          gone = true;
        }
        assert(gone, "the vessel is still there");
      } finally {
        await vessel?.end();
      }
    });
  },
);
