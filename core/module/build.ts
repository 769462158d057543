/**
 * Building kmod/ with Kbuild for a kernel release, out of the source tree.
 *
 * @module
 */
import { join } from "node:path";
import { EXIT, PpmError } from "../errors.ts";
import { withHostLock } from "../host/lock.ts";
import { runOk } from "../host/run.ts";
import { ensureDir, KMOD_SRC, moduleDir } from "../paths.ts";
import { findKernelTree } from "./headers.ts";

/** The module file name. */
export const MODULE_FILE = "ppm.ko";

/** Options of {@link buildModule}. */
export interface BuildOptions {
  /** Kernel release to build for (default: the running kernel). */
  kernelRelease?: string;
  /** Kbuild tree to build against (default: /lib/modules/<release>/build). */
  kernelDir?: string;
  /** Output directory (default: the state directory's kmod/<release>). */
  outDir?: string;
}

/** What {@link buildModule} produced. */
export interface BuildResult {
  /** Path of the built ppm.ko. */
  path: string;
  /** Kernel release it is for. */
  release: string;
  /** Wall time in milliseconds. */
  ms: number;
}

/** Copies the module sources (a flat tree plus uapi/) into `dest`. */
async function copySources(dest: string): Promise<void> {
  await Deno.mkdir(join(dest, "uapi"), { recursive: true });
  for (const sub of ["", "uapi"]) {
    for await (const e of Deno.readDir(join(KMOD_SRC, sub))) {
      if (!e.isFile || !/(\.[ch]|^Kbuild|^Makefile)$/.test(e.name)) continue;
      await Deno.writeFile(
        join(dest, sub, e.name),
        await Deno.readFile(join(KMOD_SRC, sub, e.name)),
      );
    }
  }
}

/** Builds the module; throws a {@link PpmError} with the compiler's output on failure. */
export async function buildModule(opts: BuildOptions = {}): Promise<BuildResult> {
  const t0 = performance.now();
  const tree = await findKernelTree(opts.kernelRelease, opts.kernelDir);
  const out = opts.outDir ?? moduleDir(tree.release);
  // Two ppm processes building for one kernel take turns (they share the build directory).
  const path = await withHostLock(`module-${tree.release}`, () => buildIn(tree, out));
  return { path, release: tree.release, ms: performance.now() - t0 };
}

/** Builds the module for `tree` in `out`; returns the module file's path. */
async function buildIn(tree: { dir: string; release: string }, out: string): Promise<string> {
  const src = join(out, "src");
  await Deno.remove(src, { recursive: true }).catch(() => {});
  try {
    await ensureDir(out);
    await copySources(src);
  } catch (e) {
    throw new PpmError(
      "cannot build the ppm module",
      `cannot write to ${out}: ${(e as Error).message}`,
      "pass --out DIR with a writable directory",
      EXIT.PERMISSION,
    );
  }
  await runOk(
    "make",
    ["-C", tree.dir, `M=${src}`, "modules"],
    `building the ppm module for ${tree.release} failed`,
    { timeoutMs: 300_000 },
  );
  const path = join(out, MODULE_FILE);
  // A new inode, never an in-place rewrite: running guests see either file whole.
  await Deno.copyFile(join(src, MODULE_FILE), `${path}.tmp`);
  await Deno.rename(`${path}.tmp`, path);
  return path;
}
