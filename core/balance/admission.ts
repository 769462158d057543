/**
 * The receiving side: whether this node accepts a migration a peer offers.
 * The sender chose from an announcement that may be out of date, so the
 * receiver checks again with what it knows now.
 *
 * @module
 */
import type { BalanceSettings } from "./settings.ts";
import type { LocalView } from "./types.ts";

/** The answer to a migration offer. */
export interface Admission {
  /** True when the process may come. */
  accept: boolean;
  /** Why, in words. */
  why: string;
}

/**
 * Whether `local` accepts a managed process of `memory` bytes: not while
 * draining, and not when it would leave less than memoryLow of the memory
 * available (which would start memory ushering here at once).
 */
export function admit(local: LocalView, memory: number, settings: BalanceSettings): Admission {
  if (local.drain) return { accept: false, why: "draining: accepts no processes" };
  const after = local.memAvailable - memory;
  if (after < settings.memoryLow * local.memTotal) {
    return {
      accept: false,
      why: `low memory: ${after} bytes would remain, below ${settings.memoryLow * 100} %`,
    };
  }
  return { accept: true, why: "accepted" };
}
