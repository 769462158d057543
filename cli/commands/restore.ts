/**
 * `ppm restore`: bring a checkpointed process back, with its PID.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { report } from "../output.ts";

/** The `restore` command. */
export function restoreCommand(): Command {
  return new Command("restore")
    .description("restore a process from an image, with the same PID; prints the PID")
    .argument("<file>", "image written by ppm checkpoint")
    .option("--stdout <path>", "send the process's stdout (a tty or pipe before) to this file")
    .option("--stderr <path>", "send the process's stderr (a tty or pipe before) to this file")
    .option("--json", "print the PID and per-phase times in µs as JSON")
    .action(async (file, o) => {
      const { restore } = await import("../../core/restore/restore.ts");
      const r = await restore(file, { stdout: o.stdout, stderr: o.stderr });
      report(o.json, r, (d) => String(d.pid));
    }) as unknown as Command;
}
