/**
 * What the destination of a migration holds after pre-copy rounds: the
 * pages sent to it (by index, address / PAGE_SIZE), each as last sent, and
 * the pages it holds that must go (the process no longer has them, or they
 * hold only zeros now). The rounds (precopy.ts) and the final dump
 * (memory.ts) keep it up to date; the final image names the pages to drop
 * (the PRECOPY record).
 *
 * @module
 */
import { PageSet } from "./page_set.ts";

/** Pages the destination holds from pre-copy rounds. */
export class PrecopyState {
  /** Pages the destination holds, as last sent. */
  readonly sent = new PageSet();
  /** Pages it was sent that must go. */
  readonly drops = new PageSet();

  /** Page `idx` was sent (again): the destination holds its newest bytes. */
  keep(idx: number): void {
    this.sent.add(idx);
    this.drops.delete(idx);
  }

  /** Page `idx` must not be restored from what the destination holds (if it holds it). */
  drop(idx: number): void {
    if (this.sent.delete(idx)) this.drops.add(idx);
  }

  /** The pages to drop as sorted runs: [first index, count]. */
  dropRuns(): [number, number][] {
    const runs: [number, number][] = [];
    for (const i of this.drops) {
      const last = runs.at(-1);
      if (last && last[0] + last[1] === i) last[1]++;
      else runs.push([i, 1]);
    }
    return runs;
  }
}
