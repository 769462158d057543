/**
 * The CLI bundled for running without its sources: the virtual cluster's
 * guests and the Debian package (when there is no `deno compile` binary)
 * run it with `deno run`. The bundle is code-split: an entry chunk with the
 * command tree, and chunks that each command's action imports when it runs
 * (cli/app.ts), so `ppm --version` or `ppm ps` load and compile a fraction
 * of ppm (under TCG, seconds per command); and the entry leaves out Node
 * modules commander imports but ppm does not need ({@link ENTRY_SHIMS}).
 *
 * @module
 */
import { join } from "node:path";
import { EXIT, PpmError } from "../errors.ts";
import { PROJECT_ROOT } from "../paths.ts";

/** The entry chunk's name in the bundle's folder (`deno bundle` names it after cli/main.ts). */
export const BUNDLE_ENTRY = "main.js";

/** JavaScript for an object that throws when anything of it is used: the Node module `name` left out. */
function leftOut(name: string): string {
  return `new Proxy({}, { get(_t, k) { throw new Error(${
    JSON.stringify(`ppm's bundle leaves ${name} out of commander (core/host/bundle.ts); `)
  } + \`commander used .\${String(k)}: a stand-alone executable subcommand?\`); } })`;
}

/** JavaScript for the global `process`, taken when first used (Deno makes its polyfill then). */
const LAZY_PROCESS = `new Proxy({}, {
  get(_t, k) {
    const v = Reflect.get(globalThis.process, k);
    return typeof v === "function" ? v.bind(globalThis.process) : v;
  },
  set: (_t, k, v) => Reflect.set(globalThis.process, k, v),
  has: (_t, k) => Reflect.has(globalThis.process, k),
})`;

/**
 * Commander's Node imports that the entry chunk does without: every `ppm`
 * run loads commander, and Deno makes a Node polyfill, at a cost, for each
 * module importing it. node:fs and node:child_process serve commander's
 * stand-alone executable subcommands only, which ppm has none of;
 * node:process is the global `process`, taken when commander first uses it
 * (help, version, usage errors), so the commands that print with `console`
 * (nearly all) never make it. Each line as esbuild writes it; when it writes
 * one otherwise the line stays, which is slower, not wrong
 * (tests/unit/cli_startup_test.ts notices).
 */
export const ENTRY_SHIMS: readonly { line: string; replacement: string }[] = [
  {
    line: 'import childProcess from "node:child_process";',
    replacement: `const childProcess = ${leftOut("node:child_process")};`,
  },
  { line: 'import fs from "node:fs";', replacement: `const fs = ${leftOut("node:fs")};` },
  { line: 'import process from "node:process";', replacement: `const process = ${LAZY_PROCESS};` },
];

/**
 * `entry`, the entry chunk's text, with {@link ENTRY_SHIMS} applied. The
 * command tree's own modules import no Node module (the startup test checks
 * it), so in this chunk these imports are commander's alone.
 */
export function shimEntry(entry: string): string {
  const shims = new Map(ENTRY_SHIMS.map((s) => [s.line, s.replacement]));
  return entry.split("\n").map((line) => shims.get(line) ?? line).join("\n");
}

/**
 * Bundles cli/main.ts into the folder `dir` (emptied first: its chunks'
 * names change with their contents); returns the entry chunk's path, which
 * runs with `deno run -A --no-config --no-lock` and `PPM_ROOT` set.
 *
 * @throws PpmError when `deno bundle` fails
 */
export async function bundleCli(dir: string): Promise<string> {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform",
      "deno",
      "--code-splitting",
      "--outdir",
      dir,
      join(PROJECT_ROOT, "cli", "main.ts"),
    ],
    cwd: PROJECT_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const entry = join(dir, BUNDLE_ENTRY);
  const made = r.code === 0 && await Deno.stat(entry).then((s) => s.isFile, () => false);
  if (!made) {
    throw new PpmError(
      "cannot bundle the CLI",
      new TextDecoder().decode(r.stderr).trim() || `deno bundle wrote no ${entry}`,
      "",
      EXIT.FAILURE,
    );
  }
  await Deno.writeTextFile(entry, shimEntry(await Deno.readTextFile(entry)));
  return entry;
}
