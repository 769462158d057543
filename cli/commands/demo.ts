/**
 * `ppm demo`: ppm's main job on a built-in two-node virtual cluster.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";

/** The `demo` command. */
export function demoCommand(): Command {
  return new Command("demo")
    .description("show ppm's main job on a built-in two-node virtual cluster (needs root)")
    .option("--keep", "leave the cluster running afterwards")
    .option("--name <name>", "cluster name", "demo")
    .action(async (o) => {
      const { runDemo } = await import("../../core/demo.ts");
      await runDemo({ keep: o.keep, name: o.name });
    }) as unknown as Command;
}
