/**
 * The balancing settings: their defaults and the validation of the values a
 * user gives (a settings file, command-line options).
 *
 * @module
 */
import { EXIT, PpmError } from "../errors.ts";

/**
 * The default settings. Loads are normalised: runnable tasks per CPU of
 * reference speed (1 = every CPU busy). Times are in seconds.
 */
export const DEFAULT_BALANCE_SETTINGS = Object.freeze({
  /** Seconds between load announcements and between decision rounds. Default 1. */
  interval: 1,
  /**
   * A node becomes overloaded, and looks for somewhere to send work, when its local
   * load rises above this. Default 1 (more runnable tasks than CPUs).
   */
  busyLoad: 1,
  /**
   * An overloaded node stops looking when its local load falls below this; the gap to
   * busyLoad is the hysteresis (HTCondor's 0.3/0.5). Must not exceed busyLoad. Default 0.75.
   */
  calmLoad: 0.75,
  /**
   * The safety margin: a peer is sufficiently less loaded when its expected load plus
   * margin × the moved process's load on it stays below the local load (Kerrighed's
   * 1.3). At least 1. Default 1.3.
   */
  margin: 1.3,
  /**
   * Targets whose score (expected load + margin × one process's load) is within this of
   * the best one are near-equal, and one of them is picked at random (seeded by node id
   * and round), so that busy nodes do not all pick the same one. Default 0.25.
   */
  tieTolerance: 0.25,
  /** An announcement older than this many seconds is stale: its peer gets no work. Default 5. */
  staleAfter: 5,
  /**
   * A process that has run for less than this many seconds is not moved for load: short
   * processes are not worth it (memory ushering and drain ignore this). Default 1.
   */
  minAge: 1,
  /**
   * A process that arrived by migration stays at least this many seconds before it may
   * move again, for load or memory (drain ignores this). This is what stops bouncing.
   * Default 20.
   */
  minResidency: 20,
  /** Migrations a node may start per interval. A whole number ≥ 1. Default 16. */
  maxMigrationsPerInterval: 16,
  /**
   * The most load (normalised for the peer) this node may send a peer before the peer's
   * announcements show it; at least one process is always allowed. 1 lets one process per
   * CPU through. Default 1.
   */
  maxPendingLoad: 1,
  /**
   * A move must gain at least this many times what it costs: the CPU time gained over the
   * process's expected remaining life versus the CPU time lost while it is in transit.
   * Default 2.
   */
  benefitCostRatio: 2,
  /** Fixed seconds a migration takes besides sending memory (freeze, connect, restore). Default 0.2. */
  migrationOverhead: 0.2,
  /** Bandwidth in bytes per second assumed for a peer not measured yet. Default 125e6 (1 Gb/s). */
  defaultBandwidth: 125_000_000,
  /**
   * A node whose available memory falls below this fraction of its total sends processes
   * away (memory ushering). Default 0.1.
   */
  memoryLow: 0.1,
  /**
   * Memory ushering goes on until available memory is back above this fraction, and a
   * peer only gets a process if it keeps at least this fraction available afterwards.
   * Must be above memoryLow. Default 0.2.
   */
  memoryComfort: 0.2,
  /**
   * The local load rises slowly: when a sample is higher, the load moves this fraction of
   * the way to it (Kerrighed's 3 parts new to 5 parts old); it falls to a lower sample at
   * once. Default 0.375.
   */
  localRiseGain: 0.375,
  /**
   * The exported load decays slowly: when a sample is lower, it moves this fraction of the
   * way down (Kerrighed's 1 part new to 7 parts old); it rises to a higher sample at once.
   * Default 0.125.
   */
  exportDecayGain: 0.125,
  /** How many peers and processes a record lists; the rest are only counted. Default 8. */
  recordLimit: 8,
  /**
   * This node's relative CPU speed (1 = the reference CPU); a node of speed 2 counts as
   * twice the CPUs it has. Announced to the peers. Default 1.
   */
  speed: 1,
});

/** The balancing settings; see {@link DEFAULT_BALANCE_SETTINGS} for each field. */
export type BalanceSettings = { -readonly [K in keyof typeof DEFAULT_BALANCE_SETTINGS]: number };

/** The accepted range of each setting. */
const RANGES: Record<
  keyof BalanceSettings,
  { min: number; max: number; minOpen?: boolean; integer?: boolean }
> = {
  interval: { min: 0, max: 3600, minOpen: true },
  busyLoad: { min: 0, max: 1000, minOpen: true },
  calmLoad: { min: 0, max: 1000 },
  margin: { min: 1, max: 100 },
  tieTolerance: { min: 0, max: 1000 },
  staleAfter: { min: 0, max: 86400, minOpen: true },
  minAge: { min: 0, max: 86400 },
  minResidency: { min: 0, max: 86400 },
  maxMigrationsPerInterval: { min: 1, max: 10000, integer: true },
  maxPendingLoad: { min: 0, max: 1000 },
  benefitCostRatio: { min: 0, max: 1e6 },
  migrationOverhead: { min: 0, max: 3600 },
  defaultBandwidth: { min: 0, max: 1e15, minOpen: true },
  memoryLow: { min: 0, max: 1 },
  memoryComfort: { min: 0, max: 1 },
  localRiseGain: { min: 0, max: 1, minOpen: true },
  exportDecayGain: { min: 0, max: 1, minOpen: true },
  recordLimit: { min: 0, max: 10000, integer: true },
  speed: { min: 0, max: 1000, minOpen: true },
};

function usage(why: string, fix: string): PpmError {
  return new PpmError("invalid balance settings", why, fix, EXIT.USAGE);
}

function toNumber(key: string, value: unknown): number {
  if (typeof value === "number") return value;
  if (typeof value === "string" && value.trim() !== "" && Number.isFinite(Number(value))) {
    return Number(value);
  }
  throw usage(`${key} must be a number, got ${JSON.stringify(value)}`, `give ${key} as a number`);
}

function describe(r: { min: number; max: number; minOpen?: boolean; integer?: boolean }): string {
  const kind = r.integer ? "a whole number" : "a number";
  return `${kind} ${r.minOpen ? "above" : "from"} ${r.min} ${
    r.minOpen ? "and up to" : "to"
  } ${r.max}`;
}

/**
 * The defaults overridden by `user` (an object of setting names to numbers or numeric
 * strings; `undefined` gives the defaults). Throws a PpmError with EXIT.USAGE on an
 * unknown name, a value that is not a finite number, a value out of range, calmLoad
 * above busyLoad, memoryComfort not above memoryLow, or staleAfter below interval.
 */
export function resolveBalanceSettings(user?: unknown): BalanceSettings {
  const out: BalanceSettings = { ...DEFAULT_BALANCE_SETTINGS };
  if (user === undefined || user === null) return out;
  if (typeof user !== "object" || Array.isArray(user)) {
    throw usage("the settings must be an object of names to numbers", "see docs/balancing.md");
  }
  for (const [key, value] of Object.entries(user)) {
    if (!Object.hasOwn(RANGES, key)) {
      const known = Object.keys(RANGES).join(", ");
      throw usage(`unknown setting "${key}"`, `use one of: ${known}`);
    }
    if (value === undefined) continue;
    const k = key as keyof BalanceSettings;
    const n = toNumber(key, value);
    const r = RANGES[k];
    const low = r.minOpen ? n <= r.min : n < r.min;
    if (!Number.isFinite(n) || low || n > r.max || (r.integer && !Number.isInteger(n))) {
      throw usage(`${key} is ${value}`, `give ${key} as ${describe(r)}`);
    }
    out[k] = n;
  }
  if (out.calmLoad > out.busyLoad) {
    throw usage(
      `calmLoad (${out.calmLoad}) is above busyLoad (${out.busyLoad})`,
      "set calmLoad at or below busyLoad",
    );
  }
  if (out.memoryComfort <= out.memoryLow) {
    throw usage(
      `memoryComfort (${out.memoryComfort}) is not above memoryLow (${out.memoryLow})`,
      "set memoryComfort above memoryLow",
    );
  }
  if (out.staleAfter < out.interval) {
    throw usage(
      `staleAfter (${out.staleAfter}) is below interval (${out.interval})`,
      "set staleAfter to at least one interval (several are better)",
    );
  }
  return out;
}

/** The `balance` object of the agent's configuration, resolved. */
export interface BalanceConfig {
  /** True when the agent balances by itself (`balance.enabled`, or `ppm daemon --balance`). */
  enabled: boolean;
  /** The settings: the defaults overridden by the other keys. */
  settings: BalanceSettings;
}

/**
 * Resolves the `balance` object of the configuration: `enabled` (a boolean,
 * default false) and the settings of {@link resolveBalanceSettings}. Throws a
 * PpmError with EXIT.USAGE as that does, or when `enabled` is not a boolean.
 */
export function resolveBalanceConfig(raw?: unknown): BalanceConfig {
  if (raw === undefined || raw === null) {
    return { enabled: false, settings: resolveBalanceSettings() };
  }
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw usage("balance must be an object of names to values", "see docs/balancing.md");
  }
  const { enabled, ...rest } = raw as Record<string, unknown>;
  if (enabled !== undefined && typeof enabled !== "boolean") {
    throw usage(`enabled is ${JSON.stringify(enabled)}`, "give balance.enabled as true or false");
  }
  return { enabled: enabled ?? false, settings: resolveBalanceSettings(rest) };
}
