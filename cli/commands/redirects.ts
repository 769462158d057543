/**
 * `ppm redirects`: this node's redirect table.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { report } from "../output.ts";

/** `ppm redirects [--json]`. */
export function redirectsCommand(): Command {
  return new Command("redirects")
    .description(
      "show this node's redirect table: migrated flows, their old and new endpoints, counters, age",
    )
    .option("--json", "print the entries as JSON")
    .option("--clear", "remove every entry (the connections they carry break)")
    .action(async (o) => {
      const { deleteRedirect, formatRedirect, listRedirects } = await import(
        "../../core/redirect/table.ts"
      );
      if (o.clear) {
        const n = deleteRedirect("all");
        report(o.json, { removed: n }, (d) => `removed ${d.removed} redirects`);
        return;
      }
      const list = listRedirects();
      report(
        o.json,
        list,
        (d) =>
          d.length === 0 ? "no redirects" : [
            "  id proto action  peer  old -> new  state  counters  age",
            ...d.map(formatRedirect),
          ].join("\n"),
      );
    }) as unknown as Command;
}
