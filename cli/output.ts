/**
 * How commands print: text for people, `--json` for scripts, and errors
 * turned into messages and exit codes.
 *
 * @module
 */
import { EXIT, PpmError } from "../core/errors.ts";

/** Prints `data` as JSON when `json` is set, else the text `text` returns. */
export function report<T>(json: boolean | undefined, data: T, text: (d: T) => string): void {
  if (json) {
    console.log(JSON.stringify(data, (_k, v) => typeof v === "bigint" ? v.toString() : v, 2));
  } else {
    const s = text(data);
    if (s) console.log(s);
  }
}

/** A one-line progress note on stderr (never on stdout, which may be JSON). */
export function progress(msg: string): void {
  console.error(`ppm: ${msg}`);
}

/** Prints an error the user can act on and returns the exit code. */
export function failure(e: unknown, json: boolean): number {
  if (e instanceof PpmError) {
    if (json) console.log(JSON.stringify(e.toJSON(), null, 2));
    console.error(e.render());
    return e.exitCode;
  }
  const err = e as Error;
  console.error(`ppm: internal error: ${err?.stack ?? String(e)}`);
  console.error("  what to do: this is a bug in ppm; please report it with the command you ran");
  return EXIT.FAILURE;
}
