/**
 * A progress bar for a terminal: one line on stderr, redrawn in place, at
 * most ten times a second. When stderr is not a terminal it draws nothing,
 * so logs and job output files stay clean.
 *
 * @module
 */

/** Renders one bar line: `[#####.....]  42%  12.0/28.6 MiB  3.1 MiB/s`. */
export function renderBar(done: number, total: number, elapsedS: number, width = 30): string {
  const frac = total > 0 ? Math.min(1, done / total) : 0;
  const filled = Math.round(frac * width);
  const mib = (n: number) => (n / 2 ** 20).toFixed(1);
  const rate = elapsedS > 0 ? done / 2 ** 20 / elapsedS : 0;
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${
    String(Math.round(frac * 100)).padStart(3)
  }%  ${mib(done)}/${mib(Math.max(done, total))} MiB  ${rate.toFixed(1)} MiB/s`;
}

/** A bar that draws on a terminal only. */
export class ProgressBar {
  #start = performance.now();
  #last = 0;
  #drawn = false;
  #enc = new TextEncoder();

  /**
   * @param label shown before the bar
   * @param enabled draw at all (default: stderr is a terminal)
   */
  constructor(
    readonly label: string,
    readonly enabled = Deno.stderr.isTerminal(),
  ) {}

  /** Redraws with `done` of `total` bytes (throttled). */
  update(done: number, total: number): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (now - this.#last < 100) return;
    this.#last = now;
    const line = `${this.label} ${renderBar(done, total, (now - this.#start) / 1000)}`;
    Deno.stderr.writeSync(this.#enc.encode(`\r\x1b[2K${line}`));
    this.#drawn = true;
  }

  /** Removes the bar line. */
  clear(): void {
    if (this.#drawn) Deno.stderr.writeSync(this.#enc.encode("\r\x1b[2K"));
    this.#drawn = false;
  }
}
