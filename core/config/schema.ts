/**
 * The node agent's settings: their types, defaults, and for each the key in
 * the configuration file, the environment variable and the command-line flag
 * that set it. docs/config.md describes each one.
 *
 * @module
 */
import * as v from "valibot";
import { CONFIG_DEFAULTS, LOG_LEVEL_HELP, LOG_LEVELS, type LogLevel } from "./defaults.ts";
import * as val from "./values.ts";

export {
  CONFIG_DEFAULTS,
  CONFIG_ENV,
  DEFAULT_CONFIG_PATH,
  LOG_LEVEL_HELP,
  LOG_LEVELS,
  type LogLevel,
} from "./defaults.ts";

/** Whether a message of `level` is logged under the setting `threshold` (one of no known level is). */
export function logs(level: string, threshold: LogLevel): boolean {
  return (LOG_LEVELS as readonly string[]).indexOf(level) <= LOG_LEVELS.indexOf(threshold);
}

/** A log level's value kind. */
const LOG_LEVEL: val.ValueKind<LogLevel> = val.oneOf("a log level", LOG_LEVELS);

/** The node agent's configuration, resolved and checked: the type of {@link PpmConfig}. */
export const PpmConfigSchema = v.strictObject({
  /** IPv4 multicast group of the discovery announcements. */
  group: val.multicastGroup.file,
  /** UDP port of the discovery announcements. */
  port: val.port.file,
  /**
   * Interface for multicast, a name ("br0") or one of its IPv4 addresses;
   * null lets the kernel choose by its routing table (the route to the group).
   */
  interface: v.nullable(val.networkInterface.file),
  /** Multicast time-to-live; 1 keeps announcements on the local network. */
  ttl: val.ttl.file,
  /** The IPv4 address peers should use to reach this node; null: the interface's addresses. */
  advertise: v.nullable(val.unicastAddress.file),
  /** This node's name (default: the hostname). */
  nodeName: val.nodeName.file,
  /** The cluster secret file. */
  secretFile: val.filePath.file,
  /** TCP port for incoming migrations. */
  migrationPort: val.port.file,
  /** Seconds between announcements. */
  announceInterval: val.interval.file,
  /** Missed announce intervals after which a peer is dropped. */
  peerExpiry: val.missedIntervals.file,
  /** How much the agent logs. */
  logLevel: LOG_LEVEL.file,
  /** The control socket of the agent (unix socket). */
  controlSocket: val.socketPath.file,
  /** The balancing settings, as given (core/balance/settings.ts checks them); absent when not given. */
  balance: v.optional(val.object.file),
  /** The pre-copy settings, as given (core/migrate/precopy.ts checks them); absent when not given. */
  precopy: v.optional(val.object.file),
});

/** The node agent's configuration, resolved and checked. */
export type PpmConfig = v.InferOutput<typeof PpmConfigSchema>;

/** The name of a setting (a key of {@link PpmConfig}). */
export type SettingName = keyof PpmConfig;

/** How one setting is given and checked. */
export interface SettingSpec {
  /** Key in the file and in the resolved config; also the flags record's key. */
  name: SettingName;
  /** Environment variable; absent when the setting is only read from the file. */
  env?: string;
  /** Command-line flag, e.g. "--node-name"; absent when the setting is only read from the file. */
  flag?: string;
  /** The flag's value placeholder in help text. */
  arg?: string;
  /** The kind of its value: how it is checked in the file and as text, and the fix. */
  value: val.ValueKind<unknown>;
  /** True when null in the file (or the empty string from flags) means "none". */
  nullable?: boolean;
  /** One line for help text. */
  help: string;
}

/** Every setting, in the order of docs/config.md. */
export const SETTINGS: readonly SettingSpec[] = [
  {
    name: "group",
    env: "PPM_GROUP",
    flag: "--group",
    arg: "ADDR",
    value: val.multicastGroup,
    help: `multicast group of the announcements (default ${CONFIG_DEFAULTS.group})`,
  },
  {
    name: "port",
    env: "PPM_PORT",
    flag: "--port",
    arg: "PORT",
    value: val.port,
    help: `UDP port of the announcements (default ${CONFIG_DEFAULTS.port})`,
  },
  {
    name: "interface",
    env: "PPM_INTERFACE",
    flag: "--interface",
    arg: "NAME|ADDR",
    value: val.networkInterface,
    nullable: true,
    help: "interface for multicast (default: the kernel's route to the group)",
  },
  {
    name: "ttl",
    env: "PPM_TTL",
    flag: "--ttl",
    arg: "N",
    value: val.ttl,
    help: `multicast TTL (default ${CONFIG_DEFAULTS.ttl}: the local network only)`,
  },
  {
    name: "advertise",
    env: "PPM_ADVERTISE",
    flag: "--advertise",
    arg: "ADDR",
    value: val.unicastAddress,
    nullable: true,
    help: "address peers use to reach this node (default: the interface's addresses)",
  },
  {
    name: "nodeName",
    env: "PPM_NODE_NAME",
    flag: "--node-name",
    arg: "NAME",
    value: val.nodeName,
    help: "this node's name (default: the hostname)",
  },
  {
    name: "secretFile",
    env: "PPM_SECRET_FILE",
    flag: "--secret-file",
    arg: "FILE",
    value: val.filePath,
    help: `the cluster secret (default ${CONFIG_DEFAULTS.secretFile})`,
  },
  {
    name: "migrationPort",
    env: "PPM_MIGRATION_PORT",
    flag: "--migration-port",
    arg: "PORT",
    value: val.port,
    help: `TCP port for incoming migrations (default ${CONFIG_DEFAULTS.migrationPort})`,
  },
  {
    name: "announceInterval",
    env: "PPM_ANNOUNCE_INTERVAL",
    flag: "--announce-interval",
    arg: "DURATION",
    value: val.interval,
    help: `seconds between announcements, or "250ms" (default ${CONFIG_DEFAULTS.announceInterval})`,
  },
  {
    name: "peerExpiry",
    env: "PPM_PEER_EXPIRY",
    flag: "--peer-expiry",
    arg: "N",
    value: val.missedIntervals,
    help: `missed intervals before a peer is dropped (default ${CONFIG_DEFAULTS.peerExpiry})`,
  },
  {
    name: "logLevel",
    env: "PPM_LOG_LEVEL",
    flag: "--log-level",
    arg: "LEVEL",
    value: LOG_LEVEL,
    help: LOG_LEVEL_HELP,
  },
  {
    name: "controlSocket",
    env: "PPM_CONTROL_SOCKET",
    flag: "--control-socket",
    arg: "PATH",
    value: val.socketPath,
    help: `the agent's control socket (default ${CONFIG_DEFAULTS.controlSocket})`,
  },
  {
    name: "balance",
    value: val.object,
    help: "balancing settings (file only; see docs/balancing.md)",
  },
  {
    name: "precopy",
    value: val.object,
    help: "pre-copy settings of migrations (file only; see docs/migration.md)",
  },
];

/** The spec of setting `name`. */
export function settingSpec(name: SettingName): SettingSpec {
  return SETTINGS.find((s) => s.name === name)!;
}
