/**
 * Resolving the configuration from its sources, without I/O: command-line
 * flags win over environment variables, which win over the configuration
 * file, which wins over the defaults. Every value is checked by its source's
 * schema (sources.ts); a bad one is a PpmError (EXIT.USAGE) that names where
 * it came from, e.g. `PPM_PORT=abc: not a port`.
 *
 * @module
 */
import * as v from "valibot";
import { EXIT, PpmError } from "../errors.ts";
import { CONFIG_DEFAULTS, type PpmConfig, type SettingName } from "./schema.ts";
import { envSettings, fileSettings, flagSettings, type SourceSettings } from "./sources.ts";
import { nodeName } from "./values.ts";

/** Where a resolved value came from. */
export type SettingSource = "default" | "file" | "env" | "flag";

/** The inputs of {@link resolveConfig}. */
export interface ConfigInputs {
  /** The parsed configuration file (a JSON object); undefined when there is none. */
  file?: unknown;
  /** The file's path, for messages. */
  filePath?: string;
  /** Environment variables (PPM_*); others are ignored, and so are empty ones. */
  env: Record<string, string | undefined>;
  /**
   * Command-line flags by setting name ("nodeName" for --node-name), as a
   * parser such as commander gives them; undefined values are ignored and so
   * is "config" (the file's path, see loadConfig). Other keys are refused.
   */
  flags: Record<string, unknown>;
  /** The default node name; "localhost" when not given. */
  hostname?: string;
}

/** A resolved configuration and where each value came from. */
export interface ExplainedConfig {
  /** The configuration. */
  config: PpmConfig;
  /** The source of each setting that has a value. */
  sources: Partial<Record<SettingName, SettingSource>>;
}

/** The default node name: `host`, when it is a valid node name. */
function hostNodeName(host: string): string {
  const r = v.safeParse(nodeName.text, host);
  if (r.success) return r.output;
  throw new PpmError(
    `the hostname "${host}"`,
    "is not a valid node name",
    `set nodeName (--node-name, PPM_NODE_NAME): ${nodeName.fix}`,
    EXIT.USAGE,
  );
}

/**
 * The configuration from `inputs` with the source of every value. Throws a
 * PpmError (EXIT.USAGE) for an unknown key in the file or the flags, or a
 * value that does not parse, naming the file key, variable or flag.
 */
export function explainConfig(inputs: ConfigInputs): ExplainedConfig {
  const layers: [SettingSource, SourceSettings][] = [
    ["file", fileSettings(inputs.file, inputs.filePath ?? "file")],
    ["env", envSettings(inputs.env)],
    ["flag", flagSettings(inputs.flags)],
  ];
  const values: Record<string, unknown> = { ...CONFIG_DEFAULTS };
  const sources: Partial<Record<SettingName, SettingSource>> = {};
  for (const k of Object.keys(CONFIG_DEFAULTS)) sources[k as SettingName] = "default";
  for (const [source, layer] of layers) {
    for (const [spec, value] of layer) {
      values[spec.name] = value;
      sources[spec.name] = source;
    }
  }
  if (values.nodeName === undefined) {
    values.nodeName = hostNodeName(inputs.hostname ?? "localhost");
    sources.nodeName = "default";
  }
  return { config: values as unknown as PpmConfig, sources };
}

/**
 * The configuration from `inputs`: flags > environment > file > defaults.
 * See {@link explainConfig} for the errors.
 */
export function resolveConfig(inputs: ConfigInputs): PpmConfig {
  return explainConfig(inputs).config;
}
