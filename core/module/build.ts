/**
 * Building kmod/ with Kbuild for a kernel release, out of the source tree.
 *
 * @module
 */
import { createHash } from "node:crypto";
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

/** The module's source files (a flat tree plus uapi/), relative to kmod/, sorted. */
async function sourceFiles(): Promise<string[]> {
  const files: string[] = [];
  for (const sub of ["", "uapi"]) {
    for await (const e of Deno.readDir(join(KMOD_SRC, sub))) {
      if (!e.isFile || !/(\.[ch]|^Kbuild|^Makefile)$/.test(e.name)) continue;
      files.push(sub ? `${sub}/${e.name}` : e.name);
    }
  }
  return files.sort();
}

/** Copies the module sources into `dest`. */
async function copySources(dest: string, files: string[]): Promise<void> {
  await Deno.mkdir(join(dest, "uapi"), { recursive: true });
  for (const f of files) {
    await Deno.writeFile(join(dest, f), await Deno.readFile(join(KMOD_SRC, f)));
  }
}

/**
 * What a built module was built from: its sources and the Kbuild tree
 * (its path, release and Module.symvers' time, which a headers upgrade
 * changes).
 */
async function fingerprint(tree: { dir: string; release: string }, files: string[]) {
  const h = createHash("sha256").update(`${tree.release}\0${tree.dir}\0`);
  const symvers = await Deno.stat(join(tree.dir, "Module.symvers")).catch(() => undefined);
  h.update(`${symvers?.mtime?.getTime() ?? 0}\0`);
  for (const f of files) {
    const data = await Deno.readFile(join(KMOD_SRC, f));
    h.update(`${f}\0${data.length}\0`).update(data);
  }
  return h.digest("hex");
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

/**
 * Builds the module for `tree` in `out`, unless the module there was built
 * from the same sources and tree; returns the module file's path.
 */
async function buildIn(tree: { dir: string; release: string }, out: string): Promise<string> {
  const src = join(out, "src");
  const path = join(out, MODULE_FILE);
  const files = await sourceFiles();
  const sum = await fingerprint(tree, files);
  const sumFile = `${path}.fingerprint`;
  // The record names the module file's own hash too: a module written there by another ppm (an
  // older tree that keeps no record) is not taken for the one built from these sources.
  const built = (await Deno.readTextFile(sumFile).catch(() => "")).trim().split(" ");
  if (built[0] === sum && built[1] && built[1] === await fileHash(path)) return path;
  await Deno.remove(sumFile).catch(() => {});
  await Deno.remove(src, { recursive: true }).catch(() => {});
  try {
    await ensureDir(out);
    await copySources(src, files);
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
  // A new inode, never an in-place rewrite: running guests see either file whole.
  await Deno.copyFile(join(src, MODULE_FILE), `${path}.tmp`);
  await Deno.rename(`${path}.tmp`, path);
  await Deno.writeTextFile(sumFile, `${sum} ${await fileHash(path)}\n`);
  return path;
}

/** SHA-256 of the file at `path` in hex, or "" when it cannot be read. */
async function fileHash(path: string): Promise<string> {
  const data = await Deno.readFile(path).catch(() => undefined);
  return data ? createHash("sha256").update(data).digest("hex") : "";
}
