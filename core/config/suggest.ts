/**
 * Hints for a mistyped name: the nearest known one by edit distance, and
 * the full list.
 *
 * @module
 */

/** The edit (Levenshtein) distance between `a` and `b`. */
function distance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return d[b.length];
}

/** "did you mean …? " for the nearest of `known` to `key`, and the full list. */
export function suggest(key: string, known: readonly string[]): string {
  let best = "";
  let bestD = Infinity;
  for (const k of known) {
    const dist = distance(key.toLowerCase(), k.toLowerCase());
    if (dist < bestD) [best, bestD] = [k, dist];
  }
  const near = bestD <= Math.max(2, Math.floor(key.length / 3)) ? `did you mean ${best}? ` : "";
  return `${near}known: ${known.join(", ")}`;
}
