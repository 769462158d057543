/**
 * Commands in the benchmark's guests, each bounded in time: run, run and
 * require success, and poll a shell condition.
 *
 * @module
 */
import { guestExec } from "../../core/vcluster/client.ts";
import type { ClusterState } from "../../core/vcluster/cluster.ts";
import { nodeName } from "../../core/vcluster/spec.ts";

/** Output of a guest command. */
export interface GuestResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The guests of one running cluster. */
export class Guests {
  constructor(readonly state: ClusterState) {}

  /** Runs argv as root on node `n` (1-based), killed after `timeoutMs` (default 120 s). */
  exec(n: number, argv: string[], timeoutMs = 120_000): Promise<GuestResult> {
    return guestExec(this.state.runDir, n, argv, { timeoutMs, cwd: "/" });
  }

  /** Runs a shell script on node `n`. */
  sh(n: number, script: string, timeoutMs = 120_000): Promise<GuestResult> {
    return this.exec(n, ["sh", "-c", script], timeoutMs);
  }

  /** Runs a shell script on node `n`; throws with its output when it fails. */
  async ok(n: number, script: string, timeoutMs = 120_000): Promise<string> {
    const r = await this.sh(n, script, timeoutMs);
    if (r.code !== 0) {
      throw new Error(
        `${nodeName(n)}: \`${script.slice(0, 300)}\` exited ${r.code}\n${r.stdout}\n${r.stderr}`
          .trim(),
      );
    }
    return r.stdout;
  }

  /** Polls shell test `cond` on node `n` every 0.2 s for at most `seconds`; throws if it never holds. */
  async waitFor(n: number, cond: string, seconds: number, what = cond): Promise<void> {
    const tries = Math.ceil(seconds * 5);
    const loop =
      `n=0; while ! (${cond}) && [ $n -lt ${tries} ]; do sleep 0.2; n=$((n+1)); done; ${cond}`;
    const r = await this.sh(n, loop, (seconds + 30) * 1000);
    if (r.code !== 0) {
      throw new Error(`${nodeName(n)}: timed out after ${seconds} s waiting for ${what}`);
    }
  }
}
