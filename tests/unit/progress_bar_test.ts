import { ProgressBar, renderBar } from "../../cli/progress_bar.ts";
import { assertEquals, assertMatch } from "../support/assert.ts";

Deno.test("progress bar: fraction, sizes and rate", () => {
  const s = renderBar(5 * 2 ** 20, 10 * 2 ** 20, 2, 10);
  assertEquals(s, "[#####.....]  50%  5.0/10.0 MiB  2.5 MiB/s");
});

Deno.test("progress bar: more than expected shows full, never over 100 %", () => {
  assertMatch(renderBar(12 * 2 ** 20, 10 * 2 ** 20, 1, 10), /^\[#{10}\] 100% {2}12\.0\/12\.0 MiB/);
  assertMatch(renderBar(0, 0, 0, 4), /^\[\.{4}\] {3}0%/);
});

Deno.test("progress bar: draws nothing when disabled (output is not a terminal)", () => {
  const bar = new ProgressBar("x", false);
  bar.update(1, 2);
  bar.clear();
});
