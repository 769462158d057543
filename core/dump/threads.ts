/**
 * What each thread of a frozen process keeps for itself beyond its
 * registers: its name, scheduling policy, priority and nice value, CPU
 * affinity (from /proc/PID/task/TID), and the rseq fix-up CRIU does: a
 * thread stopped inside an rseq critical section resumes at the section's
 * abort handler, as the kernel would have sent it there on its way back to
 * user space.
 *
 * @module
 */
import { processVmRead } from "../../ffi/libc.ts";
import { parseProcStatLine } from "../host/proc_stat.ts";
import { getReg, setReg } from "../ptrace/tracee.ts";
import { listThreads } from "../ptrace/group.ts";

/** A thread's scheduling: policy, real-time priority and nice value. */
export interface SchedState {
  /** SCHED_OTHER 0, FIFO 1, RR 2, BATCH 3, IDLE 5, DEADLINE 6. */
  policy: number;
  /** Real-time priority, 0 for the normal policies. */
  priority: number;
  /** Nice value, -20..19. */
  nice: number;
}

/** The facts of one thread that /proc shows. */
export interface ThreadFacts {
  /** Its name (/proc/PID/task/TID/comm), undefined when it is not UTF-8. */
  comm: string | undefined;
  /** Its scheduling. */
  sched: SchedState;
  /** Its CPU affinity: bit N of byte N/8 is CPU N. */
  affinity: Uint8Array;
}

/** Most bytes of an affinity mask ppm keeps (8192 CPUs). */
export const MAX_AFFINITY_BYTES = 1024;

/** The scheduling fields of a /proc/PID/task/TID/stat text. */
export function parseSched(stat: string): SchedState {
  const f = parseProcStatLine(stat);
  if (!f) throw new Error("unparsable stat line");
  return { policy: f.policy, priority: f.rtPriority, nice: f.nice };
}

/**
 * The `Cpus_allowed:` mask of a /proc/PID/status text (32-bit hex words,
 * most significant first, separated by commas) as little-endian bytes.
 */
export function parseAffinity(status: string): Uint8Array {
  const line = status.split("\n").find((l) => l.startsWith("Cpus_allowed:"));
  if (!line) throw new Error("no Cpus_allowed line");
  const words = line.slice("Cpus_allowed:".length).trim().split(",");
  if (!words.every((w) => /^[0-9a-f]{1,8}$/i.test(w))) throw new Error(`bad mask: ${line}`);
  const out = new Uint8Array(Math.min(Math.max(words.length * 4, 8), MAX_AFFINITY_BYTES));
  const dv = new DataView(out.buffer);
  words.reverse().forEach((w, i) => {
    if (i * 4 < out.length) dv.setUint32(i * 4, parseInt(w, 16), true);
  });
  let len = out.length;
  while (len > 8 && out[len - 1] === 0) len--; // keep at least 64 CPUs' worth
  return out.slice(0, len);
}

/**
 * A name exactly as the kernel keeps it (a /proc comm file; /proc/PID/status
 * escapes it), or undefined when it is not UTF-8.
 */
export async function readName(path: string): Promise<string | undefined> {
  const raw = await Deno.readFile(path);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(raw).replace(/\n$/, "");
  } catch {
    return undefined;
  }
}

/** Reads the facts of thread `tid` of process `pid` (stopped, so they hold still). */
export async function readThreadFacts(pid: number, tid: number): Promise<ThreadFacts> {
  const dir = `/proc/${pid}/task/${tid}`;
  return {
    comm: await readName(`${dir}/comm`),
    sched: parseSched(await Deno.readTextFile(`${dir}/stat`)),
    affinity: parseAffinity(await Deno.readTextFile(`${dir}/status`)),
  };
}

/** `struct rseq_cs` as the kernel reads it. */
export interface RseqCs {
  /** Must be 0. */
  version: number;
  /** First instruction of the section. */
  startIp: bigint;
  /** Length up to the commit. */
  postCommitOffset: bigint;
  /** Where an interrupted section goes on. */
  abortIp: bigint;
}

/**
 * Moves `regs`' instruction pointer to the abort handler when it lies
 * inside the critical section `cs`, as the kernel's rseq_ip_fixup does.
 * Returns whether it moved.
 */
export function applyRseqAbort(regs: Uint8Array, cs: RseqCs): boolean {
  const ip = getReg(regs, "rip");
  if (cs.version !== 0 || ip < cs.startIp) return false;
  if (ip - cs.startIp >= cs.postCommitOffset) return false;
  setReg(regs, "rip", cs.abortIp);
  return true;
}

/**
 * The critical section that thread's rseq area at `area` points to, read
 * from the stopped process; undefined when there is none or it cannot be
 * read (the kernel would then have ended the thread with SIGSEGV anyway).
 */
export async function readRseqCs(pid: number, area: bigint): Promise<RseqCs | undefined> {
  if (!area) return undefined;
  const ptr = new Uint8Array(8);
  if (await processVmRead(pid, area + 8n, ptr) !== 8) return undefined;
  const at = new DataView(ptr.buffer).getBigUint64(0, true);
  if (!at || at >= 1n << 47n) return undefined;
  const raw = new Uint8Array(32);
  if (await processVmRead(pid, at, raw) !== 32) return undefined;
  const dv = new DataView(raw.buffer);
  return {
    version: dv.getUint32(0, true),
    startIp: dv.getBigUint64(8, true),
    postCommitOffset: dv.getBigUint64(16, true),
    abortIp: dv.getBigUint64(24, true),
  };
}

/** The /proc/PID/status lines that must be the same in every thread (credentials are per thread). */
const SHARED_CRED_LINES = [
  "Uid",
  "Gid",
  "Groups",
  "CapInh",
  "CapPrm",
  "CapEff",
  "CapBnd",
  "CapAmb",
  "NoNewPrivs",
  "Seccomp",
  "Seccomp_filters",
];

function credLines(status: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of status.split("\n")) {
    const i = line.indexOf(":");
    if (i > 0 && SHARED_CRED_LINES.includes(line.slice(0, i))) {
      out.set(line.slice(0, i), line.slice(i + 1).trim());
    }
  }
  return out;
}

/**
 * Why the threads of `pid` cannot be checkpointed: threads whose
 * credentials differ from the leader's (ppm restores one set), a thread
 * under SCHED_DEADLINE, a thread name that is not UTF-8. Threads that end
 * while this reads are skipped.
 */
export async function threadReasons(pid: number): Promise<string[]> {
  const reasons: string[] = [];
  let leader: Map<string, string> | undefined;
  const tids = listThreads(pid);
  if (!tids.length) return reasons;
  for (const tid of [pid, ...tids.filter((t) => t !== pid)]) {
    let status: string, stat: string, comm: string | undefined;
    try {
      const dir = `/proc/${pid}/task/${tid}`;
      status = await Deno.readTextFile(`${dir}/status`);
      stat = await Deno.readTextFile(`${dir}/stat`);
      comm = await readName(`${dir}/comm`);
    } catch {
      continue; // ended meanwhile
    }
    const creds = credLines(status);
    if (!leader) leader = creds;
    else {
      const differ = [...leader].filter(([k, v]) => creds.get(k) !== v).map(([k]) => k);
      if (differ.length) {
        reasons.push(
          `thread ${tid} has other credentials than the main thread (${differ.join(", ")})`,
        );
      }
    }
    if (parseProcStatLine(stat)?.policy === 6) {
      reasons.push(`thread ${tid} runs under SCHED_DEADLINE, which ppm does not restore`);
    }
    if (tid !== pid && comm === undefined) {
      reasons.push(`the name of thread ${tid} is not valid UTF-8`);
    }
  }
  return reasons;
}
