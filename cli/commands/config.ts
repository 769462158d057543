/**
 * `ppm config show`: the agent's effective configuration, and where each
 * value came from (default, the file, a PPM_* variable).
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { CONFIG_ENV, DEFAULT_CONFIG_PATH } from "../../core/config/defaults.ts";
import type { SettingName } from "../../core/config/schema.ts";
import { report } from "../output.ts";

/** One line of the table: setting, value, source. */
export interface ShownSetting {
  /** The setting's key (in the file and the JSON output). */
  name: string;
  /** Its effective value. */
  value: unknown;
  /** "default", "file PATH", "env PPM_X" or "flag --x". */
  from: string;
}

/** The `config` command tree. */
export function configCommand(): Command {
  const cmd = new Command("config").description("the agent's configuration (docs/config.md)");
  cmd.command("show")
    .description("print the effective configuration and where each value came from")
    .option(
      "--config <file>",
      `configuration file (default $${CONFIG_ENV} or ${DEFAULT_CONFIG_PATH})`,
    )
    .option("--json", "print it as JSON")
    .action(async (o) => {
      const { loadExplainedConfig } = await import("../../core/config/load.ts");
      const { SETTINGS } = await import("../../core/config/schema.ts");
      const e = await loadExplainedConfig({ flags: { config: o.config } });
      const settings: ShownSetting[] = Object.keys(e.config).map((name) => {
        const spec = SETTINGS.find((s) => s.name === name);
        const src = e.sources[name as SettingName] ?? (name === "balance" ? "file" : "default");
        const from = src === "file"
          ? `file ${e.file}`
          : src === "env"
          ? `env ${spec?.env}`
          : src === "flag"
          ? `flag ${spec?.flag}`
          : name === "nodeName"
          ? "default (the hostname)"
          : "default";
        return { name, value: (e.config as unknown as Record<string, unknown>)[name], from };
      });
      report(o.json, { file: e.file, settings }, (d) => {
        const w = Math.max(...d.settings.map((s) => s.name.length));
        const shown = d.settings.map((s) => {
          const v = JSON.stringify(s.value);
          return `${s.name.padEnd(w)}  ${
            v.length > 60 ? v.slice(0, 57) + "..." : v.padEnd(30)
          }  ${s.from}`;
        });
        return [`configuration file: ${d.file ?? "none"}`, ...shown].join("\n");
      });
    });
  return cmd as unknown as Command;
}
