/**
 * The one parser of /proc/PID/stat (and /proc/PID/task/TID/stat) that the
 * agent, the load reader and the dump share. Pure, but for
 * {@link startTicks}, which reads the file.
 *
 * @module
 */

/** PF_KTHREAD in the flags of /proc/PID/stat. */
const PF_KTHREAD = 0x00200000;

/** The fields of /proc/PID/stat that ppm uses. */
export interface ProcStatFields {
  /** The command name (up to 15 characters). */
  comm: string;
  /** R, S, D, Z, T, t, X, I ... */
  state: string;
  /** Parent PID. */
  ppid: number;
  /** True for a kernel thread. */
  kernelThread: boolean;
  /** User plus system CPU time, in clock ticks. */
  cpuTicks: number;
  /** Nice value, -20 to 19. */
  nice: number;
  /** Threads. */
  threads: number;
  /** Start time after boot, in clock ticks (tells a reused PID apart). */
  startTicks: number;
  /** Real-time priority (field 40), 0 for normal policies; 0 when the kernel shows none. */
  rtPriority: number;
  /** Scheduling policy (field 41): SCHED_OTHER 0, FIFO 1, RR 2, BATCH 3, IDLE 5, DEADLINE 6. */
  policy: number;
}

/**
 * Parses a /proc/PID/stat text; null when it is not one. The command name
 * may hold spaces and parentheses: the fields after it start at the last ")".
 */
export function parseProcStatLine(text: string): ProcStatFields | null {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open < 0 || close < open) return null;
  const f = text.slice(close + 2).trim().split(/\s+/);
  if (f.length < 20) return null;
  const n = (i: number) => Number(f[i]);
  const flags = n(6);
  const out: ProcStatFields = {
    comm: text.slice(open + 1, close),
    state: f[0],
    ppid: n(1),
    kernelThread: (flags & PF_KTHREAD) !== 0,
    cpuTicks: n(11) + n(12),
    nice: n(16),
    threads: n(17),
    startTicks: n(19),
    rtPriority: f.length > 38 ? n(37) : 0,
    policy: f.length > 38 ? n(38) : 0,
  };
  const valid =
    [out.ppid, flags, out.cpuTicks, out.threads, out.startTicks, out.rtPriority, out.policy]
      .every(Number.isFinite) &&
    Number.isInteger(out.nice) && out.nice >= -20 && out.nice <= 19;
  return valid ? out : null;
}

/** Field 22 of /proc/PID/stat, or "" when the process is gone. */
export function startTicks(pid: number): string {
  try {
    const s = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return s.slice(s.lastIndexOf(")") + 2).split(" ")[19] ?? "";
  } catch {
    return "";
  }
}

/** Whether process `pid` ended: gone, or a zombie (or dead) not yet collected. */
export function processEnded(pid: number): boolean {
  try {
    const st = parseProcStatLine(Deno.readTextFileSync(`/proc/${pid}/stat`));
    return !st || st.state === "Z" || st.state === "X";
  } catch {
    return true;
  }
}
