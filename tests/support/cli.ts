/**
 * Running the ppm CLI from source in a subprocess, as a user would.
 *
 * @module
 */
import { join } from "node:path";
import { PROJECT_ROOT } from "../../core/paths.ts";

/** Output of one ppm run. */
export interface CliResult {
  /** Exit code. */
  code: number;
  /** Standard output. */
  stdout: string;
  /** Standard error. */
  stderr: string;
}

/** Runs `ppm ...args` from source with extra environment `env`. */
export async function ppm(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--config",
      join(PROJECT_ROOT, "deno.json"),
      join(PROJECT_ROOT, "cli", "main.ts"),
      ...args,
    ],
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}
