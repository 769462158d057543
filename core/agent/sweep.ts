/**
 * The agent's periodic look at the processes it knows: a managed process
 * that ended leaves the table, and a process that arrived here and ended is
 * collected (the agent is its parent), its exit recorded and sent back
 * towards the node where it started (see exits.ts).
 *
 * @module
 */
import { decodeWaitStatus, waitpid, WNOHANG } from "../../ffi/libc.ts";
import type { MigrationChannel } from "../transport/channel.ts";
import type { ExitMessage } from "../migrate/messages.ts";
import { exitOf } from "./exits.ts";
import type { ProcessTable } from "./processes.ts";
import type { ProcStatFields } from "./procfs.ts";

/** What {@link sweep} needs. */
export interface SweepDeps {
  /** The process table. */
  table: ProcessTable;
  /** PIDs being migrated right now (left alone: their tracer waits for them). */
  busy: ReadonlySet<number>;
  /** Connections to the nodes arrived processes came from, by PID. */
  upstream: Map<number, MigrationChannel>;
  /** Reads /proc/PID/stat; null when the process is gone. */
  stat: (pid: number) => Promise<ProcStatFields | null>;
  /**
   * Collects the exit of a child that ended; null when it is not this agent's
   * child; "pending" while it has not finished ending (see {@link reapChild}).
   */
  reap: (pid: number) => { code?: number; signal?: number } | null | "pending";
  /** Logs a line. */
  log: (level: string, s: string) => void;
}

/**
 * Collects a zombie child `pid` without blocking; null when it is not this
 * process's child. "pending" when it cannot be collected yet: a thread group
 * leader shows as a zombie as soon as it exits, while its other threads are
 * still ending (a killed process of many threads in a slow guest), and
 * waitpid only reports it once the last one is gone.
 */
export function reapChild(pid: number): { code?: number; signal?: number } | null | "pending" {
  try {
    const [r, status] = waitpid(pid, WNOHANG);
    if (r === 0) return "pending";
    return r === pid ? exitOf(decodeWaitStatus(status)) : null;
  } catch {
    return null; // ECHILD: someone else's child
  }
}

/** One look at every process of the table running here. */
export async function sweep(d: SweepDeps): Promise<void> {
  for (const e of d.table.list()) {
    if (e.direction === "left" || e.exit) continue;
    const pid = e.current.pid;
    if (d.busy.has(pid)) continue;
    const st = await d.stat(pid);
    const reused = st && e.startTicks !== undefined && st.startTicks !== e.startTicks;
    if (st && !reused && st.state !== "Z" && st.state !== "X") continue;
    // Only a zombie is collected: a stopped, traced child must not be waited for here.
    const reaped = st && !reused && e.direction === "arrived" ? d.reap(pid) : null;
    if (reaped === "pending") continue; // its threads are still ending: the next sweep collects it
    const status = reaped;
    const node = d.table.node;
    d.table.ended(pid, { ...status, node, at: new Date().toISOString() });
    if (e.direction !== "arrived") {
      d.log("debug", `managed process ${pid} (${e.name}) ended`);
      continue;
    }
    d.log(
      "info",
      `process ${pid} (${e.name}) that arrived from ${e.cameFrom} ended: ${
        status?.code !== undefined
          ? `exit ${status.code}`
          : status?.signal !== undefined
          ? `signal ${status.signal}`
          : "status unknown"
      }`,
    );
    const up = d.upstream.get(pid);
    if (up) {
      d.upstream.delete(pid);
      const msg: ExitMessage = { op: "exited", pid, node, ...status };
      up.send(msg).catch(() => {});
    }
  }
}
