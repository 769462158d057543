/**
 * The agent's default nice value, apart from core/agent/priority.ts (which
 * sets it, with node:os) so that `ppm daemon --help` shows it without
 * loading more than this.
 *
 * @module
 */

/** The nice value the agent runs at unless told otherwise (`ppm daemon --nice`). */
export const AGENT_NICE = -10;
