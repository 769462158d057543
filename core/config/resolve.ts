/**
 * Resolving the configuration from its sources, without I/O: command-line
 * flags win over environment variables, which win over the configuration
 * file, which wins over the defaults. Every value is checked; a bad one is a
 * PpmError (EXIT.USAGE) that names where it came from, e.g.
 * `PPM_PORT=abc: not a port`.
 *
 * @module
 */
import { EXIT, PpmError } from "../errors.ts";
import {
  CONFIG_DEFAULTS,
  type PpmConfig,
  type SettingName,
  SETTINGS,
  type SettingSpec,
} from "./schema.ts";
import { InvalidValue, nodeName } from "./values.ts";

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

/** Flag keys that are not settings but may appear in the flags record. */
const NON_SETTING_FLAGS = new Set(["config"]);

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
}

function distance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return d[b.length];
}

/** "did you mean …? " for the nearest of `known` to `key`, and the full list. */
export function suggest(key: string, known: readonly string[]): string {
  let best = "";
  let bestD = Infinity;
  for (const k of known) {
    const dist = distance(key.toLowerCase(), k.toLowerCase());
    if (dist < bestD) [best, bestD] = [k, dist];
  }
  const near = bestD <= Math.max(2, Math.floor(key.length / 3)) ? `did you mean ${best}? ` : "";
  return `${near}known: ${known.join(", ")}`;
}

function usage(what: string, why: string, fix: string): PpmError {
  return new PpmError(what, why, fix, EXIT.USAGE);
}

function show(raw: unknown): string {
  return typeof raw === "string" ? raw : JSON.stringify(raw) ?? String(raw);
}

function parseFrom(spec: SettingSpec, raw: unknown, text: boolean, label: string): unknown {
  try {
    return spec.parse(raw, text);
  } catch (e) {
    if (e instanceof InvalidValue) throw usage(label, e.why, e.fix);
    throw e;
  }
}

function fileSettings(file: unknown, path: string): Map<SettingSpec, unknown> {
  const out = new Map<SettingSpec, unknown>();
  if (file === undefined) return out;
  if (file === null || typeof file !== "object" || Array.isArray(file)) {
    throw usage(
      `the configuration ${path}`,
      "not a JSON object",
      'write the settings as an object, e.g. {"port": 7377}; see docs/config.md',
    );
  }
  const names = SETTINGS.map((s) => s.name);
  for (const [key, raw] of Object.entries(file)) {
    const spec = SETTINGS.find((s) => s.name === key);
    if (!spec) {
      throw usage(
        `the configuration ${path}`,
        `unknown setting "${key}"`,
        suggest(key, names),
      );
    }
    if (raw === null && spec.nullable) out.set(spec, null);
    else out.set(spec, parseFrom(spec, raw, false, `${key} ${JSON.stringify(raw)} in ${path}`));
  }
  return out;
}

function envSettings(env: Record<string, string | undefined>): Map<SettingSpec, unknown> {
  const out = new Map<SettingSpec, unknown>();
  for (const spec of SETTINGS) {
    const raw = spec.env ? env[spec.env] : undefined;
    if (raw === undefined || raw === "") continue;
    out.set(spec, parseFrom(spec, raw, true, `${spec.env}=${raw}`));
  }
  return out;
}

function flagSettings(flags: Record<string, unknown>): Map<SettingSpec, unknown> {
  const out = new Map<SettingSpec, unknown>();
  const withFlags = SETTINGS.filter((s) => s.flag);
  for (const [key, raw] of Object.entries(flags)) {
    if (raw === undefined || NON_SETTING_FLAGS.has(key)) continue;
    const spec = withFlags.find((s) => s.name === key);
    if (!spec) {
      throw usage(
        `unknown option --${kebab(key)}`,
        "it is not a setting of the node agent",
        suggest(`--${kebab(key)}`, withFlags.map((s) => s.flag!)),
      );
    }
    if ((raw === null || raw === "") && spec.nullable) out.set(spec, null);
    else out.set(spec, parseFrom(spec, raw, true, `${spec.flag} ${show(raw)}`));
  }
  return out;
}

/**
 * The configuration from `inputs` with the source of every value. Throws a
 * PpmError (EXIT.USAGE) for an unknown key in the file or the flags, or a
 * value that does not parse, naming the file key, variable or flag.
 */
export function explainConfig(inputs: ConfigInputs): ExplainedConfig {
  const layers: [SettingSource, Map<SettingSpec, unknown>][] = [
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
    const host = inputs.hostname ?? "localhost";
    try {
      values.nodeName = nodeName(host, true);
    } catch (e) {
      if (!(e instanceof InvalidValue)) throw e;
      throw usage(
        `the hostname "${host}"`,
        "is not a valid node name",
        `set nodeName (--node-name, PPM_NODE_NAME): ${e.fix}`,
      );
    }
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
