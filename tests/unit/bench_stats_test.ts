/** bench/lib/stats.ts: medians, ranges, pair-by-pair ratios, per-phase medians. */
import { median, pairRatios, phaseMedians, summarize } from "../../bench/lib/stats.ts";
import { assertEquals, assertThrows } from "../support/assert.ts";

Deno.test("bench stats: median of odd and even counts, unsorted input left alone", () => {
  const xs = [5, 1, 3];
  assertEquals(median(xs), 3);
  assertEquals(xs, [5, 1, 3]);
  assertEquals(median([4, 1, 3, 2]), 2.5);
  assertEquals(median([7]), 7);
});

Deno.test("bench stats: median refuses no values and values that are not numbers", () => {
  assertThrows(() => median([]));
  assertThrows(() => median([1, NaN]));
  assertThrows(() => median([1, Infinity]));
});

Deno.test("bench stats: summarize gives n, median, min and max", () => {
  assertEquals(summarize([]), undefined);
  assertEquals(summarize([3, 9, 1, 4]), { n: 4, median: 3.5, min: 1, max: 9 });
});

Deno.test("bench stats: ratios are taken round by round, rounds one side lacks left out", () => {
  const ppm = new Map([[0, 50], [1, 60], [2, 70], [4, 10]]);
  const criu = new Map([[0, 100], [1, 120], [3, 90], [4, 0]]);
  assertEquals(pairRatios(ppm, criu), [
    { round: 0, a: 50, b: 100, ratio: 0.5 },
    { round: 1, a: 60, b: 120, ratio: 0.5 },
  ]);
});

Deno.test("bench stats: pair ratios differ from the ratio of medians when the machine drifts", () => {
  // The machine slows down over the run; each pair still shows ppm at half of CRIU.
  const ppm = new Map([[0, 10], [1, 100], [2, 1000]]);
  const criu = new Map([[0, 20], [1, 200], [2, 2000]]);
  const r = pairRatios(ppm, criu).map((p) => p.ratio);
  assertEquals(r, [0.5, 0.5, 0.5]);
});

Deno.test("bench stats: per-phase medians keep the order phases first appear", () => {
  const got = phaseMedians([
    { freeze: 1, dump: 10 },
    { freeze: 3, dump: 30, transfer: 5 },
    { freeze: 2, dump: 20, transfer: NaN },
  ]);
  assertEquals(got.map((x) => x.phase), ["freeze", "dump", "transfer"]);
  assertEquals(got[0].summary, { n: 3, median: 2, min: 1, max: 3 });
  assertEquals(got[2].summary, { n: 1, median: 5, min: 5, max: 5 });
});
