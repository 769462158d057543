/**
 * The restore stub, started for an image: its spec written next to the
 * plan, the launcher run (it creates the process with the image's PID,
 * which sets up what lies outside memory and then stops itself), and
 * ptrace attached to that process. Up to here nothing was changed: a
 * failure throws with the stub's own message.
 *
 * @module
 */
import { join } from "node:path";
import { DEVICE_PATH } from "../../ffi/device.ts";
import { EXIT, PpmError } from "../errors.ts";
import { Tracee } from "../ptrace/tracee.ts";
import type { LoadedImage } from "../image/schema.ts";
import { type StdioTargets, stubSpec } from "./spec.ts";
import { ensureStub, STUB_EXIT } from "./stub.ts";
import { bootId } from "../host/boot_id.ts";

/** A stub ready to launch: its binary and its files in the restore's work directory. */
export interface StubFiles {
  /** The stub binary. */
  binary: string;
  /** Its spec. */
  spec: string;
  /** Where it writes the PID it got. */
  pidOut: string;
  /** Where it writes why it failed. */
  errOut: string;
}

/**
 * Writes the stub's spec for `img` into the work directory `dir` (the plan
 * at `plan`, the stub's first descriptor `base`) and builds the stub when
 * needed.
 */
export async function prepareStub(
  img: LoadedImage,
  dir: string,
  plan: string,
  base: number,
  stdio: StdioTargets,
): Promise<StubFiles> {
  const pidOut = join(dir, "pid");
  const errOut = join(dir, "error");
  const specPath = join(dir, "spec");
  const here = bootId();
  const sameNode = here !== "" && img.task.creds?.bootId === here;
  await Deno.writeFile(
    specPath,
    stubSpec(img, {
      pid: img.task.pid,
      base,
      dev: DEVICE_PATH,
      plan,
      pidOut,
      errOut,
      stdio,
      sameNode,
    }),
    { createNew: true, mode: 0o600 },
  );
  const binary = await ensureStub();
  return { binary, spec: specPath, pidOut, errOut };
}

/** Why the stub failed, as it wrote it, or where to look. */
export async function stubError(stub: StubFiles): Promise<string> {
  return (await Deno.readTextFile(stub.errOut).catch(() => "")).trim() ||
    "the restore stub failed while setting up (see its message above)";
}

/**
 * Runs the launcher, which leaves the stub with PID `pid` stopped; throws
 * when the PID is taken, not permitted, or the stub failed.
 */
export async function launchStub(pid: number, stub: StubFiles): Promise<void> {
  const launcher = await new Deno.Command(stub.binary, {
    args: [stub.spec],
    env: { GLIBC_TUNABLES: "glibc.pthread.rseq=0" },
    clearEnv: true,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (launcher.code === STUB_EXIT.PID_TAKEN) {
    throw new PpmError(
      "cannot restore",
      `PID ${pid} is taken`,
      "end that process, or restore where the PID is free",
      EXIT.BUSY,
    );
  }
  if (launcher.code === STUB_EXIT.NOT_PERMITTED) {
    throw new PpmError(
      "cannot restore",
      "creating a process with a chosen PID needs CAP_CHECKPOINT_RESTORE",
      "run as root",
      EXIT.PERMISSION,
    );
  }
  if (launcher.code !== STUB_EXIT.OK) {
    throw new PpmError(
      "cannot restore",
      `the restore stub failed to start (exit ${launcher.code}): ${await stubError(stub)}`,
      "",
    );
  }
  const got = Number((await Deno.readTextFile(stub.pidOut)).trim());
  if (got !== pid) {
    throw new PpmError("cannot restore", `the stub got PID ${got}, not ${pid}`, "");
  }
}

/**
 * Attaches to the launched stub `pid` (syscall stops marked, and killed
 * should this process die first).
 */
export async function attachStub(pid: number, stub: StubFiles): Promise<Tracee> {
  try {
    return Tracee.attach(pid, { sysgood: true, exitKill: true });
  } catch {
    throw new PpmError("cannot restore", await stubError(stub), "nothing was changed");
  }
}
