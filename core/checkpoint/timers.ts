/**
 * The TIMERS record of a frozen process: read by system calls in its
 * leader (core/dump/timers.ts), which is given back as it was frozen
 * (core/ptrace/borrow.ts): on its way back to user space, as the kernel
 * would, a leader stopped inside an rseq critical section is sent to its
 * abort handler.
 *
 * It runs after the SIGNALS record is written: a signal the freeze caught
 * the leader with is queued in it again by then (the image keeps it as the
 * signal to deliver on resume).
 *
 * @module
 */
import { PpmError } from "../errors.ts";
import { dumpTimers } from "../dump/timers.ts";
import type { TimersRecord } from "../image/schema.ts";
import type { ThreadGroup } from "../ptrace/group.ts";
import type { Inspected } from "./inspect.ts";
import { rseqAbort } from "./threads.ts";

/** Reads the timers of the frozen process `group`, as `seen` found it. */
export function dumpFrozenTimers(group: ThreadGroup, seen: Inspected): Promise<TimersRecord> {
  const vdso = seen.maps.find((m) => m.name === "[vdso]");
  if (!vdso) {
    throw new PpmError(
      `process ${group.pid} cannot be checkpointed`,
      "it has no vDSO, where ppm runs the system calls that read its timers",
      "",
    );
  }
  return dumpTimers(group.leader, {
    vdso,
    vmas: seen.maps,
    seccomp: seen.status.seccomp !== 0,
    fixRegs: (regs) => rseqAbort(group.pid, regs, "none", seen.task.rseq.addr),
  });
}
