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
 * The steps: freeze and check (`inspect.ts`), the sockets frozen, the CPU
 * state (`cpu.ts`), the records (`records.ts`), the timers (`timers.ts`),
 * the pages, the process let go ({@link release}), then the image's tail
 * ({@link finishImage}).
 *
 * @module
 */
import { PAGE_SIZE } from "../../ffi/libc.ts";
import { EXIT, PpmError } from "../errors.ts";
import { NetworkFreeze } from "../freeze/network.ts";
import { ownAddresses } from "../dump/sockets.ts";
import { CHECKPOINT_DROP_IDLE_S } from "../redirect/redirect_plan.ts";
import { ThreadGroup } from "../ptrace/group.ts";
import { dumpThreads, rseqAbort } from "./threads.ts";
import { dumpFrozenTimers } from "./timers.ts";
import { RECORD } from "../image/format.ts";
import { ImageWriter } from "../image/writer.ts";
import { type FileIdentity, fileIdentity, type SocketFd } from "../dump/files.ts";
import { dumpPages, type PageStats, type PageStreamOut, streamPages } from "../dump/memory.ts";
import type { VmaRecord } from "../dump/vma.ts";
import type { PrecopyState } from "../dump/precopy_state.ts";
import type { FdEntry } from "../image/schema.ts";
import { inspect } from "./inspect.ts";
import { readCpu } from "./cpu.ts";
import { vmaRecords, writeRecords } from "./records.ts";

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
   * Carry the process's IPv4 sockets to another node (a migration): their
   * flows are frozen on this node, whose address peers know as `nodeAddr`,
   * and they go in the SOCKETS record.
   */
  network?: { nodeAddr: string };
  /**
   * Carry the process's IPv4 sockets in the image, to be restored on this
   * node (`ppm checkpoint --tcp-established`, like CRIU's): they are frozen
   * as for a migration, this node being both the old and the new one, and go
   * in the NETWORK record. With `kill`, their flows' drops stay (a day
   * without a packet at most, CHECKPOINT_DROP_IDLE_S), so that the peers
   * get neither a RST nor an ICMP error until the restore removes them, and
   * the process is ended only once the image has gone to the sink. Without
   * this nor `network`, sockets are a reason not to checkpoint.
   */
  tcpEstablished?: boolean;
  /**
   * Carry the resident pages of code and libraries too, switching the
   * optimized total copy off (kept to measure what the optimization saves).
   */
  copyAll?: boolean;
  /**
   * A migration after pre-copy rounds (core/dump/precopy.ts): the pages the
   * destination holds unchanged are left out, and the image says which of
   * those it holds must go (the PRECOPY record).
   */
  precopy?: PrecopyState;
  /**
   * A migration's page stream (core/transport/pagestream.ts): the pages go
   * there, read and sent natively, and the image carries none.
   */
  pages?: PageStreamSender;
}

/** What {@link CheckpointOptions.pages} needs: the page stream's source end. */
export interface PageStreamSender extends PageStreamOut {
  /** The frozen part begins: the mappings the plan recreates. */
  freeze(vmas: number): Promise<void>;
  /** Its end frame, once every page is sent: frames and pages, and where the time went. */
  finish(): Promise<{ frames: number; pages: number; ms?: Record<string, number> }>;
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
  held?: ThreadGroup;
  /** With `hold` (a migration): the descriptors to relay (core/relay/fds.ts), in the image's order. */
  relayed?: FdEntry[];
  /** With `hold` and `network`: its frozen sockets. */
  network?: NetworkFreeze;
  /**
   * With `tcpEstablished`: the sockets the image carries, and the drop
   * entries left in this node's redirect table for their flows (with `kill`).
   */
  sockets?: { carried: number; dropsKept: number };
  /**
   * With `pages`: the frames and pages the page stream carried (the image
   * carried none).
   */
  pagestream?: { frames: number; pages: number; ms?: Record<string, number> };
  /** Per-phase times, µs. */
  timesUs: {
    freeze: number;
    dumpCpu: number;
    /** The records but the pages: mappings, files and descriptors, sockets, signals, timers. */
    dumpState: number;
    /** The pages (with `hold`, sent as they are read). */
    dumpMemory: number;
    frozen: number;
    identity: number;
    write: number;
    total: number;
  };
}

const us = (ms: number) => Math.round(ms * 1000);

/** What the steps of one checkpoint share. */
interface Run {
  /** The process. */
  pid: number;
  /** The caller's options. */
  opts: CheckpointOptions;
  /** The process, frozen. */
  tracee: ThreadGroup;
  /** Its image. */
  writer: ImageWriter;
  /** Its frozen sockets, once frozen: thawed with it when a later step fails. */
  net?: NetworkFreeze;
  /**
   * The process is ended only after the image's tail went to the sink (a
   * `kill` with sockets in the image: a failure then still resumes it, and
   * its peers lose nothing).
   */
  lateKill?: boolean;
}

/** What the frozen steps leave for the image's tail. */
interface Dumped {
  /** The mapped files' paths. */
  mappedPaths: string[];
  /** The descriptors the image carries. */
  fds: FdEntry[];
  /** Pages written and skipped, per mapping. */
  stats: PageStats[];
  /** The descriptors to relay. */
  relayed: FdEntry[];
  /** What went on the page stream (with `pages`). */
  stream?: { frames: number; pages: number; ms?: Record<string, number> };
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
  const tracee = ThreadGroup.freeze(pid);
  const tFrozen = performance.now();
  const run: Run = { pid, opts, tracee, writer };
  let tCpu = tFrozen, tState = tFrozen, tMem = tFrozen, tResumed = tFrozen;
  let ok = false;
  const dumped: Dumped = { mappedPaths: [], fds: [], stats: [], relayed: [] };
  try {
    const seen = await inspect(
      pid,
      !!opts.network || !!opts.tcpEstablished,
      !!opts.network,
      opts.hold === true,
    );
    dumped.relayed = seen.fds.filter((f) => f.kind === "relayed");
    freezeSockets(run, seen.sockets);
    const cpu = readCpu(tracee.leader);
    await rseqAbort(pid, cpu.regs, cpu.restart, seen.task.rseq.addr);
    const threads = await dumpThreads(tracee);
    tCpu = performance.now();
    const vmas = vmaRecords(pid, seen.maps, seen.kvmas);
    dumped.mappedPaths = [...new Set(vmas.flatMap((v) => (v.path ? [v.path] : [])))];
    await writeRecords(writer, {
      pid,
      tracee,
      seen,
      cpu,
      threads,
      vmas,
      net: run.net,
      inImage: !opts.network && !!opts.tcpEstablished,
      keptDrops: !!opts.kill,
    });
    // After SIGNALS (reading them runs system calls in the process, see dumpFrozenTimers).
    await writer.writeRecord(RECORD.TIMERS, await dumpFrozenTimers(tracee, seen));
    dumped.fds = seen.fds;
    tState = performance.now();
    await dumpMemory(run, vmas, dumped);
    tMem = performance.now();
    ok = true;
  } finally {
    try {
      release(run, ok);
    } finally {
      tResumed = performance.now();
    }
  }

  const { tId, summary, totals } = await finishImage(run, dumped, chunks, sink);
  if (run.lateKill) {
    run.tracee.kill();
    run.net?.handOver();
  }
  const tEnd = performance.now();
  return {
    ...figures(run, dumped, summary.bytes, totals),
    streamed,
    timesUs: {
      freeze: us(tFrozen - t0),
      dumpCpu: us(tCpu - tFrozen),
      dumpState: us(tState - tCpu),
      dumpMemory: us(tMem - tState),
      frozen: us(tResumed - t0),
      identity: us(tId - tResumed),
      write: us(tEnd - tId),
      total: us(tEnd - t0),
    },
  };
}

/**
 * The pages, as dumpPages reads them; after pre-copy rounds, the PRECOPY
 * record: how many pages the image leaves to them, which they hold that
 * must go.
 */
async function dumpMemory(run: Run, vmas: VmaRecord[], dumped: Dumped): Promise<void> {
  const { pid, opts, writer } = run;
  if (opts.pages) {
    await opts.pages.freeze(vmas.filter((v) => !KERNEL_MAPPINGS.includes(v.kind)).length);
    dumped.stats = await streamPages(pid, vmas, opts.pages, opts.copyAll, opts.precopy);
    dumped.stream = await opts.pages.finish();
  } else {
    dumped.stats = await dumpPages(
      pid,
      vmas,
      (r) => writer.writePages(r.start, r.data),
      opts.copyAll,
      opts.precopy,
    );
  }
  if (opts.precopy) {
    await writer.writeRecord(RECORD.PRECOPY, {
      held: dumped.stats.reduce((n, st) => n + st.precopied, 0),
      drops: opts.precopy.dropRuns(),
    });
  }
}

/** Mappings the kernel makes itself, which a restore plan leaves out (memory_plan.ts planVmas). */
const KERNEL_MAPPINGS = ["vdso", "vvar", "vsyscall"];

/** A checkpoint's figures but its times: what it carried, and what the caller holds now. */
function figures(
  run: Run,
  dumped: Dumped,
  imageBytes: number,
  totals: PageStats,
): Omit<CheckpointStats, "timesUs" | "streamed"> {
  const { opts } = run;
  return {
    pid: run.pid,
    held: opts.hold ? run.tracee : undefined,
    relayed: opts.hold ? dumped.relayed : undefined,
    network: opts.hold ? run.net : undefined,
    ...(opts.tcpEstablished && !opts.network
      ? {
        sockets: {
          carried: run.net?.entries.length ?? 0,
          dropsKept: opts.kill ? run.net?.dropped.length ?? 0 : 0,
        },
      }
      : {}),
    leftRunning: !opts.kill,
    imageBytes,
    pages: totals,
    memoryBytes: totals.dumped * PAGE_SIZE,
    ...(dumped.stream ? { pagestream: dumped.stream } : {}),
  };
}

/**
 * Freezes the process's sockets when they move with it (`network`) or go
 * in the image (`tcpEstablished`: the drops then cover every address of
 * this node, for a listener bound to all of them); throws the reasons when
 * some cannot (then none is frozen).
 */
function freezeSockets(run: Run, sockets: SocketFd[]): void {
  const { network, tcpEstablished, kill } = run.opts;
  if (!sockets.length || (!network && !tcpEstablished)) return;
  let frozen;
  if (network) frozen = NetworkFreeze.freeze(run.pid, sockets, network.nodeAddr);
  else {
    const own = [...ownAddresses()];
    const addrs = own.length ? own : ["127.0.0.1"];
    frozen = NetworkFreeze.freeze(run.pid, sockets, addrs[0], {
      addrs,
      dropIdle: kill ? CHECKPOINT_DROP_IDLE_S : undefined,
      keepAlive: !kill,
    });
  }
  if (!(frozen instanceof NetworkFreeze)) {
    throw new PpmError(
      `process ${run.pid} cannot be ${network ? "migrated" : "checkpointed"}`,
      frozen.reasons.join("; "),
      "see `ppm checkpoint --check PID`",
      EXIT.FAILURE,
    );
  }
  run.net = frozen;
  run.lateKill = !network && kill === true && !run.opts.hold;
}

/**
 * Lets the process go after the frozen steps: held for the caller (or
 * until its image is out, see `lateKill`), or ended with its sockets handed
 * over (`kill`), or else (and after any failure) its sockets thawed and it
 * resumed.
 */
function release(run: Run, ok: boolean): void {
  if (ok && (run.opts.hold || run.lateKill)) { /* the caller decides, or checkpoint() later */ }
  else if (ok && run.opts.kill) {
    run.tracee.kill();
    run.net?.handOver();
  } else {
    run.net?.thaw();
    run.tracee.resume();
  }
}

/**
 * The image's tail, written once the process was let go: the mapped files'
 * identities (FILES), the end, and a kept image sent to `sink`. A held
 * process is thawed and resumed when this fails.
 */
async function finishImage(
  run: Run,
  dumped: Dumped,
  chunks: Uint8Array[],
  sink: (chunk: Uint8Array) => Promise<void>,
): Promise<{ tId: number; summary: { bytes: number }; totals: PageStats }> {
  const totals: PageStats = { dumped: 0, file: 0, zero: 0, absent: 0, precopied: 0 };
  try {
    const mapped: FileIdentity[] = [];
    for (const p of dumped.mappedPaths) mapped.push(await fileIdentity(p));
    await run.writer.writeRecord(RECORD.FILES, { fds: dumped.fds, mapped });
    const tId = performance.now();
    for (const s of dumped.stats) {
      for (const k of Object.keys(totals) as (keyof PageStats)[]) totals[k] += s[k];
    }
    const summary = await run.writer.end({ pageStats: dumped.stats });
    for (const c of chunks) await sink(c);
    chunks.length = 0;
    return { tId, summary, totals };
  } catch (e) {
    // A held process must not stay frozen because the image could not go out; one whose
    // sockets' drops were to stay is not ended without its image.
    if (run.opts.hold || run.lateKill) {
      run.net?.thaw();
      run.tracee.resume();
    }
    throw e;
  }
}
