/** A Slurm job's processes are recognised by their cgroup, and stay where Slurm put them. */
import { slurmJobOf } from "../../core/host/cgroup.ts";
import { assertEquals } from "../support/assert.ts";

Deno.test("cgroup: Slurm job processes, v2 and v1; others and hostile paths are not", () => {
  assertEquals(
    slurmJobOf("0::/system.slice/slurmstepd.scope/job_4711/step_0/user/task_0\n"),
    "4711",
  );
  assertEquals(slurmJobOf("0::/system.slice/slurmstepd.scope/job_12/step_batch/user/task_0"), "12");
  assertEquals(
    slurmJobOf("12:freezer:/slurm/uid_1000/job_99/step_0\n4:memory:/slurm/uid_1000/job_99/step_0"),
    "99",
  );
  for (
    const t of [
      "0::/system.slice/ppm.service\n",
      "0::/user.slice/user-1000.slice/session-3.scope\n",
      "0::/job_x/step_0",
      "0::/myjob_12/other\n",
      "",
      "garbage",
    ]
  ) assertEquals(slurmJobOf(t), undefined, t);
});
