/**
 * The checkpoint's first step, on the frozen process: what /proc and the
 * module say about it, and whether it can be checkpointed at all (a
 * refusal names every reason at once).
 *
 * @module
 */
import { type DumpedTask, type KernelVma, withDevice } from "../../ffi/device.ts";
import { ErrnoError } from "../../ffi/libc.ts";
import { EXIT, PpmError } from "../errors.ts";
import { readFds, type SocketFd } from "../dump/files.ts";
import { socketReasons } from "../dump/sockets.ts";
import { dumpObjects } from "../dump/fds/dump.ts";
import { dumpRelayed } from "../dump/fds/relayed.ts";
import { describeKind } from "../dump/fds/survey.ts";
import type { FdEntry } from "../image/schema.ts";
import { credReasons } from "../dump/creds.ts";
import { type MapsEntry, parseMaps, parseStatus, type ProcStatus } from "../dump/proc.ts";
import { stayReasons } from "../dump/check.ts";
import { readName, threadReasons } from "../dump/threads.ts";
import { timerReasons } from "../dump/timers.ts";

/** What {@link inspect} read of a frozen process. */
export interface Inspected {
  /** /proc/PID/status. */
  status: ProcStatus;
  /** /proc/PID/maps. */
  maps: MapsEntry[];
  /** Its descriptors that an image can carry: files by path, kernel objects with their state. */
  fds: FdEntry[];
  /** Its sockets. */
  sockets: SocketFd[];
  /** Its name (see {@link readComm}). */
  comm: string | undefined;
  /** The module's dump of the task. */
  task: DumpedTask;
  /** The module's dump of its mappings. */
  kvmas: KernelVma[];
}

/**
 * The process's name exactly as the kernel keeps it (/proc/PID/status
 * escapes it; /proc/PID/comm does not), or undefined when it is not UTF-8.
 */
export function readComm(pid: number): Promise<string | undefined> {
  return readName(`/proc/${pid}/comm`);
}

/**
 * Reads the frozen process `pid` from /proc and the module; throws every
 * reason it cannot be checkpointed. Sockets are such a reason unless
 * `carrySockets` (a migration, or a checkpoint with `--tcp-established`,
 * freezes them instead); kernel objects as standard streams are one when
 * `relayedStdio` (a migration relays them). With `relay` (a migration),
 * pipes and unix stream sockets whose other end another process holds are
 * relayed descriptors (core/dump/fds/relayed.ts), not reasons.
 */
export async function inspect(
  pid: number,
  carrySockets: boolean,
  relayedStdio = carrySockets,
  relay = false,
): Promise<Inspected> {
  const status = parseStatus(await Deno.readTextFile(`/proc/${pid}/status`));
  const maps = parseMaps(await Deno.readTextFile(`/proc/${pid}/maps`));
  const { fds, sockets, objects, relayed, reasons: fdReasons } = await readFds(pid, { relay });
  const comm = await readComm(pid);
  const reasons = [...stayReasons(status, maps), ...credReasons(status), ...fdReasons];
  if (comm === undefined) reasons.push("its name is not valid UTF-8");
  if (relayedStdio) {
    // A migration gives descriptors 0-2 the source's standard streams (core/migrate/destination.ts).
    for (const o of objects.filter((x) => x.fd <= 2)) {
      reasons.push(
        `fd ${o.fd}: ${describeKind(o.kind)} (${o.target}) as a standard stream; a migration ` +
          "relays stdin, stdout and stderr, so it cannot move (a checkpoint to a file can)",
      );
    }
  }
  if (sockets.length && !carrySockets) reasons.push(...socketReasons(pid, sockets, false));
  let task: DumpedTask;
  let kvmas;
  try {
    [task, kvmas] = withDevice((d) => [d.dumpTask(pid), d.dumpVmas(pid)] as const);
  } catch (e) {
    if (e instanceof ErrnoError && e.code === "ENOENT") {
      throw new PpmError(
        "cannot checkpoint",
        "the ppm module is not loaded (/dev/ppm is missing)",
        "load it: ppm module load",
        EXIT.MISSING,
      );
    }
    throw e;
  }
  reasons.push(...await threadReasons(pid));
  reasons.push(...await timerReasons(pid));
  // Their state last, once nothing else stops the checkpoint (an eventfd's may be probed).
  const dumped = reasons.length
    ? { entries: [], reasons: [] }
    : dumpObjects(pid, objects, { pid, uid: status.uid[0], gid: status.gid[0] });
  reasons.push(...dumped.reasons);
  const relays = reasons.length ? { entries: [], reasons: [] } : dumpRelayed(pid, relayed);
  reasons.push(...relays.reasons);
  if (reasons.length) {
    throw new PpmError(
      `process ${pid} cannot be checkpointed`,
      reasons.join("; "),
      "see `ppm checkpoint --check PID`",
      EXIT.FAILURE,
    );
  }
  const all: FdEntry[] = [...fds, ...dumped.entries, ...relays.entries].sort((a, b) => a.fd - b.fd);
  return { status, maps, fds: all, sockets, comm, task, kvmas };
}
