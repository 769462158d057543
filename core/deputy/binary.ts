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
import { helperOnce, type HelperSource } from "../host/helper_binary.ts";
import { deputyBinDir, ensureSharedDir, PROJECT_ROOT } from "../paths.ts";
import { ensureStub, STUB_EXIT } from "../restore/stub.ts";

/** The deputy's source. */
export const DEPUTY_SRC = join(PROJECT_ROOT, "core", "deputy", "deputy.c");

/**
 * deputy.c's own exit codes (any other code is the process's, told by the
 * agent): a system call it needs failed at start, bad arguments, no agent
 * took its connection within its reconnect window.
 */
export const DEPUTY_EXIT = { FAILED: 120, USAGE: 121, NO_AGENT: 122 } as const;

/** The deputy's source (a package ships it with the deputy built: packaging/package.ts). */
export const DEPUTY_HELPER: HelperSource = {
  src: DEPUTY_SRC,
  name: "ppm-deputy",
  what: "the deputy",
};

/** Path of the built deputy, in the state directory (root's alone: see {@link installDeputy}). */
export const ensureDeputyBuilt: () => Promise<string> = helperOnce(DEPUTY_HELPER);

/** A program installed where the users of processes can run it. */
interface Shared {
  /** Builds it (in the state directory); returns its path. */
  built: () => Promise<string>;
  /** Its mode there: 0755, or 0711 where its users may run it but not read it. */
  mode: number;
  /** The exit code of a run without arguments. */
  usage: number;
  /** What it is, for messages. */
  what: string;
}

const DEPUTY: Shared = {
  built: () => ensureDeputyBuilt(),
  mode: 0o755,
  usage: DEPUTY_EXIT.USAGE,
  what: "the deputy",
};

/**
 * The restore stub (core/restore/stub), for a process that comes home into
 * its deputy: the deputy runs it with the process's credentials. Mode
 * 0711: its users may run it but not read it, which makes the kernel mark
 * a process running it not dumpable from its execve on (kmod/grant.c
 * relies on that: its owner can neither trace it nor write its memory).
 */
const HOME_STUB: Shared = {
  built: () => ensureStub(),
  mode: 0o711,
  usage: STUB_EXIT.BAD_SPEC,
  what: "the restore stub",
};

const installed = new Map<string, Promise<string>>();

function once(p: Shared, dir: string): Promise<string> {
  const key = `${p.what}\0${dir}`;
  let got = installed.get(key);
  if (!got) {
    got = installShared(p, dir).catch((e) => {
      installed.delete(key);
      throw e;
    });
    installed.set(key, got);
  }
  return got;
}

/**
 * {@link installDeputy}, once per directory for this process; a failure is
 * tried again on the next call.
 */
export function ensureDeputy(dir: string = deputyBinDir()): Promise<string> {
  return once(DEPUTY, dir);
}

/**
 * The restore stub installed beside the deputy, mode 0711, for processes
 * that come home (see HOME_STUB above); once per directory for this
 * process.
 */
export function ensureHomeStub(dir: string = deputyBinDir()): Promise<string> {
  return once(HOME_STUB, dir);
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
export function installDeputy(dir: string = deputyBinDir()): Promise<string> {
  return installShared(DEPUTY, dir);
}

async function installShared(p: Shared, dir: string): Promise<string> {
  const built = await p.built();
  ensureSharedDir(dir);
  const bytes = await Deno.readFile(built);
  const target = join(dir, basename(built));
  if (!(await sameProgram(target, bytes, p.mode))) {
    const tmp = join(dir, `.${basename(built)}.${Deno.pid}.tmp`);
    try {
      await Deno.writeFile(tmp, bytes, { mode: p.mode, createNew: true });
      await Deno.chmod(tmp, p.mode); // whatever the umask
      await Deno.rename(tmp, target);
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw new PpmError(
        `cannot install ${p.what} in ${dir}`,
        (e as Error).message,
        `check that ${dir} is writable by ppm`,
        EXIT.FAILURE,
        { cause: e },
      );
    }
  }
  await checkRuns(target, dir, p);
  return target;
}

/** Whether `path` is a regular file of ours, with `mode`, holding exactly `bytes`. */
async function sameProgram(path: string, bytes: Uint8Array, mode: number): Promise<boolean> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.lstat(path);
  } catch {
    return false;
  }
  if (!st.isFile || st.uid !== Deno.uid() || ((st.mode ?? 0) & 0o7777) !== mode) return false;
  if (st.size !== bytes.length) return false;
  const have = await Deno.readFile(path);
  return have.every((b, i) => b === bytes[i]);
}

/** Runs the installed program without arguments: it must start, and exit with its usage code. */
async function checkRuns(path: string, dir: string, p: Shared): Promise<void> {
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
      `cannot run ${p.what} from ${dir}`,
      `${(e as Error).message} (is the filesystem mounted noexec?)`,
      "set PPM_DEPUTY_BIN_DIR to a directory on a filesystem that lets programs run",
      EXIT.FAILURE,
      { cause: e },
    );
  }
  if (code !== p.usage) {
    throw new PpmError(
      `${p.what} installed at ${path} does not work`,
      `run without arguments it exited with ${code}, not ${p.usage}`,
      `remove ${path}; ppm installs it again`,
    );
  }
}
