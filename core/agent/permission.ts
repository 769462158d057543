/**
 * Who may make a process managed (movable by the balancer): root, or its
 * owner where the kernel would let the owner trace it (ptrace's rule with
 * real credentials: every uid and gid of the process is the caller's, and
 * the process is dumpable). Some processes are never managed, by anyone.
 *
 * @module
 */
import { EXIT, PpmError } from "../errors.ts";
import type { ProcFacts } from "./procfs.ts";

/** Who asks. */
export interface Caller {
  /** Its uid. */
  uid: number;
  /** Its gid. */
  gid: number;
}

/** The caller of a request on the root-only control socket. */
export const ROOT: Caller = Object.freeze({ uid: 0, gid: 0 });

/**
 * Why `caller` may not manage `target`, or "" when it may. `agentPid` is the
 * agent itself, which never moves.
 */
export function manageRefusal(caller: Caller, target: ProcFacts, agentPid: number): string {
  if (target.kernelThread) return "it is a kernel thread";
  if (target.pid === 1) return "it is init (PID 1)";
  if (target.pid === agentPid) return "it is the ppm agent itself";
  if (target.state === "Z" || target.state === "X") return "it has exited (a zombie)";
  if (caller.uid === 0) return "";
  if (!target.uids.every((u) => u === caller.uid)) {
    return `it belongs to uid ${target.uids[1]}, not to you (uid ${caller.uid})`;
  }
  if (!target.gids.every((g) => g === caller.gid)) {
    return `its groups (${target.gids.join(", ")}) are not all yours (gid ${caller.gid})`;
  }
  if (target.procOwner !== caller.uid) {
    return "it is not dumpable (it changed credentials or asked not to be traced)";
  }
  return "";
}

/** Throws the PpmError for {@link manageRefusal}'s answer, if any. */
export function checkMayManage(caller: Caller, target: ProcFacts, agentPid: number): void {
  const why = manageRefusal(caller, target, agentPid);
  if (!why) return;
  const own = why.startsWith("it belongs") || why.startsWith("its groups") ||
    why.startsWith("it is not dumpable");
  throw new PpmError(
    `cannot manage process ${target.pid} (${target.comm})`,
    why,
    own
      ? "only root or the process's owner (where the kernel would allow ptrace) may manage it"
      : "choose another process",
    own ? EXIT.PERMISSION : EXIT.FAILURE,
  );
}
