/**
 * Why a process cannot be checkpointed ("stay reasons", after openMosix):
 * each is a sentence a user can act on.
 *
 * @module
 */
import { credReasons } from "./creds.ts";
import { readFds } from "./files.ts";
import { socketReasons } from "./sockets.ts";
import { type MapsEntry, parseMaps, parseStatus, type ProcStatus } from "./proc.ts";
import { threadReasons } from "./threads.ts";
import { timerReasons } from "./timers.ts";

const OK_DEVICE_MAPS = ["/dev/zero"];

/** Reasons found in the status and mappings alone. */
export function stayReasons(status: ProcStatus, maps: MapsEntry[]): string[] {
  const r: string[] = [];
  if (status.state === "Z") {
    r.push(
      status.threads > 1
        ? "its main thread has exited while other threads run on (a zombie leader cannot be restored)"
        : "it is a zombie",
    );
  }
  for (const m of maps) {
    const where = `${m.start.toString(16)}-${m.end.toString(16)}`;
    if (m.name.startsWith("/dev/") && !OK_DEVICE_MAPS.includes(m.name)) {
      r.push(`it maps the device ${m.name} at ${where}`);
    } else if (m.deleted && m.name !== "/dev/zero") {
      r.push(`it maps ${m.name}, which was deleted`);
    } else if (m.name.startsWith("/SYSV") || m.name.startsWith("/memfd:")) {
      r.push(`it maps ${m.name} (System V or memfd shared memory) at ${where}`);
    } else if (m.name.startsWith("anon_inode:")) {
      r.push(`it maps ${m.name} at ${where}`);
    }
  }
  return r;
}

/** Options of {@link checkReasons}. */
export interface CheckOptions {
  /**
   * IPv4 TCP and UDP sockets move with the process (a migration, the
   * default, or `ppm checkpoint --tcp-established`); false: each is a reason.
   */
  carrySockets?: boolean;
  /** ppm's own PID (a reason: it cannot checkpoint itself). */
  ownPid?: number;
  /**
   * A migration: pipes and unix stream sockets whose other end another
   * process holds are relayed (core/relay/fds.ts), not reasons.
   */
  relay?: boolean;
}

/** Every reason `pid` cannot be checkpointed now (empty: it can). */
export async function checkReasons(pid: number, opts: CheckOptions = {}): Promise<string[]> {
  const ownPid = opts.ownPid ?? Deno.pid;
  if (pid === ownPid) return ["it is ppm itself"];
  let status: ProcStatus, maps: MapsEntry[];
  try {
    status = parseStatus(await Deno.readTextFile(`/proc/${pid}/status`));
    maps = parseMaps(await Deno.readTextFile(`/proc/${pid}/maps`));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [`there is no process ${pid}`];
    if (e instanceof Deno.errors.PermissionDenied) {
      return [`you may not inspect process ${pid} (not yours)`];
    }
    throw e;
  }
  if (maps.length === 0) return ["it is a kernel thread"];
  const reasons = [...stayReasons(status, maps), ...credReasons(status)];
  reasons.push(...await threadReasons(pid));
  reasons.push(...await timerReasons(pid));
  if (status.tracerPid) reasons.push(`it is already traced by process ${status.tracerPid}`);
  try {
    const files = await readFds(pid, { relay: opts.relay });
    reasons.push(...files.reasons);
    // IPv4 TCP and UDP sockets move with `ppm migrate` and `--tcp-established`; others are reasons.
    reasons.push(...socketReasons(pid, files.sockets, opts.carrySockets ?? true));
  } catch {
    reasons.push("its open files cannot be read (not yours?)");
  }
  return reasons;
}
