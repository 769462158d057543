/**
 * `ppm demo`: ppm's main job on a built-in two-node virtual cluster.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { runDemo } from "../../core/demo.ts";

/** The `demo` command. */
export function demoCommand(): Command {
  return new Command("demo")
    .description("show ppm's main job on a built-in two-node virtual cluster (needs root)")
    .option("--keep", "leave the cluster running afterwards")
    .option("--name <name>", "cluster name", "demo")
    .action(async (o) => {
      await runDemo({ keep: o.keep, name: o.name });
    }) as unknown as Command;
}
