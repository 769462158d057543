/**
 * What a process's cgroup says about who owns it: a Slurm job's processes
 * live under `.../job_ID/step_X/...` (cgroup v2, or the v1 hierarchies).
 *
 * @module
 */

/** The Slurm job a /proc/PID/cgroup text puts the process in; undefined when none. */
export function slurmJobOf(cgroupText: string): string | undefined {
  for (const line of cgroupText.split("\n")) {
    const path = line.split(":").slice(2).join(":");
    const m = /\/slurm[^/]*\/(?:[^/]+\/)*job_(\d{1,12})(?:\/|$)/.exec(path) ??
      /\/job_(\d{1,12})\/step_/.exec(path);
    if (m) return m[1];
  }
  return undefined;
}

/**
 * Why `pid` must not move for its owner's job scheduler: a Slurm job's
 * process that leaves its node ends its step there (slurmstepd sees it die),
 * and Slurm neither accounts for it nor reaches it with scancel any more.
 * Empty when nothing keeps it.
 */
export async function schedulerReasons(pid: number): Promise<string[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(`/proc/${pid}/cgroup`);
  } catch {
    return [];
  }
  const job = slurmJobOf(text);
  return job === undefined ? [] : [
    `it belongs to Slurm job ${job}: moving it would end the job's step on this node ` +
    "(Slurm jobs stay where Slurm placed them; see docs/slurm.md)",
  ];
}
