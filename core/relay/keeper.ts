/**
 * The relay keeper (keeper.c): a small process beside each migrated-in
 * process that holds its standard stream FIFOs open while the agent that
 * relays them restarts, so the process never sees SIGPIPE or an early end
 * of its input.
 *
 * @module
 */
import { join } from "node:path";
import { kill } from "../../ffi/libc.ts";
import { startTicks } from "../host/proc_stat.ts";
import { helperOnce, type HelperSource } from "../host/helper_binary.ts";
import { PROJECT_ROOT } from "../paths.ts";

/** The keeper's source. */
export const KEEPER_SRC = join(PROJECT_ROOT, "core", "relay", "keeper.c");

/** keeper.c's exit codes. */
export const KEEPER_EXIT = { OK: 0, FAILED: 1, USAGE: 2, NO_PROCESS: 3 } as const;

/** The keeper's source (a package ships it with the keeper built: packaging/package.ts). */
export const KEEPER_HELPER: HelperSource = {
  src: KEEPER_SRC,
  name: "ppm-relay-keeper",
  what: "the relay keeper",
};

/** Path of the built keeper (built once per process when needed). */
export const ensureKeeper: () => Promise<string> = helperOnce(KEEPER_HELPER);

/** The FIFOs a keeper holds (absent: not held). */
export interface KeptFifos {
  /** The process's stdout FIFO (the keeper holds a read end). */
  stdout?: string;
  /** Its stderr FIFO (a read end). */
  stderr?: string;
  /** Its stdin FIFO (a write end, until {@link endKeptInput}). */
  stdin?: string;
}

/**
 * Starts a keeper for process `pid` holding `fifos`; returns its PID. It
 * leaves the agent's session at once and ends with the process.
 */
export async function startKeeper(pid: number, fifos: KeptFifos): Promise<number> {
  const bin = await ensureKeeper();
  const child = new Deno.Command(bin, {
    args: [String(pid), fifos.stdout ?? "-", fifos.stderr ?? "-", fifos.stdin ?? "-"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
    clearEnv: true,
  }).spawn();
  // Reaped here while this agent lives; a later agent is not its parent.
  child.status.catch(() => {});
  child.unref();
  return child.pid;
}

/** A keeper: its PID and start time (clock ticks after boot, as /proc shows it). */
export interface KeeperId {
  /** Its PID. */
  pid: number;
  /** Field 22 of /proc/PID/stat when it started; tells it from a later process with its PID. */
  startTicks: string;
}

/** The keeper's identity, read right after it started ("" start time: it ended already). */
export function keeperId(pid: number): KeeperId {
  return { pid, startTicks: startTicks(pid) };
}

/**
 * Tells keeper `k` that the input ended: it lets go of the stdin FIFO. Only
 * the keeper itself gets the signal, never a later process with its PID.
 */
export function endKeptInput(k: KeeperId): void {
  if (!k.startTicks || startTicks(k.pid) !== k.startTicks) return; // it ended with its process
  try {
    kill(k.pid, 10); // SIGUSR1
  } catch { /* it just ended */ }
}
