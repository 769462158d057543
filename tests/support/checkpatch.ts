/**
 * The kernel's checkpatch.pl, taken from Debian's linux-source-6.1 package
 * (installed when missing) and unpacked once into the state directory.
 *
 * @module
 */
import { join } from "node:path";
import { ensurePackages } from "../../core/host/packages.ts";
import { runOk } from "../../core/host/run.ts";
import { exists, stateDir } from "../../core/paths.ts";
import { TEST_PACKAGES } from "./packages.ts";

const FILES = ["scripts/checkpatch.pl", "scripts/spelling.txt", "scripts/const_structs.checkpatch"];

/** Path of checkpatch.pl, ready to run. */
export async function checkpatchPath(): Promise<string> {
  const dir = join(stateDir(), "checkpatch");
  const script = join(dir, "linux-source-6.1", "scripts", "checkpatch.pl");
  if (await exists(script)) return script;
  await ensurePackages(TEST_PACKAGES.checkpatch, "checkpatch.pl");
  let tarball = "";
  for await (const e of Deno.readDir("/usr/src")) {
    if (/^linux-source-6\.1\.tar\.(xz|bz2|gz)$/.test(e.name)) tarball = join("/usr/src", e.name);
  }
  if (!tarball) {
    throw new Error("linux-source-6.1 is installed but /usr/src/linux-source-6.1.tar.* is missing");
  }
  await Deno.mkdir(dir, { recursive: true });
  await runOk(
    "tar",
    ["-xf", tarball, "-C", dir, ...FILES.map((f) => `linux-source-6.1/${f}`)],
    "cannot unpack checkpatch.pl",
    { timeoutMs: 300_000 },
  );
  return script;
}
