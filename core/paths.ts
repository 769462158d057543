/**
 * Where ppm finds its own files and keeps its state.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The project root (the folder holding deno.json, kmod/, core/):
 * `$PPM_ROOT` when set (a bundled ppm, whose own URL says nothing about
 * where the sources are), else found from this file's place in the tree.
 */
export const PROJECT_ROOT: string = Deno.env.get("PPM_ROOT") ||
  dirname(dirname(fileURLToPath(import.meta.url)));

/** The module sources. */
export const KMOD_SRC: string = join(PROJECT_ROOT, "kmod");

/**
 * The state directory: `$PPM_STATE_DIR`, else `/var/lib/ppm` for root and
 * `$XDG_CACHE_HOME/ppm` (or `~/.cache/ppm`) for others.
 */
export function stateDir(): string {
  const env = Deno.env.get("PPM_STATE_DIR");
  if (env) return env;
  if (Deno.uid() === 0) return "/var/lib/ppm";
  const cache = Deno.env.get("XDG_CACHE_HOME") ?? join(Deno.env.get("HOME") ?? "/tmp", ".cache");
  return join(cache, "ppm");
}

/** Where the module built for kernel `kver` is kept by default. */
export function moduleDir(kver: string): string {
  return join(stateDir(), "kmod", kver);
}

/** True when `path` exists. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}
