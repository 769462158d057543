/**
 * Dynamic load balancing: measurement, filters, the policy and its settings.
 * Pure TypeScript without I/O; time and random numbers are inputs.
 *
 * @module
 */
export * from "./admission.ts";
export * from "./cost.ts";
export * from "./load.ts";
export * from "./measure.ts";
export * from "./peers.ts";
export * from "./policy.ts";
export * from "./rng.ts";
export * from "./settings.ts";
export * from "./tracker.ts";
export * from "./types.ts";
