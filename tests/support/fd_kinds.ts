/**
 * Running tests/programs/fd_kinds.c on the host for the descriptor tests:
 * started with its stdout in a file, waited for with bounded waits, ended
 * by its PID.
 *
 * @module
 */
import { join } from "node:path";
import { buildProgram } from "./programs.ts";

/** Where the unit tests build the C programs. */
export const PROGRAMS_OUT = join(Deno.env.get("TMPDIR") ?? "/tmp", "ppm-unit-programs");

/** fd_kinds, built. */
export function buildFdKinds(): Promise<string> {
  return buildProgram("fd_kinds", PROGRAMS_OUT);
}

/** Waits up to `ms` for `cond`. */
export async function waitUntil(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A started fd_kinds. */
export interface Running {
  /** Its PID. */
  pid: number;
  /** Its stdout so far. */
  out(): string;
  /** Its exit, once it ended (bounded by `ms`). */
  done(ms?: number): Promise<Deno.CommandStatus>;
  /** Ends it (SIGKILL) if it still runs. */
  end(): void;
}

/** Starts `bin` with `args`, stdout to a temporary file; resolves once `ready` was printed. */
export async function startProgram(bin: string, args: string[]): Promise<Running> {
  const file = await Deno.makeTempFile({ prefix: "ppm-fd-kinds-" });
  const child = new Deno.Command("sh", {
    args: ["-c", 'exec "$@" > "$0"', file, bin, ...args],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const out = () => {
    try {
      return Deno.readTextFileSync(file);
    } catch {
      return "";
    }
  };
  const r: Running = {
    pid: child.pid,
    out,
    done: async (ms = 20_000) => {
      const timer = setTimeout(() => r.end(), ms);
      try {
        return await child.status;
      } finally {
        clearTimeout(timer);
      }
    },
    end: () => {
      try {
        child.kill("SIGKILL");
      } catch { /* ended */ }
    },
  };
  try {
    await waitUntil(`${bin} to start`, () => out().includes("ready "));
  } catch (e) {
    r.end();
    await child.status;
    throw e;
  }
  return r;
}

/** The report lines (`fd ...`) of an output. */
export function reportLines(out: string): string[] {
  return out.split("\n").filter((l) => l.startsWith("fd "));
}

/** The state letter of a process (`T` when stopped). */
export function procState(pid: number): string {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
}

/**
 * Throws unless report `got` equals `want` line for line, but for timer
 * values (`value~Ns`), which may differ by `slackS` seconds: a restored
 * timer's time left is what it was at the dump, so the time the
 * checkpoint and restore took comes on top of it.
 */
export function assertSameReport(got: string[], want: string[], slackS: number): void {
  const timer = /value~(-?\d+)s/;
  const bad: string[] = [];
  if (got.length !== want.length) bad.push(`${got.length} lines, expected ${want.length}`);
  got.forEach((g, i) => {
    const w = want[i] ?? "";
    const gv = timer.exec(g), wv = timer.exec(w);
    const same = gv && wv
      ? g.replace(timer, "") === w.replace(timer, "") &&
        Math.abs(Number(gv[1]) - Number(wv[1])) <= slackS
      : g === w;
    if (!same) bad.push(`got  ${g}\nwant ${w}`);
  });
  if (bad.length) throw new Error(`fd_kinds report differs:\n${bad.join("\n")}`);
}
