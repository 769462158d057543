/**
 * The records of a frozen process's image, written while it is frozen:
 * TASK, MM, CPU, SIGNALS, THREADS, VMAS and, when its sockets move with it,
 * SOCKETS (a migration) or NETWORK (a checkpoint with `--tcp-established`).
 * (Its pages follow; FILES and the end come after it runs again, see
 * checkpoint.ts.)
 *
 * @module
 */
import type { KernelVma } from "../../ffi/device.ts";
import { PPM_ABI_VERSION } from "../../ffi/uapi.ts";
import { PpmError } from "../errors.ts";
import type { NetworkFreeze } from "../freeze/network.ts";
import type { ThreadGroup } from "../ptrace/group.ts";
import { RECORD } from "../image/format.ts";
import type { ImageWriter } from "../image/writer.ts";
import { mmRecord, type ThreadsRecord } from "../image/schema.ts";
import { fileId } from "../dump/files.ts";
import { dumpCreds } from "../dump/creds.ts";
import { parseCpuFlags } from "../host/cpu.ts";
import { type MapsEntry, parseLimits, parseNice } from "../dump/proc.ts";
import { classifyVma, protOf, type VmaRecord } from "../dump/vma.ts";
import type { Inspected } from "./inspect.ts";
import type { CpuState } from "./cpu.ts";
import { bootId } from "../host/boot_id.ts";

/**
 * The mappings of process `pid` as the image records them: the module's
 * (`kvmas`), classified and named with /proc/PID/maps (`maps`); throws when
 * the two disagree.
 */
export function vmaRecords(pid: number, maps: MapsEntry[], kvmas: KernelVma[]): VmaRecord[] {
  const byStart = new Map(maps.map((m) => [m.start, m]));
  return kvmas.map((k) => {
    const m = byStart.get(k.start);
    if (!m) {
      throw new PpmError(`process ${pid} changed while frozen`, "mappings disagree", "retry");
    }
    const kind = classifyVma(m, k.vmFlags);
    const v: VmaRecord = {
      start: k.start,
      end: k.end,
      prot: protOf(k.vmFlags),
      vmFlags: k.vmFlags,
      pgoff: k.pgoff,
      kind,
    };
    if (kind === "file" || kind === "shared-file") v.path = m.name;
    return v;
  });
}

/** What {@link writeRecords} writes of a frozen process. */
export interface FrozenState {
  /** The process. */
  pid: number;
  /** It, frozen: every thread. */
  tracee: ThreadGroup;
  /** What /proc and the module said of it. */
  seen: Inspected;
  /** Its CPU state (the leader's). */
  cpu: CpuState;
  /** Its other threads, and the leader's scheduling. */
  threads: ThreadsRecord;
  /** Its mappings (see {@link vmaRecords}). */
  vmas: VmaRecord[];
  /** Its frozen sockets, when they move with it. */
  net?: NetworkFreeze;
  /** They go in the image, to be restored on this node (NETWORK), not to another node (SOCKETS). */
  inImage?: boolean;
  /** With `inImage`: their drops stay until the restore (the process is ended), and are named. */
  keptDrops?: boolean;
}

/** Writes the frozen process's records, in order, to `writer`. */
export async function writeRecords(writer: ImageWriter, s: FrozenState): Promise<void> {
  const { pid, seen: { status, maps, comm, task }, cpu: { regs, xstate, sigmask, restart } } = s;
  const vdso = maps.find((m) => m.name === "[vdso]");
  const vvar = maps.find((m) => m.name === "[vvar]");
  await writer.writeRecord(RECORD.TASK, {
    pid,
    comm: comm ?? "", // not reached: a name that is not UTF-8 is refused by inspect
    exe: await Deno.readLink(`/proc/${pid}/exe`),
    cwd: await Deno.readLink(`/proc/${pid}/cwd`),
    cwdId: fileId(`/proc/${pid}/cwd`),
    umask: status.umask,
    uid: status.uid,
    gid: status.gid,
    groups: status.groups,
    caps: status.caps,
    rlimits: parseLimits(await Deno.readTextFile(`/proc/${pid}/limits`)),
    nice: parseNice(await Deno.readTextFile(`/proc/${pid}/stat`)),
    personality: task.personality,
    creds: dumpCreds(pid, status, task),
    kernel: Deno.osRelease(),
    cpuFlags: parseCpuFlags(await Deno.readTextFile("/proc/cpuinfo")),
    xsaveSize: xstate.length,
    abi: PPM_ABI_VERSION,
    createdAt: new Date().toISOString(),
  });
  await writer.writeRecord(
    RECORD.MM,
    mmRecord({
      ...task.mm,
      vdso: task.vdso,
      vdsoEnd: vdso?.end ?? 0n,
      vvar: vvar?.start ?? 0n,
      vvarEnd: vvar?.end ?? 0n,
    }, task.auxv),
  );
  await writer.writeRecord(RECORD.CPU, { regs, xstate, sigmask, restart });
  await writer.writeRecord(RECORD.SIGNALS, {
    actions: task.actions.filter((a) => a.handler !== 0n || a.flags !== 0n || a.mask !== 0n),
    altstack: task.altstack,
    blocked: task.blocked,
    pending: task.pending,
    sharedPending: task.sharedPending,
    // A signal the freeze caught on its way in goes first in the queue with its siginfo; only
    // when that could not be read is it raised again by number (then as a kill()'s).
    deliverOnResume: s.tracee.deliverInfo ? 0 : s.tracee.deliverOnResume,
    queue: [
      ...(s.tracee.deliverInfo ? [{ shared: false, info: s.tracee.deliverInfo }] : []),
      ...s.cpu.queue,
    ],
    robustList: task.robustList,
    robustListLen: task.robustListLen,
    clearChildTid: task.clearChildTid,
    rseq: task.rseq,
  });
  await writer.writeRecord(RECORD.THREADS, s.threads);
  await writer.writeRecord(RECORD.VMAS, s.vmas);
  if (s.net && s.inImage) {
    await writer.writeRecord(RECORD.NETWORK, {
      bootId: bootId(),
      sockets: s.net.entries,
      drops: s.keptDrops
        ? s.net.dropped.map((r) => ({
          proto: r.proto,
          action: r.action === "drop-syn" ? "drop-syn" as const : "drop" as const,
          old: r.old,
          peer: r.peer,
          idleTimeout: r.idleTimeout ?? 0,
        }))
        : [],
    });
  } else if (s.net) await writer.writeRecord(RECORD.SOCKETS, s.net.entries);
}
