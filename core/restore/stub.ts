/**
 * The restore stub binary (stub/stub.c), built once per source version with
 * gcc into the state directory.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { EXIT, PpmError } from "../errors.ts";
import { runOk } from "../host/run.ts";
import { ensureDir, exists, KMOD_SRC, PROJECT_ROOT, stateDir } from "../paths.ts";

const SRC = join(PROJECT_ROOT, "core", "restore", "stub", "stub.c");

/** The launcher's exit codes (stub.c enum stub_exit); the child exits STEP + its failed step. */
export const STUB_EXIT = {
  OK: 0,
  BAD_SPEC: 2,
  PID_TAKEN: 3,
  NOT_PERMITTED: 4,
  CLONE_FAILED: 5,
  STEP: 100,
} as const;

let building: Promise<string> | undefined;

/**
 * Path of a built stub, building it first when needed (once per process:
 * concurrent callers share the build; a failed build is tried again).
 */
export function ensureStub(): Promise<string> {
  building ??= buildStub().catch((e) => {
    building = undefined;
    throw e;
  });
  return building;
}

async function buildStub(): Promise<string> {
  const src = await Deno.readFile(SRC);
  const uapi = await Deno.readFile(join(KMOD_SRC, "uapi", "ppm.h"));
  const hash = createHash("sha256").update(src).update(uapi).digest("hex").slice(0, 12);
  const name = `ppm-restore-stub-${hash}`;
  // A package ships it built, beside its source (read-only, root's).
  const shipped = join(dirname(SRC), name);
  if (await exists(shipped)) return shipped;
  const dir = join(stateDir(), "bin");
  const out = join(dir, name);
  if (await exists(out)) return out;
  await ensureDir(dir);
  try {
    await runOk(
      "gcc",
      ["-static", "-O2", "-Wall", "-Werror", "-o", `${out}.tmp`, SRC],
      "cannot build the restore stub",
    );
  } catch (e) {
    if (e instanceof PpmError && e.exitCode === EXIT.MISSING) {
      throw new PpmError(
        "cannot build the restore stub",
        "gcc is not installed",
        "apt-get install gcc libc6-dev",
        EXIT.MISSING,
      );
    }
    throw e;
  }
  await Deno.rename(`${out}.tmp`, out);
  return out;
}
