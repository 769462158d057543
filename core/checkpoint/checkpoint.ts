/**
 * `ppm checkpoint` and a migration's source: freeze → dump → image, in
 * order, above the steps it runs (core/ptrace, core/freeze for sockets,
 * core/dump, core/image). The process is frozen with
 * ptrace, its state is read (registers and FPU through ptrace, what /proc
 * hides through the module, memory through pagemap and /proc/PID/mem), the
 * image is assembled in memory, the process is resumed (or killed), and only
 * then is the image written out, so the freeze lasts no longer than the
 * reading. A failure at any step resumes the process.
 *
 * @module
 */
import { type DumpedTask, withDevice } from "../../ffi/device.ts";
import { ErrnoError, PAGE_SIZE } from "../../ffi/libc.ts";
import { PPM_ABI_VERSION } from "../../ffi/uapi.ts";
import { EXIT, PpmError } from "../errors.ts";
import { NetworkFreeze } from "../freeze/network.ts";
import { getReg, setReg, Tracee } from "../ptrace/tracee.ts";
import { RECORD } from "../image/format.ts";
import { ImageWriter } from "../image/writer.ts";
import { fileId, type FileIdentity, fileIdentity, readFds } from "../dump/files.ts";
import { credReasons, dumpCreds } from "../dump/creds.ts";
import { dumpPages, type PageStats } from "../dump/memory.ts";
import { parseCpuFlags } from "../host/cpu.ts";
import { parseLimits, parseMaps, parseNice, parseStatus } from "../dump/proc.ts";
import { stayReasons } from "../dump/check.ts";
import { classifyVma, protOf, type VmaRecord } from "../dump/vma.ts";
import { type FdEntry, mmRecord } from "../image/schema.ts";

/** Options of {@link checkpoint}. */
export interface CheckpointOptions {
  /** End the process after the dump instead of resuming it. */
  kill?: boolean;
  /**
   * Keep the process frozen after the dump: the caller decides, with the
   * returned tracee, whether it resumes (`resume`) or ends (`kill`).
   * Migration holds the source until the destination runs the process.
   */
  hold?: boolean;
  /**
   * Carry the process's IPv4 sockets (migration only): their flows are
   * frozen on this node, whose address peers know as `nodeAddr`. Without
   * it, sockets are a reason not to checkpoint (a file cannot hold a live
   * connection).
   */
  network?: { nodeAddr: string };
  /**
   * Carry the resident pages of code and libraries too, switching the
   * optimized total copy off (kept to measure what the optimization saves).
   */
  copyAll?: boolean;
}

/** Figures of one checkpoint; times in microseconds. */
export interface CheckpointStats {
  /** The process. */
  pid: number;
  /** Whether it was left running (else killed). */
  leftRunning: boolean;
  /** Image size in bytes. */
  imageBytes: number;
  /** Pages written, and pages skipped by why. */
  pages: PageStats;
  /** Anonymous memory written by the process that the image carries, bytes. */
  memoryBytes: number;
  /**
   * True when the image went to the sink as it was written (with `hold`):
   * then `dumpMemory` includes sending the pages, and `write` is only the
   * tail. Otherwise the image was kept in memory and sent after the process
   * ran again (`write`).
   */
  streamed: boolean;
  /** With `hold`: the still-frozen process. */
  held?: Tracee;
  /** With `hold` and `network`: its frozen sockets. */
  network?: NetworkFreeze;
  /** Per-phase times, µs. */
  timesUs: {
    freeze: number;
    dumpCpu: number;
    dumpMemory: number;
    frozen: number;
    identity: number;
    write: number;
    total: number;
  };
}

const us = (ms: number) => Math.round(ms * 1000);

/** Restart-syscall normalisation, as the kernel would do after a signal. */
export function normalizeSyscallRestart(regs: Uint8Array): string {
  const orig = BigInt.asIntN(64, getReg(regs, "orig_rax"));
  const ax = BigInt.asIntN(64, getReg(regs, "rax"));
  if (orig < 0n) return "none";
  if (ax === -512n || ax === -513n || ax === -514n) {
    setReg(regs, "rip", getReg(regs, "rip") - 2n);
    setReg(regs, "rax", orig);
    return "restart";
  }
  if (ax === -516n) {
    setReg(regs, "rax", -4n);
    return "eintr";
  }
  return "none";
}

async function readText(path: string): Promise<string> {
  return await Deno.readTextFile(path);
}

/**
 * The process's name exactly as the kernel keeps it (/proc/PID/status
 * escapes it; /proc/PID/comm does not), or undefined when it is not UTF-8.
 */
export async function readComm(pid: number): Promise<string | undefined> {
  const raw = await Deno.readFile(`/proc/${pid}/comm`);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(raw).replace(/\n$/, "");
  } catch {
    return undefined;
  }
}

/** Checkpoints `pid` into `sink`; returns the figures. */
export async function checkpoint(
  pid: number,
  sink: (chunk: Uint8Array) => Promise<void>,
  opts: CheckpointOptions = {},
): Promise<CheckpointStats> {
  const t0 = performance.now();
  // A held process stays frozen until its destination runs it: keeping its image here first would
  // only add the transfer to the freeze, and a copy of its memory to ours. So the image goes out
  // as it is written, and the dump and the transfer overlap. A process that runs again after the
  // dump (a checkpoint to a file) has its image kept in memory until it runs, for a shorter freeze.
  const streamed = opts.hold === true;
  const chunks: Uint8Array[] = [];
  const writer = new ImageWriter(
    streamed ? sink : (c) => {
      chunks.push(c.slice());
      return Promise.resolve();
    },
  );
  const tracee = Tracee.freeze(pid);
  const tFrozen = performance.now();
  let tCpu = tFrozen, tMem = tFrozen, tResumed = tFrozen;
  let ok = false;
  let net: NetworkFreeze | undefined;
  let vmas: VmaRecord[] = [];
  let stats: PageStats[] = [];
  let mappedPaths: string[] = [];
  let fdsRecord: FdEntry[] = [];
  try {
    const status = parseStatus(await readText(`/proc/${pid}/status`));
    const maps = parseMaps(await readText(`/proc/${pid}/maps`));
    const { fds, sockets, reasons: fdReasons } = await readFds(pid);
    const comm = await readComm(pid);
    const reasons = [...stayReasons(status, maps), ...credReasons(status), ...fdReasons];
    if (comm === undefined) reasons.push("its name is not valid UTF-8");
    if (sockets.length && !opts.network) {
      reasons.push(
        ...sockets.map((sk) =>
          `fd ${sk.fd}: a socket; an image file cannot hold a live connection (ppm migrate moves TCP and UDP sockets)`
        ),
      );
    }
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
    if (task.nrThreads > 1 && !reasons.some((r) => r.includes("threads"))) {
      reasons.push(
        `it has ${task.nrThreads} threads (only single-threaded processes are supported)`,
      );
    }
    if (reasons.length) {
      throw new PpmError(
        `process ${pid} cannot be checkpointed`,
        reasons.join("; "),
        "see `ppm checkpoint --check PID`",
        EXIT.FAILURE,
      );
    }

    if (sockets.length && opts.network) {
      const frozen = NetworkFreeze.freeze(pid, sockets, opts.network.nodeAddr);
      if (!(frozen instanceof NetworkFreeze)) {
        throw new PpmError(
          `process ${pid} cannot be migrated`,
          frozen.reasons.join("; "),
          "see `ppm checkpoint --check PID`",
          EXIT.FAILURE,
        );
      }
      net = frozen;
    }

    const regs = tracee.getRegs();
    const restart = normalizeSyscallRestart(regs);
    const xstate = tracee.getXstate();
    const sigmask = tracee.getSigmask();
    const queue = [
      ...tracee.peekSiginfo(false).map((info) => ({ shared: false, info })),
      ...tracee.peekSiginfo(true).map((info) => ({ shared: true, info })),
    ];
    tCpu = performance.now();

    const byStart = new Map(maps.map((m) => [m.start, m]));
    vmas = kvmas.map((k) => {
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
    mappedPaths = [...new Set(vmas.flatMap((v) => (v.path ? [v.path] : [])))];
    const vdso = maps.find((m) => m.name === "[vdso]");
    const vvar = maps.find((m) => m.name === "[vvar]");

    await writer.writeRecord(RECORD.TASK, {
      pid,
      comm: comm ?? "", // not reached: a name that is not UTF-8 is refused above
      exe: await Deno.readLink(`/proc/${pid}/exe`),
      cwd: await Deno.readLink(`/proc/${pid}/cwd`),
      cwdId: fileId(`/proc/${pid}/cwd`),
      umask: status.umask,
      uid: status.uid,
      gid: status.gid,
      groups: status.groups,
      caps: status.caps,
      rlimits: parseLimits(await readText(`/proc/${pid}/limits`)),
      nice: parseNice(await readText(`/proc/${pid}/stat`)),
      personality: task.personality,
      creds: dumpCreds(pid, status, task),
      kernel: Deno.osRelease(),
      cpuFlags: parseCpuFlags(await readText("/proc/cpuinfo")),
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
      deliverOnResume: tracee.deliverOnResume,
      queue,
      robustList: task.robustList,
      robustListLen: task.robustListLen,
      clearChildTid: task.clearChildTid,
      rseq: task.rseq,
    });
    await writer.writeRecord(RECORD.VMAS, vmas);
    if (net) await writer.writeRecord(RECORD.SOCKETS, net.entries);
    fdsRecord = fds;
    stats = await dumpPages(
      pid,
      vmas,
      (run) => writer.writePages(run.start, run.data),
      opts.copyAll,
    );
    tMem = performance.now();
    ok = true;
  } finally {
    try {
      if (ok && opts.hold) { /* the caller decides */ }
      else if (ok && opts.kill) {
        tracee.kill();
        net?.handOver();
      } else {
        net?.thaw();
        tracee.resume();
      }
    } finally {
      tResumed = performance.now();
    }
  }

  let tId: number, summary: { bytes: number };
  const totals: PageStats = { dumped: 0, file: 0, zero: 0, absent: 0 };
  try {
    const mapped: FileIdentity[] = [];
    for (const p of mappedPaths) mapped.push(await fileIdentity(p));
    await writer.writeRecord(RECORD.FILES, { fds: fdsRecord, mapped });
    tId = performance.now();
    for (const s of stats) {
      for (const k of Object.keys(totals) as (keyof PageStats)[]) totals[k] += s[k];
    }
    summary = await writer.end({ pageStats: stats });
    for (const c of chunks) await sink(c);
    chunks.length = 0;
  } catch (e) {
    // A held process must not stay frozen because the image could not go out.
    if (opts.hold) {
      net?.thaw();
      tracee.resume();
    }
    throw e;
  }
  const tEnd = performance.now();
  return {
    pid,
    streamed,
    held: opts.hold ? tracee : undefined,
    network: opts.hold ? net : undefined,
    leftRunning: !opts.kill,
    imageBytes: summary.bytes,
    pages: totals,
    memoryBytes: totals.dumped * PAGE_SIZE,
    timesUs: {
      freeze: us(tFrozen - t0),
      dumpCpu: us(tCpu - tFrozen),
      dumpMemory: us(tMem - tCpu),
      frozen: us(tResumed - t0),
      identity: us(tId - tResumed),
      write: us(tEnd - tId),
      total: us(tEnd - t0),
    },
  };
}
