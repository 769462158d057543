/**
 * Running host programs with bounded time and captured output.
 *
 * @module
 */
import { EXIT, PpmError } from "../errors.ts";

/** Result of {@link run}. */
export interface RunResult {
  /** Exit code (or 128+signal). */
  code: number;
  /** Captured standard output. */
  stdout: string;
  /** Captured standard error. */
  stderr: string;
}

/** Options of {@link run}. */
export interface RunOptions {
  /** Working directory. */
  cwd?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Kill the program after this many milliseconds (default 10 minutes). */
  timeoutMs?: number;
  /** Bytes written to standard input. */
  stdin?: string | Uint8Array;
  /** Let output through to our own stdout/stderr instead of capturing it. */
  inherit?: boolean;
}

/**
 * Runs `cmd` with `args`; never throws for a non-zero exit, only when the
 * program is missing or the deadline passes.
 */
export async function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 600_000;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, {
      args,
      cwd: opts.cwd,
      env: opts.env,
      stdin: opts.stdin !== undefined ? "piped" : "null",
      stdout: opts.inherit ? "inherit" : "piped",
      stderr: opts.inherit ? "inherit" : "piped",
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new PpmError(
        `cannot run ${cmd}`,
        "the program is not installed",
        `install it (it ships in a Debian package; \`ppm vcluster up\` installs what it needs)`,
        EXIT.MISSING,
      );
    }
    throw e;
  }
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(
      typeof opts.stdin === "string" ? new TextEncoder().encode(opts.stdin) : opts.stdin,
    );
    await w.close();
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, timeoutMs);
  try {
    const out = await child.output();
    if (timedOut) {
      throw new PpmError(
        `${cmd} ${args.slice(0, 3).join(" ")} did not finish`,
        `killed after ${Math.round(timeoutMs / 1000)} s`,
        "",
        EXIT.TIMEOUT,
      );
    }
    const dec = new TextDecoder();
    return {
      code: out.signal ? 128 + signalNumber(out.signal) : out.code,
      stdout: opts.inherit ? "" : dec.decode(out.stdout),
      stderr: opts.inherit ? "" : dec.decode(out.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Like {@link run} but throws a {@link PpmError} on a non-zero exit. */
export async function runOk(
  cmd: string,
  args: string[],
  what: string,
  opts: RunOptions = {},
): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    const tail = (r.stderr || r.stdout).trim().split("\n").slice(-15).join("\n");
    throw new PpmError(what, `${cmd} exited with ${r.code}`, "", EXIT.FAILURE, tail);
  }
  return r;
}

function signalNumber(sig: Deno.Signal): number {
  const map: Partial<Record<Deno.Signal, number>> = {
    SIGKILL: 9,
    SIGTERM: 15,
    SIGINT: 2,
    SIGSEGV: 11,
  };
  return map[sig] ?? 0;
}

/** True when the effective user is root. */
export function isRoot(): boolean {
  return Deno.uid() === 0;
}
