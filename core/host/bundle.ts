/**
 * The CLI bundled for running without its sources: the virtual cluster's
 * guests and the Debian package (when there is no `deno compile` binary)
 * run it with `deno run`. The bundle is code-split: an entry chunk with the
 * command tree, and chunks that each command's action imports when it runs
 * (cli/app.ts), so `ppm --version` or `ppm ps` load and compile a fraction
 * of ppm (under TCG, seconds per command).
 *
 * @module
 */
import { join } from "node:path";
import { EXIT, PpmError } from "../errors.ts";
import { PROJECT_ROOT } from "../paths.ts";

/** The entry chunk's name in the bundle's folder (`deno bundle` names it after cli/main.ts). */
export const BUNDLE_ENTRY = "main.js";

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
  return entry;
}
