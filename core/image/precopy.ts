/**
 * The PRECOPY record of a migration's image after pre-copy rounds
 * (core/dump/precopy.ts): the image carries only the pages written since
 * the last round; the destination restores the others from what the
 * rounds sent it (core/restore/precopy_store.ts), but for the pages this
 * record says to drop (the process no longer has them, or they hold only
 * zeros now).
 *
 * @module
 */
import { arr, bad, int, obj } from "./fields.ts";

/** Page indices (address / 4096) stay below 2^35 (user space ends at 2^47). */
export const MAX_PAGE_INDEX = 2 ** 35;

/** Most drop runs in one record. */
export const MAX_DROP_RUNS = 1 << 22;

/** What the record holds. */
export interface PrecopyRecord {
  /** Pages the image leaves out because the destination holds them, unchanged. */
  held: number;
  /** Pages the destination holds that must not be restored: [first index, count], sorted, apart. */
  drops: [number, number][];
}

/** The PRECOPY record, checked. */
export function checkPrecopy(v: unknown): PrecopyRecord {
  const o = obj(v, "PRECOPY");
  const held = int(o, "held", "PRECOPY", 0, MAX_PAGE_INDEX);
  let end = 0;
  const drops = arr(o.drops, "PRECOPY.drops", MAX_DROP_RUNS).map((d, i): [number, number] => {
    const r = arr(d, `PRECOPY drop ${i}`, 2);
    if (r.length !== 2) throw bad(`PRECOPY drop ${i}`, "not [first page, count]");
    const first = int({ first: r[0] }, "first", `PRECOPY drop ${i}`, 0, MAX_PAGE_INDEX - 1);
    const count = int({ count: r[1] }, "count", `PRECOPY drop ${i}`, 1, MAX_PAGE_INDEX - first);
    if (first < end) throw bad(`PRECOPY drop ${i}`, "not after the one before it");
    end = first + count;
    return [first, count];
  });
  return { held, drops };
}
