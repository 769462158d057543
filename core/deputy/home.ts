/**
 * A process coming home, into its deputy: the task that holds its PID,
 * parent, process group and session here runs the restore stub instead of
 * a launched one, so that the restored process is the very child its
 * parent waits for.
 *
 * The deputy runs with the process's credentials; the stub needs root's
 * until the restore gives the process its own. So the agent makes a grant
 * (kmod/grant.c): that task, running the stub (installed mode 0711, so the
 * kernel keeps its owner from tracing it), may take the agent's
 * credentials once. The grant, the stub's spec and the stub itself go to
 * the deputy over its link (deputy.c `home`, SCM_RIGHTS); it runs
 * `ppm-restore-stub --into GRANT SPEC`, which takes the grant, reads the
 * spec, writes its PID where the spec says and stops itself, as a
 * launched stub's child does. From there the restore goes on as for any
 * stub (core/restore/restore.ts).
 *
 * Until the deputy runs the stub nothing changed: a refusal leaves it the
 * deputy. Once it did, its process is this restore's: a stub that fails
 * ends, and its parent sees that end.
 *
 * @module
 */
import { close, kill, O, open } from "../../ffi/libc.ts";
import { PpmDevice } from "../../ffi/device.ts";
import { EXIT, PpmError } from "../errors.ts";
import { processEnded } from "../host/proc_stat.ts";
import { stubError, type StubFiles } from "../restore/launch.ts";
import { type DeputyLink, HomeEnded } from "./link.ts";

/** How long a stub run by a deputy may take to take its grant and stop, ms. */
export const STUB_READY_MS = 10_000;

/** What {@link comeHome} needs. */
export interface HomeDeps {
  /** The deputies' link (deputy.c `home`). */
  link: Pick<DeputyLink, "home">;
  /** The restore stub installed for deputies (core/deputy/binary.ts `ensureHomeStub`). */
  stub: string;
  /** Makes the grant (default: PPM_IOC_GRANT on /dev/ppm). */
  grant?: (pid: number, exeFd: number) => number;
  /** Called once the deputy ran the stub: from then on it is no deputy. */
  gone?: () => void;
  /** See {@link STUB_READY_MS}. */
  readyMs?: number;
}

function grantOnDevice(pid: number, exeFd: number): number {
  const dev = PpmDevice.open();
  try {
    return dev.grant(pid, exeFd);
  } finally {
    dev.close();
  }
}

/**
 * Makes deputy `pid` run the restore stub whose files are `files` (its
 * spec written by core/restore/launch.ts `prepareStub`), and waits until
 * the stub took its grant and wrote its PID: the caller attaches to it
 * then (`attachStub`).
 *
 * @throws PpmError when the grant cannot be made, the deputy could not run
 *   the stub (it is still the deputy), or the stub failed (it ended)
 */
export async function comeHome(pid: number, files: StubFiles, d: HomeDeps): Promise<void> {
  const fds: number[] = [];
  try {
    const exe = open(d.stub, O.RDONLY | O.CLOEXEC);
    fds.push(exe);
    fds.push((d.grant ?? grantOnDevice)(pid, exe));
    fds.push(open(files.spec, O.RDONLY | O.CLOEXEC));
    await d.link.home(pid, [fds[1], fds[2], fds[0]]);
  } catch (e) {
    if (e instanceof HomeEnded) {
      d.gone?.();
      throw new PpmError(
        "cannot restore",
        `the restore stub its deputy ran ended: ${await stubError(files)}`,
        "the deputy is gone (its parent saw it end); the process goes on where it runs",
      );
    }
    if (e instanceof PpmError) throw e;
    throw new PpmError(
      `process ${pid} cannot come home into its deputy`,
      (e as Error).message,
      "see the agent's log; the process goes on where it runs",
      EXIT.FAILURE,
      { cause: e },
    );
  } finally {
    for (const fd of fds) close(fd);
  }
  d.gone?.();
  await stubReady(pid, files, d.readyMs ?? STUB_READY_MS);
}

/** Waits (bounded) until the stub in `pid` wrote its PID; throws when it ended or took too long. */
async function stubReady(pid: number, files: StubFiles, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await Deno.readTextFile(files.pidOut).then((s) => s.trim(), () => "");
    if (got === String(pid)) return;
    if (processEnded(pid)) {
      throw new PpmError(
        "cannot restore",
        `the restore stub its deputy ran ended: ${await stubError(files)}`,
        "the deputy is gone (its parent saw it end); the process goes on where it runs",
      );
    }
    if (Date.now() > deadline) {
      // Root's now, and no deputy any more: it must not be left waiting.
      try {
        kill(pid, 9);
      } catch { /* gone */ }
      throw new PpmError(
        "cannot restore",
        `the restore stub its deputy ran did not get ready within ${ms / 1000} s (it was killed)`,
        "see the agent's log; the process goes on where it runs",
      );
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}
