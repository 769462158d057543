/**
 * The restore stub binary (stub/stub.c), built once per source version with
 * gcc into the state directory (core/host/helper_binary.ts).
 *
 * @module
 */
import { join } from "node:path";
import { helperOnce, type HelperSource } from "../host/helper_binary.ts";
import { KMOD_SRC, PROJECT_ROOT } from "../paths.ts";

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

/** The stub's sources (a package ships them with the stub built: packaging/package.ts). */
export const STUB_HELPER: HelperSource = {
  src: SRC,
  headers: [
    join(KMOD_SRC, "uapi", "ppm.h"),
    join(PROJECT_ROOT, "core", "restore", "stub", "vessel.h"),
  ],
  name: "ppm-restore-stub",
  what: "the restore stub",
};

/**
 * Path of a built stub, building it first when needed (once per process:
 * concurrent callers share the build; a failed build is tried again).
 */
export const ensureStub: () => Promise<string> = helperOnce(STUB_HELPER);
