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

/**
 * Where the deputy program is installed for every user to run (a process
 * that moved away runs it at home with its own credentials, see
 * core/deputy/binary.ts): `$PPM_DEPUTY_BIN_DIR`, else `/var/lib/ppm-deputy`
 * for root (not under /run: Debian mounts it noexec) and the state
 * directory's `deputy` for others (their deputies run as they do).
 */
export function deputyBinDir(): string {
  const env = Deno.env.get("PPM_DEPUTY_BIN_DIR");
  if (env) return env;
  return Deno.uid() === 0 ? "/var/lib/ppm-deputy" : join(stateDir(), "deputy");
}

/**
 * Where the agent's deputy link listens (core/deputy/link.ts), a directory
 * any user may enter: `$PPM_DEPUTY_RUN_DIR`, else `/run/ppm-deputy` for root
 * and the runtime directory's `deputy` for others.
 */
export function deputyRunDir(): string {
  const env = Deno.env.get("PPM_DEPUTY_RUN_DIR");
  if (env) return env;
  return Deno.uid() === 0 ? "/run/ppm-deputy" : join(runRoot(), "deputy");
}

/** The deputy link's socket. */
export function deputySocketPath(): string {
  return join(deputyRunDir(), "link.sock");
}

function notShared(dir: string, why: string, fix: string): PpmError {
  return new PpmError(
    `cannot use ${dir} for what every user's processes reach`,
    why,
    fix,
    EXIT.PERMISSION,
  );
}

/**
 * Creates `dir` (mode 0755) if missing, for files every user may read and
 * run but only this user change, and checks that it can be trusted: a real
 * directory (not a symbolic link), owned by this user, writable by nobody
 * else; and that every directory above it is owned by root or this user and
 * writable by nobody else (or sticky, as /tmp is), so nobody can swap it.
 * Returns `dir`.
 *
 * @throws PpmError naming what is wrong
 */
export function ensureSharedDir(dir: string): string {
  const uid = Deno.uid();
  const ownerOk = (u: number | null) => u === uid || u === 0;
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o755 });
  } catch (e) {
    throw notShared(dir, (e as Error).message, `create ${dir}, mode 0755`);
  }
  const st = Deno.lstatSync(dir);
  const remove = `remove ${dir} (ppm creates it, owned by uid ${uid}, mode 0755)`;
  if (st.isSymlink) throw notShared(dir, "it is a symbolic link", remove);
  if (!st.isDirectory) throw notShared(dir, "it is not a directory", remove);
  if (st.uid !== uid) throw notShared(dir, `it belongs to uid ${st.uid}`, remove);
  const mode = (st.mode ?? 0) & 0o7777;
  if (mode & 0o022) {
    throw notShared(dir, `others may write in it (mode ${mode.toString(8)})`, remove);
  }
  if ((mode & 0o755) !== 0o755) Deno.chmodSync(dir, 0o755);
  for (let up = dirname(Deno.realPathSync(dir));; up = dirname(up)) {
    const s = Deno.statSync(up);
    const m = (s.mode ?? 0) & 0o7777;
    if (!ownerOk(s.uid) || (m & 0o022 && !(m & 0o1000))) {
      throw notShared(
        dir,
        `${up} above it may be changed by others (uid ${s.uid}, mode ${m.toString(8)})`,
        "choose a directory whose parents only root can change",
      );
    }
    if (up === "/") break;
  }
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
