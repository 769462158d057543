/**
 * Errors a user can act on: what failed, why, and what to do about it, with
 * the exit code the CLI returns for them.
 *
 * @module
 */

/** Exit codes of the `ppm` command; documented in docs/cli.md. */
export const EXIT = {
  /** Success. */
  OK: 0,
  /** The operation failed, or a check answered "no". */
  FAILURE: 1,
  /** Bad command line: unknown option, invalid value. */
  USAGE: 2,
  /** Not permitted: missing privilege or capability. */
  PERMISSION: 3,
  /** Something needed is missing: headers, a package, a file, a cluster. */
  MISSING: 4,
  /** The kernel or module refused: wrong kernel, ABI mismatch, lockdown. */
  INCOMPATIBLE: 5,
  /** Busy: the resource is in use. */
  BUSY: 6,
  /** A deadline passed. */
  TIMEOUT: 7,
  /** `ppm run` itself failed (no agent, bad options): the command's own codes stay its own. */
  RUN_FAILED: 125,
  /** `ppm run`: the command was found but cannot be executed. */
  RUN_CANNOT_EXECUTE: 126,
  /** `ppm run`: the command was not found. */
  RUN_NOT_FOUND: 127,
} as const;

/** One of the {@link EXIT} codes. */
export type ExitCode = typeof EXIT[keyof typeof EXIT];

/** The last argument of {@link PpmError}: extra text, and the error it wraps. */
export interface PpmErrorOptions {
  /** Extra text shown after the message (a log excerpt). */
  details?: string;
  /** The error this one tells in the user's terms (kept for logs and debugging, never shown). */
  cause?: unknown;
}

/** An error with what failed, why, and what to do. */
export class PpmError extends Error {
  /** Extra text shown after the message (a log excerpt). */
  readonly details: string;

  /**
   * @param what what failed, e.g. "cannot load the ppm module"
   * @param why the cause in the user's terms
   * @param fix what to do about it; empty when nothing can be done
   * @param exitCode the CLI exit code
   * @param options extra text shown after the message (a log excerpt), or
   *   `{ details, cause }`: `cause` is the error this one wraps (the standard
   *   `Error.cause`; not part of {@link render} or {@link toJSON})
   */
  constructor(
    readonly what: string,
    readonly why: string,
    readonly fix = "",
    readonly exitCode: ExitCode = EXIT.FAILURE,
    options: string | PpmErrorOptions = "",
  ) {
    const opts = typeof options === "string" ? { details: options } : options;
    super(`${what}: ${why}`, "cause" in opts ? { cause: opts.cause } : undefined);
    this.name = "PpmError";
    this.details = opts.details ?? "";
  }

  /** The multi-line text shown to the user. */
  render(): string {
    let s = `ppm: ${this.what}: ${this.why}`;
    if (this.fix) s += `\n  what to do: ${this.fix}`;
    if (this.details) s += `\n${this.details}`;
    return s;
  }

  /** A JSON form for `--json` output. */
  toJSON(): Record<string, unknown> {
    return { error: this.what, reason: this.why, fix: this.fix, exitCode: this.exitCode };
  }
}
