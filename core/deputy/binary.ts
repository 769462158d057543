/**
 * The deputy program (deputy.c), built and installed where the process
 * that becomes it can run it. It runs with that process's own credentials,
 * often not root's, so the helper build in the state directory (root's,
 * mode 0700) will not do: the built file is copied into a directory of
 * its own ({@link deputyBinDir}: root's, mode 0755, writable by nobody
 * else; see `ensureSharedDir`), mode 0755, and run once there to be sure
 * that the filesystem lets programs run from it (Debian mounts /run
 * noexec, hence /var/lib/ppm-deputy).
 *
 * @module
 */
import { basename, join } from "node:path";
import { EXIT, PpmError } from "../errors.ts";
import { helperOnce } from "../host/helper_binary.ts";
import { deputyBinDir, ensureSharedDir, PROJECT_ROOT } from "../paths.ts";

/** The deputy's source. */
export const DEPUTY_SRC = join(PROJECT_ROOT, "core", "deputy", "deputy.c");

/**
 * deputy.c's own exit codes (any other code is the process's, told by the
 * agent): a system call it needs failed at start, bad arguments, no agent
 * took its connection within its reconnect window.
 */
export const DEPUTY_EXIT = { FAILED: 120, USAGE: 121, NO_AGENT: 122 } as const;

/** Path of the built deputy, in the state directory (root's alone: see {@link installDeputy}). */
export const ensureDeputyBuilt: () => Promise<string> = helperOnce({
  src: DEPUTY_SRC,
  name: "ppm-deputy",
  what: "the deputy",
});

const installed = new Map<string, Promise<string>>();

/**
 * {@link installDeputy}, once per directory for this process; a failure is
 * tried again on the next call.
 */
export function ensureDeputy(dir: string = deputyBinDir()): Promise<string> {
  let p = installed.get(dir);
  if (!p) {
    p = installDeputy(dir).catch((e) => {
      installed.delete(dir);
      throw e;
    });
    installed.set(dir, p);
  }
  return p;
}

/**
 * Path of the deputy installed in `dir` (by default {@link deputyBinDir}),
 * where any user can run it: built if needed, copied there (mode 0755,
 * owned by this user) unless the same bytes are there already, and run
 * once to check that it runs.
 *
 * @throws PpmError when the directory cannot be trusted (a symbolic link,
 *   someone else's, writable by others), or programs cannot run from it
 */
export async function installDeputy(dir: string = deputyBinDir()): Promise<string> {
  const built = await ensureDeputyBuilt();
  ensureSharedDir(dir);
  const bytes = await Deno.readFile(built);
  const target = join(dir, basename(built));
  if (!(await sameProgram(target, bytes))) {
    const tmp = join(dir, `.${basename(built)}.${Deno.pid}.tmp`);
    try {
      await Deno.writeFile(tmp, bytes, { mode: 0o755, createNew: true });
      await Deno.chmod(tmp, 0o755); // whatever the umask
      await Deno.rename(tmp, target);
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw new PpmError(
        `cannot install the deputy in ${dir}`,
        (e as Error).message,
        `check that ${dir} is writable by ppm`,
        EXIT.FAILURE,
        { cause: e },
      );
    }
  }
  await checkRuns(target, dir);
  return target;
}

/** Whether `path` is a regular file of ours, mode 0755, holding exactly `bytes`. */
async function sameProgram(path: string, bytes: Uint8Array): Promise<boolean> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.lstat(path);
  } catch {
    return false;
  }
  if (!st.isFile || st.uid !== Deno.uid() || ((st.mode ?? 0) & 0o7777) !== 0o755) return false;
  if (st.size !== bytes.length) return false;
  const have = await Deno.readFile(path);
  return have.every((b, i) => b === bytes[i]);
}

/** Runs the installed deputy without arguments: it must start, and exit with USAGE. */
async function checkRuns(path: string, dir: string): Promise<void> {
  let code: number;
  try {
    const out = await new Deno.Command(path, {
      stdin: "null",
      stdout: "null",
      stderr: "null",
      clearEnv: true,
    }).output();
    code = out.code;
  } catch (e) {
    throw new PpmError(
      `cannot run the deputy from ${dir}`,
      `${(e as Error).message} (is the filesystem mounted noexec?)`,
      "set PPM_DEPUTY_BIN_DIR to a directory on a filesystem that lets programs run",
      EXIT.FAILURE,
      { cause: e },
    );
  }
  if (code !== DEPUTY_EXIT.USAGE) {
    throw new PpmError(
      `the deputy installed at ${path} does not work`,
      `run without arguments it exited with ${code}, not ${DEPUTY_EXIT.USAGE}`,
      `remove ${path}; ppm installs it again`,
    );
  }
}
