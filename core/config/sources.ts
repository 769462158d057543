/**
 * The settings each source gives, checked by its schema: the configuration
 * file (JSON types, no unknown key), the PPM_* environment variables and the
 * command-line flags (text; no unknown flag). A bad value is a PpmError
 * (EXIT.USAGE) that names where it came from and the value, says why it is
 * wrong and what to give instead, e.g. `PPM_PORT=abc: not a port`. When a
 * source has several faults, the first in its own order is reported.
 *
 * @module
 */
import * as v from "valibot";
import { EXIT, PpmError } from "../errors.ts";
import { SETTINGS, type SettingSpec } from "./schema.ts";
import { suggest } from "./suggest.ts";
import { isObject } from "./values.ts";

/** The values one source gives, by setting, in the source's order. */
export type SourceSettings = Map<SettingSpec, unknown>;

type Issue = v.BaseIssue<unknown>;

/** Flag keys that are not settings but may appear in the flags record. */
const NON_SETTING_FLAGS = new Set(["config"]);

/** The settings that have an environment variable, and those that have a flag. */
const WITH_ENV = SETTINGS.filter((s) => s.env);
const WITH_FLAG = SETTINGS.filter((s) => s.flag);

/**
 * A setting's check in one source: absent is fine, but a key that is there
 * must hold a good value (undefined is not one); null means none where allowed.
 */
function entry(spec: SettingSpec, how: "file" | "text") {
  const value = spec.value[how];
  return v.exactOptional(spec.nullable ? v.nullable(value) : value);
}

/** The configuration file: an object of settings, each optional, and nothing else. */
const FileSchema = v.pipe(
  v.custom<Record<string, unknown>>(isObject, "not a JSON object"),
  v.strictObject(Object.fromEntries(SETTINGS.map((s) => [s.name, entry(s, "file")]))),
);

/** The PPM_* variables, each optional; other variables are not looked at. */
const EnvSchema = v.object(Object.fromEntries(WITH_ENV.map((s) => [s.env!, entry(s, "text")])));

/** The flags by setting name, each optional (null for none where allowed); no others. */
const FlagsSchema = v.strictObject(
  Object.fromEntries(WITH_FLAG.map((s) => [s.name, entry(s, "text")])),
);

function usage(what: string, why: string, fix: string): PpmError {
  return new PpmError(what, why, fix, EXIT.USAGE);
}

/** "nodeName" → "node-name". */
function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
}

/** A flag's value as the message shows it. */
function show(raw: unknown): string {
  return typeof raw === "string" ? raw : JSON.stringify(raw) ?? String(raw);
}

/** The key of the input object an issue is about; undefined for the object itself. */
function keyOf(issue: Issue): string | undefined {
  const key = issue.path?.[0]?.key;
  return key === undefined ? undefined : String(key);
}

/** Whether `issue` is about a key the schema does not know. */
function isUnknownKey(issue: Issue): boolean {
  return issue.type === "strict_object" && issue.path?.[0]?.origin === "key";
}

/** The issue first in `order` (the input's keys); one about the whole input comes before all. */
function firstIssue(issues: readonly Issue[], order: readonly string[]): Issue {
  const rank = (i: Issue) => {
    const key = keyOf(i);
    return key === undefined ? -1 : order.indexOf(key);
  };
  return issues.reduce((a, b) => (rank(b) < rank(a) ? b : a));
}

/** The spec of the setting `name` (one the schema knows). */
function specNamed(name: string): SettingSpec {
  return SETTINGS.find((s) => s.name === name)!;
}

/** `output`'s values of the settings named in `order`, in that order. */
function inOrder(
  output: Record<string, unknown>,
  order: readonly string[],
  spec: (key: string) => SettingSpec,
): SourceSettings {
  const out: SourceSettings = new Map();
  for (const key of order) if (Object.hasOwn(output, key)) out.set(spec(key), output[key]);
  return out;
}

/** The error of a configuration file's `issue`: not an object, an unknown key, or a bad value. */
function fileError(issue: Issue, file: Record<string, unknown>, path: string): PpmError {
  const key = keyOf(issue);
  if (key === undefined) {
    return usage(
      `the configuration ${path}`,
      issue.message,
      'write the settings as an object, e.g. {"port": 7377}; see docs/config.md',
    );
  }
  if (isUnknownKey(issue)) {
    return usage(
      `the configuration ${path}`,
      `unknown setting "${key}"`,
      suggest(key, SETTINGS.map((s) => s.name)),
    );
  }
  const raw = file[key];
  return usage(`${key} ${JSON.stringify(raw)} in ${path}`, issue.message, specNamed(key).value.fix);
}

/** The settings in the parsed configuration file `file` (none when undefined), read from `path`. */
export function fileSettings(file: unknown, path: string): SourceSettings {
  if (file === undefined) return new Map();
  const r = v.safeParse(FileSchema, file);
  const order = isObject(file) ? Object.keys(file) : [];
  if (!r.success) {
    throw fileError(firstIssue(r.issues, order), file as Record<string, unknown>, path);
  }
  return inOrder(r.output, order, specNamed);
}

/** The settings in the PPM_* variables of `env`; empty ones are unset. */
export function envSettings(env: Record<string, string | undefined>): SourceSettings {
  const given: Record<string, string> = Object.fromEntries(
    WITH_ENV.flatMap((s) => {
      const raw = env[s.env!];
      return raw === undefined || raw === "" ? [] : [[s.env!, raw]];
    }),
  );
  const r = v.safeParse(EnvSchema, given);
  if (!r.success) {
    const issue = r.issues[0];
    const name = keyOf(issue)!;
    const spec = WITH_ENV.find((s) => s.env === name)!;
    throw usage(`${name}=${given[name]}`, issue.message, spec.value.fix);
  }
  return inOrder(r.output, Object.keys(given), (name) => WITH_ENV.find((s) => s.env === name)!);
}

/** A flag's value as checked: an empty one clears a nullable setting (null). */
function flagValue(key: string, raw: unknown): unknown {
  return raw === "" && WITH_FLAG.some((s) => s.name === key && s.nullable) ? null : raw;
}

/** The error of a flags record's `issue`: an unknown flag, or a bad value. */
function flagError(issue: Issue, flags: Record<string, unknown>): PpmError {
  const key = keyOf(issue)!;
  if (isUnknownKey(issue)) {
    return usage(
      `unknown option --${kebab(key)}`,
      "it is not a setting of the node agent",
      suggest(`--${kebab(key)}`, WITH_FLAG.map((s) => s.flag!)),
    );
  }
  const spec = specNamed(key);
  return usage(`${spec.flag} ${show(flags[key])}`, issue.message, spec.value.fix);
}

/**
 * The settings in `flags`, by setting name as a parser such as commander
 * gives them; undefined values and "config" are skipped, and an empty value
 * clears a nullable setting (null).
 */
export function flagSettings(flags: Record<string, unknown>): SourceSettings {
  const given: Record<string, unknown> = Object.fromEntries(
    Object.entries(flags)
      .filter(([key, raw]) => raw !== undefined && !NON_SETTING_FLAGS.has(key))
      .map(([key, raw]) => [key, flagValue(key, raw)]),
  );
  const order = Object.keys(given);
  const r = v.safeParse(FlagsSchema, given);
  if (!r.success) throw flagError(firstIssue(r.issues, order), flags);
  return inOrder(r.output, order, specNamed);
}
