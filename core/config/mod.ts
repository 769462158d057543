/**
 * The node agent's configuration: /etc/ppm/ppm.json (or --config), PPM_*
 * environment variables and flags; flags > env > file > defaults.
 * docs/config.md lists every setting.
 *
 * @module
 */
export * from "./load.ts";
export * from "./resolve.ts";
export * from "./schema.ts";
export { suggest } from "./suggest.ts";
export {
  MAX_INTERVAL,
  MAX_SOCKET_PATH,
  MIN_INTERVAL,
  type ValueKind,
  type ValueSchema,
} from "./values.ts";
