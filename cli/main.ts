/**
 * Entry point of the `ppm` executable.
 *
 * @module
 */
import { CommanderError } from "commander";
import { EXIT, PpmError } from "../core/errors.ts";
import { buildApp } from "./app.ts";
import { errorEvent, ndjsonRequested } from "./events.ts";
import { failure } from "./output.ts";

// deno-lint-ignore no-explicit-any
type AnyCommand = { commands: readonly any[]; exitOverride(): unknown };

function overrideExits(cmd: AnyCommand): void {
  cmd.exitOverride();
  for (const c of cmd.commands) overrideExits(c);
}

/** Runs ppm with `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const program = buildApp();
  overrideExits(program as unknown as AnyCommand);
  try {
    await program.parseAsync(args, { from: "user" });
    return typeof Deno.exitCode === "number" ? Deno.exitCode : EXIT.OK;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (["commander.helpDisplayed", "commander.version", "commander.help"].includes(e.code)) {
        return EXIT.OK;
      }
      const code = args[0] === "run" ? EXIT.RUN_FAILED : EXIT.USAGE;
      // Scripts asked for JSON: the usage error is JSON too (commander said it on stderr).
      const usage = new PpmError(
        "bad command line",
        e.message.replace(/^error: /, "").trim(),
        "see ppm --help",
        code,
      );
      if (ndjsonRequested(args)) console.log(errorEvent(usage, code));
      else if (args.includes("--json")) console.log(JSON.stringify(usage.toJSON(), null, 2));
      return code;
    }
    if (ndjsonRequested(args)) {
      // The last NDJSON line says how it ended; the message for people goes to stderr.
      const code = failure(e, false);
      console.log(errorEvent(e, code));
      return code;
    }
    return failure(e, args.includes("--json"));
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
