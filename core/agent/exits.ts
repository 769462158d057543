/**
 * How a migrated process ended, told back along the way it came: the agent
 * where it ended collects its exit (it is that process's parent) and sends
 * `{op: "exited"}` on the connection from the node it came from; each agent
 * on the way records it and passes it on, so the node where it started (and
 * a `ppm run` waiting there) learns its exit code. The message's schema is
 * core/migrate/message_schemas.ts.
 *
 * @module
 */
import type { WaitStatus } from "../../ffi/libc.ts";
import type { ExitMessage } from "../migrate/messages.ts";
import type { ExitStatus } from "./processes.ts";

/** The exit status of an {@link ExitMessage}. */
export function toExitStatus(m: ExitMessage): ExitStatus {
  const out: ExitStatus = { node: m.node, at: new Date().toISOString() };
  if (Number.isInteger(m.code)) out.code = m.code;
  if (Number.isInteger(m.signal)) out.signal = m.signal;
  return out;
}

/** How a decoded wait status ended the process: an exit code or a terminating signal ({} for a stop). */
export function exitOf(w: WaitStatus): { code?: number; signal?: number } {
  if (w.exited) return { code: w.code };
  if (w.signaled) return { signal: w.signal };
  return {};
}

/** The exit code a shell gives for `exit`: the code, or 128 + the signal; null when unknown. */
export function shellCode(exit: { code?: number; signal?: number }): number | null {
  if (exit.code !== undefined) return exit.code;
  if (exit.signal !== undefined) return 128 + exit.signal;
  return null;
}
