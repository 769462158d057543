/**
 * Where ppm finds its own files and keeps its state.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { EXIT, PpmError } from "./errors.ts";

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

/**
 * The runtime directory (sockets, the freeze journal, vcluster state):
 * `$PPM_RUN_DIR`, else `/run/ppm` for root and `$XDG_RUNTIME_DIR/ppm` (or
 * the state directory's `run`) for others.
 */
export function runRoot(): string {
  const env = Deno.env.get("PPM_RUN_DIR");
  if (env) return env;
  if (Deno.uid() === 0) return "/run/ppm";
  const xdg = Deno.env.get("XDG_RUNTIME_DIR");
  return xdg ? join(xdg, "ppm") : join(stateDir(), "run");
}

function notADirectory(dir: string, why: string): PpmError {
  return new PpmError(
    `cannot use ${dir} for ppm's files`,
    why,
    `remove or rename ${dir} (ppm creates it, mode 0700)`,
    EXIT.PERMISSION,
  );
}

/**
 * Creates `dir` and its missing parents with `mode` (0700 by default: ppm's
 * state is the owner's alone), and checks that `dir` is a directory and not a
 * symbolic link. Returns `dir`.
 *
 * @throws PpmError when it cannot be created or something else is there
 */
export function ensureDir(dir: string, mode = 0o700): Promise<string> {
  return Promise.resolve().then(() => ensureDirSync(dir, mode));
}

/** {@link ensureDir}, synchronously (mkdir and lstat are quick: one implementation). */
export function ensureDirSync(dir: string, mode = 0o700): string {
  try {
    Deno.mkdirSync(dir, { recursive: true, mode });
  } catch (e) {
    throw notADirectory(dir, (e as Error).message);
  }
  const st = Deno.lstatSync(dir);
  if (st.isSymlink) throw notADirectory(dir, "it is a symbolic link");
  if (!st.isDirectory) throw notADirectory(dir, "it is not a directory");
  return dir;
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
