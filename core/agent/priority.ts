/**
 * The agent's scheduling priority. A node that balances is a busy node: its
 * agent shares the CPUs with the work it moves, and at the same nice value a
 * few CPU-bound processes starved it (under TCG its announcements came late
 * enough for peers to call it stale, and migration handshakes timed out).
 * The agent raises every one of its threads to {@link AGENT_NICE}; threads
 * created later inherit it. Restored processes do not: the restore stub sets
 * each to the nice value it had (core/restore/spec.ts).
 *
 * @module
 */
import { setPriority } from "node:os";

export { AGENT_NICE } from "./nice.ts";

/** Sets every thread of this process to `nice`; returns what failed, in words. */
export function setOwnNice(nice: number): string[] {
  const failed: string[] = [];
  let tids: string[];
  try {
    tids = [...Deno.readDirSync("/proc/self/task")].map((e) => e.name);
  } catch (e) {
    return [`cannot list this process's threads: ${(e as Error).message}`];
  }
  for (const tid of tids) {
    try {
      // On Linux the nice value is per thread: PRIO_PROCESS with a thread id.
      setPriority(Number(tid), nice);
    } catch (e) {
      failed.push(`thread ${tid}: ${(e as Error).message}`);
    }
  }
  return failed;
}
