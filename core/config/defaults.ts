/**
 * The settings' defaults and the names help text shows, apart from their
 * schemas (core/config/schema.ts, which re-exports all of this): the CLI's
 * command tree is built on every run of `ppm`, and reads them without
 * loading the schemas and their validation library.
 *
 * @module
 */
import type { PpmConfig } from "./schema.ts";

/** How much the agent logs. */
export type LogLevel = "error" | "warn" | "info" | "debug";

/** The log levels, least verbose first. */
export const LOG_LEVELS: readonly LogLevel[] = ["error", "warn", "info", "debug"];

/** The configuration file read when none is named. */
export const DEFAULT_CONFIG_PATH = "/etc/ppm/ppm.json";

/** The environment variable naming the configuration file (like `--config`). */
export const CONFIG_ENV = "PPM_CONFIG";

/** The defaults of every setting but nodeName (the hostname), balance and precopy (absent). */
export const CONFIG_DEFAULTS: Readonly<Omit<PpmConfig, "nodeName" | "balance" | "precopy">> = Object
  .freeze({
    group: "239.77.0.1",
    port: 7377,
    interface: null,
    ttl: 1,
    advertise: null,
    secretFile: "/etc/ppm/secret",
    migrationPort: 7378,
    announceInterval: 1,
    peerExpiry: 3,
    logLevel: "info",
    controlSocket: "/run/ppm/ppm.sock",
  });

/** The help line of the log level setting (`ppm daemon --log-level`). */
export const LOG_LEVEL_HELP = `${LOG_LEVELS.slice(0, -1).join(", ")} or ${
  LOG_LEVELS.at(-1)
} (default ${CONFIG_DEFAULTS.logLevel})`;
