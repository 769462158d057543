/**
 * Statistics of the benchmark: medians with their range, and ratios taken
 * pair by pair (ppm's round k against CRIU's round k, measured one after
 * the other), so slow drifts of the machine cancel out. Pure.
 *
 * @module
 */

/** A median with the range it came from. */
export interface Summary {
  /** Number of values. */
  n: number;
  /** Median (the mean of the two middle values for an even count). */
  median: number;
  /** Smallest value. */
  min: number;
  /** Largest value. */
  max: number;
}

/** The median of `xs`; throws on an empty list or a value that is not finite. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error("median of no values");
  if (xs.some((x) => !Number.isFinite(x))) {
    throw new Error(`median of a value that is not a finite number: ${xs.join(", ")}`);
  }
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Median, minimum and maximum of `xs`, or undefined for an empty list. */
export function summarize(xs: readonly number[]): Summary | undefined {
  if (xs.length === 0) return undefined;
  const m = median(xs);
  return { n: xs.length, median: m, min: Math.min(...xs), max: Math.max(...xs) };
}

/** One value per round. */
export type ByRound = ReadonlyMap<number, number>;

/** The ratio a/b of one round. */
export interface PairRatio {
  /** The round. */
  round: number;
  /** a's value. */
  a: number;
  /** b's value. */
  b: number;
  /** a / b. */
  ratio: number;
}

/**
 * Ratios a/b for every round both measured (rounds only one side has are
 * left out; a round where b is 0 is left out too, as its ratio means
 * nothing). Sorted by round.
 */
export function pairRatios(a: ByRound, b: ByRound): PairRatio[] {
  const out: PairRatio[] = [];
  for (const [round, va] of a) {
    const vb = b.get(round);
    if (vb === undefined || vb === 0 || !Number.isFinite(va) || !Number.isFinite(vb)) continue;
    out.push({ round, a: va, b: vb, ratio: va / vb });
  }
  return out.sort((x, y) => x.round - y.round);
}

/**
 * Per-phase medians over records of phase times: each phase's median over
 * the records that have it, in the order phases first appear.
 */
export function phaseMedians(
  records: readonly Readonly<Record<string, number>>[],
): { phase: string; summary: Summary }[] {
  const order: string[] = [];
  const values = new Map<string, number[]>();
  for (const r of records) {
    for (const [k, v] of Object.entries(r)) {
      if (!Number.isFinite(v)) continue;
      if (!values.has(k)) {
        values.set(k, []);
        order.push(k);
      }
      values.get(k)!.push(v);
    }
  }
  return order.map((phase) => ({ phase, summary: summarize(values.get(phase)!)! }));
}
