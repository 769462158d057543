/**
 * Progress of long commands (`migrate`, `drain`, `checkpoint`, `vcluster
 * up`): a bar on a terminal, or, for scripts, NDJSON events on stdout with
 * `--progress=json` when stdout is not a terminal. One JSON object per line,
 * each with `event` and `t` (ms since the command started; not on `error`,
 * which the entry point prints); the last line is
 * always `{"event":"result",…}` or `{"event":"error",…}`, so a reader can
 * stop there.
 *
 * @module
 */
import { EXIT, PpmError } from "../core/errors.ts";
import { report } from "./output.ts";
import { ProgressBar } from "./progress_bar.ts";

/** How a command shows its progress. */
export type ProgressMode = "auto" | "json" | "none";

/** The `--progress` option's text for `--help`. */
export const PROGRESS_HELP =
  "auto (a bar on a terminal), json (NDJSON events on stdout when it is not a terminal), none";

/** Checks the value of `--progress` (default auto). */
export function parseProgressMode(v: string | undefined): ProgressMode {
  if (v === undefined || v === "auto" || v === "json" || v === "none") return v ?? "auto";
  throw new PpmError(
    `invalid --progress ${JSON.stringify(v)}`,
    "it is auto, json or none",
    "give --progress=json for NDJSON events on stdout",
    EXIT.USAGE,
  );
}

/** Whether the command line asks for NDJSON events and stdout can take them. */
export function ndjsonRequested(
  args: readonly string[],
  stdoutTerminal = Deno.stdout.isTerminal(),
): boolean {
  if (stdoutTerminal) return false;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--") break;
    if (args[i] === "--progress=json" || (args[i] === "--progress" && args[i + 1] === "json")) {
      return true;
    }
  }
  return false;
}

/**
 * One NDJSON line: numbers as they are, bigints as decimal strings, never a
 * line break. `t` is left out when unknown.
 */
export function eventLine(
  event: string,
  t: number | undefined,
  fields: Record<string, unknown>,
): string {
  return JSON.stringify(
    { event, ...(t === undefined ? {} : { t: Math.round(t) }), ...fields },
    (_k, v) => typeof v === "bigint" ? v.toString() : v,
  );
}

/** Where a command reports how far it got. */
export class Progress {
  readonly #start = performance.now();
  readonly #bar: ProgressBar;
  readonly #write: (line: string) => void;
  #lastTransfer = -Infinity;
  /** Events go to stdout as NDJSON (else: the bar, or nothing). */
  readonly ndjson: boolean;

  /**
   * @param mode the `--progress` value
   * @param label the bar's label
   * @param json `--json` was given (no bar then: stderr stays quiet for scripts)
   * @param io where it writes, and whether stdout and stderr are terminals (tests)
   */
  constructor(
    mode: ProgressMode,
    label: string,
    json: boolean | undefined,
    io: { stdoutTerminal?: boolean; stderrTerminal?: boolean; write?: (s: string) => void } = {},
  ) {
    const stdoutTerminal = io.stdoutTerminal ?? Deno.stdout.isTerminal();
    const stderrTerminal = io.stderrTerminal ?? Deno.stderr.isTerminal();
    this.ndjson = mode === "json" && !stdoutTerminal;
    this.#bar = new ProgressBar(label, mode !== "none" && !this.ndjson && !json && stderrTerminal);
    this.#write = io.write ?? ((s) => console.log(s));
  }

  /** Milliseconds since the command started. */
  get elapsedMs(): number {
    return performance.now() - this.#start;
  }

  /** An event (NDJSON mode only). */
  event(event: string, fields: Record<string, unknown> = {}): void {
    if (this.ndjson) this.#write(eventLine(event, this.elapsedMs, fields));
  }

  /** Bytes moved so far: the bar, or a `transfer` event at most four times a second. */
  transfer(done: number, total: number | undefined): void {
    this.#bar.update(done, total ?? done);
    if (!this.ndjson) return;
    const now = performance.now();
    if (now - this.#lastTransfer < 250) return;
    this.#lastTransfer = now;
    this.event("transfer", { bytes: done, expected: total ?? null });
  }

  /** Removes the bar (call before printing anything else on stderr). */
  clear(): void {
    this.#bar.clear();
  }

  /** The command's result: a `result` event, or what `--json` / the text would print. */
  report<T>(json: boolean | undefined, data: T, text: (d: T) => string): void {
    this.clear();
    if (this.ndjson) this.event("result", { ok: true, result: data });
    else report(json, data, text);
  }
}

/** The final `error` event of a command that failed (what, why, what to do, the exit code). */
export function errorEvent(e: unknown, exitCode: number): string {
  const error = e instanceof PpmError
    ? e.toJSON()
    : { error: "internal error", reason: String((e as Error)?.message ?? e), exitCode };
  return eventLine("error", undefined, { ok: false, error });
}
