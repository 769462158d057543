/**
 * Fault injection for testing that a failed migration loses nothing, in the
 * spirit of CRIU's CRIU_FAULT: the agent reads `PPM_FAULT` (a comma-separated
 * list of point names) once, and at each named point fails on purpose. Only
 * whoever starts the agent (root) can arm it, and the agent logs a warning
 * when it is armed.
 *
 * Points (all on the destination of a migration):
 *
 * - `image-stall`: stop reading the image for {@link STALL_MS} after its
 *   first chunk (a test cuts the link meanwhile);
 * - `crash-mid-image`: the agent dies (SIGKILL) after the first image chunk;
 * - `restore`: the restore fails after the process's memory was replaced;
 * - `crash-before-commit`: the agent dies after reporting the process
 *   restored, before the source's commit.
 *
 * @module
 */
import { EXIT, PpmError } from "./errors.ts";

/** The points that can be armed. */
export const FAULT_POINTS = [
  "image-stall",
  "crash-mid-image",
  "restore",
  "crash-before-commit",
] as const;

/** A fault point's name. */
export type FaultPoint = typeof FAULT_POINTS[number];

/** How long `image-stall` stops reading. */
export const STALL_MS = 60_000;

let armed: Set<string> | undefined;

/** The points armed by `PPM_FAULT` (read once); unknown names are an error. */
export function armedFaults(): ReadonlySet<string> {
  if (!armed) {
    const raw = Deno.env.get("PPM_FAULT") ?? "";
    const names = raw.split(",").map((s) => s.trim()).filter(Boolean);
    const bad = names.filter((n) => !(FAULT_POINTS as readonly string[]).includes(n));
    if (bad.length) {
      throw new PpmError(
        `unknown fault point ${bad.join(", ")} in PPM_FAULT`,
        `the points are ${FAULT_POINTS.join(", ")}`,
        "unset PPM_FAULT outside tests",
        EXIT.USAGE,
      );
    }
    armed = new Set(names);
  }
  return armed;
}

/** True when `point` is armed. */
export function faultArmed(point: FaultPoint): boolean {
  return armedFaults().has(point);
}

/**
 * Fails at `point` when it is armed: the crash points kill this process
 * with SIGKILL (nothing is cleaned up, as in a real crash), `restore`
 * throws, `image-stall` waits.
 */
export async function fault(point: FaultPoint): Promise<void> {
  if (!faultArmed(point)) return;
  if (point.startsWith("crash-")) {
    console.error(`ppm: injected fault ${point}: this agent dies now`);
    Deno.kill(Deno.pid, "SIGKILL");
  }
  if (point === "image-stall") {
    await new Promise((r) => setTimeout(r, STALL_MS));
    return;
  }
  throw new PpmError(`injected fault ${point}`, "PPM_FAULT asked for it", "unset PPM_FAULT");
}
