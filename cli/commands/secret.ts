/**
 * `ppm secret`: the cluster secret that authenticates nodes to each other.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { report } from "../output.ts";

/** The `secret` command tree. */
export function secretCommand(): Command {
  const cmd = new Command("secret").description("the cluster secret shared by every node");
  cmd.command("generate")
    .description(
      "write a new random secret (mode 0600); copy it to every node, e.g. /etc/ppm/secret",
    )
    .requiredOption("-o, --output <file>", "where to write it (must not exist)")
    .option("--json", "print the result as JSON")
    .action(async (o) => {
      const { generateSecret } = await import("../../core/security/secret.ts");
      await generateSecret(o.output);
      report(
        o.json,
        { written: o.output },
        (d) => `wrote a new cluster secret to ${d.written} (mode 0600)`,
      );
    });
  return cmd as unknown as Command;
}
