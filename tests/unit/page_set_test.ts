import { assert, assertEquals, assertThrows } from "../support/assert.ts";
import { SlotMap } from "../../core/restore/slot_map.ts";
import { PageSet } from "../../core/dump/page_set.ts";
import { pageNeeded, pageNeededHi, PM } from "../../core/dump/vma.ts";

Deno.test("page set: add, has, delete and size, across blocks and far up", () => {
  const s = new PageSet();
  const pages = [0, 1, 31, 32, 32767, 32768, 65535, 2 ** 35 - 1, 2 ** 35 + 5, 7];
  for (const p of pages) s.add(p);
  s.add(7); // twice: once in the set
  assertEquals(s.size, pages.length);
  for (const p of pages) assert(s.has(p), `has ${p}`);
  for (const p of [2, 30, 33, 32766, 32769, 2 ** 35]) assert(!s.has(p), `not ${p}`);
  assert(s.delete(32768));
  assert(!s.delete(32768));
  assert(!s.delete(12345678)); // a block never made
  assertEquals(s.size, pages.length - 1);
  assert(!s.has(32768));
});

Deno.test("page set: iterates in ascending order, whatever the order of adding", () => {
  const s = new PageSet();
  const pages = [2 ** 40 + 3, 99999, 5, 32768 * 3 + 31, 4, 32768 * 3 + 32, 0];
  for (const p of pages) s.add(p);
  assertEquals([...s], [...pages].sort((a, b) => a - b));
  assertEquals([...new PageSet()], []);
});

Deno.test("pagemap flags: the high-word test says what the 64-bit one says", () => {
  const entries = [
    0n,
    PM.PRESENT,
    PM.PRESENT | PM.FILE,
    PM.SWAPPED,
    PM.PRESENT | PM.SOFT_DIRTY | 0x12345n,
    PM.FILE | PM.SOFT_DIRTY,
  ];
  for (const kind of ["anon", "file", "shared-file", "vdso", "stack", "heap"] as const) {
    for (const e of entries) {
      for (const all of [false, true]) {
        assertEquals(pageNeededHi(kind, Number(e >> 32n), all), pageNeeded(kind, e, all));
      }
    }
  }
});

Deno.test("slot map: set, get, size and ascending visits; a slot out of range refused", () => {
  const m = new SlotMap();
  m.set(40000, 7);
  m.set(3, 2 ** 28 + 5); // a slot far into the plan (pre-copy pages at 1 TiB)
  m.set(3, 9); // again: replaced, counted once
  m.set(2 ** 36, 0);
  assertEquals(m.size, 3);
  assertEquals(m.get(3), 9);
  assertEquals(m.get(4), undefined);
  assertEquals(m.get(2 ** 36), 0);
  assertEquals(m.get(99 * 32768), undefined); // a block never made
  const seen: [number, number][] = [];
  m.forEach((i, s) => seen.push([i, s]));
  assertEquals(seen, [[3, 9], [40000, 7], [2 ** 36, 0]]);
  assertThrows(() => m.set(1, -1));
  assertThrows(() => m.set(1, 0xffffffff));
  assertThrows(() => m.set(1, 1.5));
});
