/**
 * What the commands that talk to the agent share: where its control socket
 * is (the configuration is loaded when a command runs: see cli/app.ts), and
 * reading a PID argument.
 *
 * @module
 */
import { EXIT, PpmError } from "../../core/errors.ts";

/** The control socket of the configuration (file, PPM_* variables, `--control-socket`). */
export async function socketPath(o: { config?: string; controlSocket?: string }): Promise<string> {
  const { loadConfig } = await import("../../core/config/load.ts");
  return (await loadConfig({ flags: { config: o.config, controlSocket: o.controlSocket } }))
    .controlSocket;
}

/** A PID argument; a PpmError (EXIT.USAGE) when it is not a positive whole number. */
export function parsePid(raw: string): number {
  const pid = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(pid) || pid <= 0) {
    throw new PpmError("invalid PID", raw, "give a positive whole number", EXIT.USAGE);
  }
  return pid;
}

/**
 * A whole number `flag` takes, in `min..max`; a PpmError (EXIT.USAGE)
 * otherwise.
 */
export function parseCount(raw: string, flag: string, min: number, max: number): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new PpmError(`invalid ${flag}`, raw, `give a whole number in ${min}..${max}`, EXIT.USAGE);
  }
  return n;
}
