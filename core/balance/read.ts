/**
 * Reads this node's load from /proc: the one place the agent and discovery
 * take their samples from.
 *
 * The agent's own runnable threads are not the node's load: a migration in
 * or out keeps several of them busy for seconds (under TCG for many), and
 * counting them made a node that was receiving or sending work look
 * overloaded, so it sent work on. The count of runnable tasks and the
 * agent's runnable threads are read together, synchronously, so that the
 * reading thread is counted in both and nothing else of the agent's runs
 * because of the reading.
 *
 * @module
 */
import { runnableThreads, sampleFromProc } from "./measure.ts";
import type { LoadSample } from "./types.ts";

function readOptional(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

/** The stat texts of this process's threads (those that end while read are left out). */
function ownTaskStats(): string[] {
  const out: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync("/proc/self/task")];
  } catch {
    return out;
  }
  for (const e of entries) {
    const t = readOptional(`/proc/self/task/${e.name}/stat`);
    if (t !== undefined) out.push(t);
  }
  return out;
}

/**
 * One sample of this node now: runnable tasks less this process's runnable
 * threads (at least the reader), CPUs, `speed`, memory and PSI.
 */
export function readLoadSample(speed = 1): LoadSample {
  const stat = Deno.readTextFileSync("/proc/stat");
  const self = Math.max(1, runnableThreads(ownTaskStats()));
  return sampleFromProc(
    {
      loadavg: Deno.readTextFileSync("/proc/loadavg"),
      stat,
      meminfo: Deno.readTextFileSync("/proc/meminfo"),
      pressureCpu: readOptional("/proc/pressure/cpu"),
      cpuinfo: readOptional("/proc/cpuinfo"),
    },
    { at: Date.now() / 1000, speed, self },
  );
}
