/**
 * `ppm run [--name N] -- CMD ARGS...`: runs a command as a managed process,
 * like running it directly (same stdin, stdout, stderr, exit code), except
 * that the balancer may move it to another node while it runs.
 *
 * The CLI starts the command itself, so it inherits the caller's streams,
 * and registers its PID with the agent as managed. While the process runs
 * here, `ppm run` waits for it as its parent. When it moves, its copy here
 * ends (SIGKILL) and its output keeps reaching the same streams through the
 * agent's relay; `ppm run` then asks the agent until the process has ended
 * on whatever node it runs, and exits with its exit code (128 + signal for a
 * signal), which comes back along the way it moved.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { shellCode } from "../../core/agent/exits.ts";
import type { WaitAnswer } from "../../core/agent/ops.ts";
import { EXIT, PpmError } from "../../core/errors.ts";
import { socketPath } from "./agent_socket.ts";

const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
const SIGNO: Record<(typeof SIGNALS)[number], number> = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };

/** How `ppm run` ends, from how its child ended and what the agent says. */
export function runExitCode(
  child: { code: number; signal: string | null },
  moved: WaitAnswer | null,
): { code: number; note?: string } {
  if (child.signal !== "SIGKILL" || !moved) return { code: child.code };
  switch (moved.state) {
    case "exited": {
      const code = shellCode(moved.exit);
      return code === null
        ? {
          code: EXIT.RUN_FAILED,
          note: `it ended on ${moved.exit.node}; its exit status is not known`,
        }
        : { code };
    }
    case "ended":
      return {
        code: EXIT.RUN_FAILED,
        note: `it ran on ${moved.node}; its output ended but how it ended did not come back ` +
          "(its node or agent went away?)",
      };
    default:
      return { code: child.code }; // killed here
  }
}

/** `p`, with any PpmError it fails with told as ppm run's own failure (exit 125). */
async function asRunFailure<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    if (!(e instanceof PpmError) || e.exitCode >= EXIT.RUN_FAILED) throw e;
    throw new PpmError(e.what, e.why, e.fix, EXIT.RUN_FAILED, e.details);
  }
}

/** Requests in a row that may go unanswered before `ppm run` gives up on the agent. */
const WAIT_RETRIES = 5;

async function waitElsewhere(path: string, pid: number): Promise<WaitAnswer> {
  const { controlRequest, UNANSWERED } = await import("../../core/agent/control.ts");
  // One request waits at most 30 s; the process's end (or its node's) ends the loop. A wait
  // asks and changes nothing, so a request the agent dropped (it was restarted, or so busy
  // that the request's deadline passed before it read it) is asked again.
  let unanswered = 0;
  for (;;) {
    let a: WaitAnswer;
    try {
      a = await controlRequest(path, { op: "wait", pid, timeoutMs: 30_000 }, 90_000) as WaitAnswer;
    } catch (e) {
      if (!(e instanceof PpmError) || e.what !== UNANSWERED) throw e;
      if (++unanswered >= WAIT_RETRIES) throw e;
      await new Promise((r) => setTimeout(r, 1000));
      continue;
    }
    unanswered = 0;
    if (a.state !== "elsewhere") return a;
  }
}

/** The `ppm run` command. */
export function runCommand(): Command {
  return new Command("run")
    .description(
      "run a command as a managed process: like running it directly, but the balancer may move it",
    )
    .usage("[options] -- <command> [args...]")
    .argument("<command>", "the program")
    .argument("[args...]", "its arguments")
    .option("--name <name>", "a name to show in ppm ps (default: the command name)")
    .option("--config <file>", "configuration file")
    .option("--control-socket <path>", "the agent's control socket")
    .passThroughOptions()
    .action(async (cmd, args, o) => {
      const path = await asRunFailure(socketPath(o));
      const { controlRequest } = await import("../../core/agent/control.ts");
      // No agent, no managed process: fail before starting anything.
      await asRunFailure(controlRequest(path, { op: "status" }, 10_000));
      let child: Deno.ChildProcess;
      try {
        child = new Deno.Command(cmd, {
          args,
          stdin: "inherit",
          stdout: "inherit",
          stderr: "inherit",
        })
          .spawn();
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) {
          throw new PpmError(
            `cannot run ${cmd}`,
            "no such command",
            "check the name and PATH",
            EXIT.RUN_NOT_FOUND,
          );
        }
        throw new PpmError(
          `cannot run ${cmd}`,
          (e as Error).message,
          "check that it is an executable file this user may run",
          EXIT.RUN_CANNOT_EXECUTE,
        );
      }
      let moved = false;
      const forward = new Map<string, () => void>();
      for (const sig of SIGNALS) {
        const h = () => {
          if (!moved) {
            try {
              child.kill(sig);
            } catch { /* ended */ }
            return;
          }
          console.error(
            `ppm: process ${child.pid} runs on another node and goes on; stop it there (ppm ps)`,
          );
          Deno.exit(128 + SIGNO[sig]);
        };
        forward.set(sig, h);
        Deno.addSignalListener(sig, h);
      }
      try {
        try {
          await controlRequest(path, { op: "manage", pid: child.pid, name: o.name, by: "run" });
        } catch (e) {
          child.kill("SIGTERM");
          await child.status;
          return await asRunFailure(Promise.reject(e));
        }
        const st = await child.status;
        moved = st.signal === "SIGKILL";
        const answer = moved ? await asRunFailure(waitElsewhere(path, child.pid)) : null;
        const end = runExitCode(st, answer);
        if (end.note) console.error(`ppm: process ${child.pid}: ${end.note}`);
        Deno.exitCode = end.code;
      } finally {
        for (const [sig, h] of forward) Deno.removeSignalListener(sig as Deno.Signal, h);
      }
    }) as unknown as Command;
}
