/**
 * The small static C helpers ppm runs (the restore stub, the relay keeper):
 * built once per source version with gcc into the state directory, or
 * shipped built by a package beside their source.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { EXIT, PpmError } from "../errors.ts";
import { ensureDir, exists, stateDir } from "../paths.ts";
import { runOk } from "./run.ts";

/** A helper: its source, what else its build depends on, and its name. */
export interface HelperSource {
  /** The C file. */
  src: string;
  /** Headers it includes from the project (their bytes go into the version hash). */
  headers?: string[];
  /** The binary's name before the hash: `ppm-restore-stub`. */
  name: string;
  /** What it is, for messages: "the restore stub". */
  what: string;
}

/** The binary's file name for these source bytes: NAME-HASH. */
export async function helperName(h: HelperSource): Promise<string> {
  const hash = createHash("sha256").update(await Deno.readFile(h.src));
  for (const f of h.headers ?? []) hash.update(await Deno.readFile(f));
  return `${h.name}-${hash.digest("hex").slice(0, 12)}`;
}

/**
 * Path of the built helper: the shipped one beside its source, or one built
 * before into the state directory, or one built now (static, -Werror).
 */
export async function buildHelper(h: HelperSource): Promise<string> {
  const name = await helperName(h);
  // A package ships it built, beside its source (read-only, root's).
  const shipped = join(dirname(h.src), name);
  if (await exists(shipped)) return shipped;
  const dir = join(stateDir(), "bin");
  const out = join(dir, name);
  if (await exists(out)) return out;
  await ensureDir(dir);
  // Its own temporary name: another process may be building the same helper now.
  const tmp = `${out}.${Deno.pid}.tmp`;
  try {
    await runOk(
      "gcc",
      ["-static", "-O2", "-Wall", "-Werror", "-o", tmp, h.src],
      `cannot build ${h.what}`,
    );
  } catch (e) {
    if (e instanceof PpmError && e.exitCode === EXIT.MISSING) {
      throw new PpmError(
        `cannot build ${h.what}`,
        "gcc is not installed",
        "apt-get install gcc libc6-dev",
        EXIT.MISSING,
      );
    }
    throw e;
  }
  await Deno.rename(tmp, out);
  return out;
}

/**
 * A memoized {@link buildHelper}: concurrent callers share one build; a
 * failed build is tried again on the next call.
 */
export function helperOnce(h: HelperSource): () => Promise<string> {
  let building: Promise<string> | undefined;
  return () => {
    building ??= buildHelper(h).catch((e) => {
      building = undefined;
      throw e;
    });
    return building;
  };
}
