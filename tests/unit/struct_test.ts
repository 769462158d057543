import { assertEquals, assertThrows } from "../support/assert.ts";
import { decode, defineStruct, encode } from "../../ffi/struct.ts";

const demo = defineStruct(
  "demo",
  [
    ["a", "u8"],
    ["b", "u64"],
    ["c", "u32"],
    ["name", { cstring: 8 }],
    ["raw", { bytes: 3 }],
  ] as const,
);

Deno.test("struct: natural alignment and padding as on x86-64", () => {
  assertEquals(demo.byName.a.offset, 0);
  assertEquals(demo.byName.b.offset, 8);
  assertEquals(demo.byName.c.offset, 16);
  assertEquals(demo.byName.name.offset, 20);
  assertEquals(demo.byName.raw.offset, 28);
  assertEquals(demo.size, 32);
});

Deno.test("struct: encode then decode round-trips", () => {
  const v = { a: 7, b: 1n << 40n, c: 0xdeadbeef, name: "ppm", raw: new Uint8Array([1, 2, 3]) };
  assertEquals(decode(demo, encode(demo, v)), v);
});

Deno.test("struct: refuses strings that do not fit and short buffers", () => {
  assertThrows(() => encode(demo, { name: "12345678" }), RangeError);
  assertThrows(() => decode(demo, new Uint8Array(4)), RangeError);
});
