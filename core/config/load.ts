/**
 * Loading the node agent's configuration: reads the file named by
 * `--config` (or PPM_CONFIG, else /etc/ppm/ppm.json) and resolves it with the
 * environment and the flags (see resolve.ts).
 *
 * @module
 */
import * as v from "valibot";
import { EXIT, PpmError } from "../errors.ts";
import { explainConfig, type ExplainedConfig } from "./resolve.ts";
import { CONFIG_ENV, DEFAULT_CONFIG_PATH, type PpmConfig } from "./schema.ts";

/** The largest configuration file read, in bytes. */
export const MAX_CONFIG_BYTES = 1 << 20;

/** The `--config` flag: a non-empty path; null or undefined when not given. */
const ConfigFlagSchema = v.nullish(v.pipe(v.string(), v.nonEmpty()));

/** What {@link readConfigFile} found. */
export interface ConfigFile {
  /** The path read, or null when the default file does not exist. */
  path: string | null;
  /** The parsed JSON; undefined when no file was read. */
  file: unknown;
}

/** Options of {@link loadConfig}. */
export interface LoadConfigOptions {
  /** Command-line flags by setting name; `config` names the file. Default none. */
  flags?: Record<string, unknown>;
  /** Environment variables; default the process's. */
  env?: Record<string, string | undefined>;
  /** The default node name; default the hostname. */
  hostname?: string;
  /** The file read when none is named; default {@link DEFAULT_CONFIG_PATH}. */
  defaultPath?: string;
}

/**
 * The file to read: `flags.config`, else PPM_CONFIG, else the default; an
 * explicit path must exist, the default may be missing.
 */
export function configPath(
  flags: Record<string, unknown>,
  env: Record<string, string | undefined>,
  defaultPath: string = DEFAULT_CONFIG_PATH,
): { path: string; explicit: boolean; label: string } {
  const flag = v.safeParse(ConfigFlagSchema, flags.config);
  if (!flag.success) {
    throw new PpmError(
      `--config ${JSON.stringify(flags.config)}`,
      "not a file path",
      "give the path of a JSON file",
      EXIT.USAGE,
    );
  }
  if (flag.output != null) return { path: flag.output, explicit: true, label: "--config" };
  const fromEnv = env[CONFIG_ENV];
  if (fromEnv) return { path: fromEnv, explicit: true, label: CONFIG_ENV };
  return { path: defaultPath, explicit: false, label: "the default" };
}

/** Reads and parses the configuration file chosen by {@link configPath}. */
export async function readConfigFile(
  flags: Record<string, unknown>,
  env: Record<string, string | undefined>,
  defaultPath: string = DEFAULT_CONFIG_PATH,
): Promise<ConfigFile> {
  const { path, explicit, label } = configPath(flags, env, defaultPath);
  let bytes: Uint8Array;
  try {
    const st = await Deno.stat(path);
    if (!st.isFile) {
      throw new PpmError(
        `cannot read the configuration ${path}`,
        "it is not a regular file",
        `give the path of a JSON file (${label})`,
        EXIT.USAGE,
      );
    }
    if (st.size > MAX_CONFIG_BYTES) {
      throw new PpmError(
        `cannot read the configuration ${path}`,
        `it is ${st.size} bytes, more than the ${MAX_CONFIG_BYTES} allowed`,
        "is it the right file?",
        EXIT.USAGE,
      );
    }
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof PpmError) throw e;
    if (e instanceof Deno.errors.NotFound) {
      if (!explicit) return { path: null, file: undefined };
      throw new PpmError(
        `cannot read the configuration ${path}`,
        "the file does not exist",
        `check the path given by ${label}, or create the file (see docs/config.md)`,
        EXIT.MISSING,
      );
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new PpmError(
        `cannot read the configuration ${path}`,
        "permission denied",
        "run as root, or make the file readable by this user",
        EXIT.PERMISSION,
      );
    }
    throw new PpmError(`cannot read the configuration ${path}`, (e as Error).message);
  }
  try {
    return { path, file: JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes)) };
  } catch (e) {
    throw new PpmError(
      `cannot parse the configuration ${path}`,
      `it is not valid JSON: ${(e as Error).message}`,
      "fix the syntax; JSON allows no comments and no trailing commas",
      EXIT.USAGE,
    );
  }
}

/**
 * The node agent's configuration: the file (see {@link readConfigFile}), then
 * PPM_* variables, then flags. Throws a PpmError for a missing explicit file
 * (EXIT.MISSING), an unreadable one (EXIT.PERMISSION), bad JSON or a bad value
 * (EXIT.USAGE).
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<PpmConfig> {
  return (await loadExplainedConfig(options)).config;
}

/** {@link loadConfig}, with where each value came from and the file read (null: none). */
export async function loadExplainedConfig(
  options: LoadConfigOptions = {},
): Promise<ExplainedConfig & { file: string | null }> {
  const flags = options.flags ?? {};
  const env = options.env ?? Deno.env.toObject();
  const { path, file } = await readConfigFile(flags, env, options.defaultPath);
  const explained = explainConfig({
    file,
    filePath: path ?? undefined,
    env,
    flags,
    hostname: options.hostname ?? Deno.hostname(),
  });
  return { ...explained, file: path ?? null };
}
