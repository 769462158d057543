/**
 * A migration's pre-copy (core/dump/precopy.ts does one round): when to
 * do it, the rounds with their stopping rule, and the stream that carries
 * their pages to the destination (STREAM.PRECOPY, read there by
 * core/restore/precopy_store.ts).
 *
 * Rounds run while the process runs, until one of:
 * - the last round found at most `minPages` pages written since the one
 *   before (little is left for the freeze);
 * - a round found no fewer than 4/5 of the pages of the round before (no
 *   progress: the process writes as fast as the rounds copy);
 * - `rounds` rounds.
 *
 * @module
 */
import { PAGE_SIZE } from "../../ffi/libc.ts";
import type { PageRun } from "../dump/memory.ts";
import {
  type HeldOut,
  precopyRound,
  type RoundOut,
  type RoundStats,
  softDirtyWorks,
} from "../dump/precopy.ts";
import { PrecopyState } from "../dump/precopy_state.ts";
import { PAGES_HEADER_SIZE } from "../image/format.ts";
import { EXIT, PpmError } from "../errors.ts";

/** When and how long to pre-copy. */
export interface PrecopySettings {
  /** Most rounds before the freeze; 0: none. */
  rounds: number;
  /** Stop once a round found at most this many pages written since the last. */
  minPages: number;
  /** Only for processes with at least this much memory to send, bytes (the offer's estimate). */
  minBytes: number;
}

/**
 * The defaults: up to 8 rounds, for processes of 32 MiB and more, until 1 MiB is left. A process
 * that keeps writing leaves each round about its writes during the round before: with rounds at
 * twice its write rate, 4 rounds left a 1 GiB process 1/16 of its memory for the freeze (the
 * bench's dirty-1g: 4.7 s of its 6.6 s freeze); 8 leave 1/256, for about 7 % more bytes sent.
 */
export const PRECOPY_DEFAULTS: PrecopySettings = {
  rounds: 8,
  minPages: 256,
  minBytes: 32 << 20,
};

/**
 * The `precopy` object of the configuration file, checked: `rounds` (0..16),
 * `minMiB` (pre-copy only processes with this much to send) and `stopMiB`
 * (stop once a round found at most this much written since the last),
 * each optional; anything else is refused with what to do.
 */
export function resolvePrecopyConfig(raw?: unknown): PrecopySettings {
  if (raw === undefined || raw === null) return { ...PRECOPY_DEFAULTS };
  const bad = (why: string) =>
    new PpmError(
      "invalid configuration",
      `precopy: ${why}`,
      "see docs/migration.md, Pre-copy",
      EXIT.USAGE,
    );
  if (typeof raw !== "object" || Array.isArray(raw)) throw bad("not an object of names to values");
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!["rounds", "minMiB", "stopMiB"].includes(k)) {
      throw bad(`no setting ${JSON.stringify(k)} (rounds, minMiB, stopMiB)`);
    }
  }
  const num = (k: string, max: number, whole: boolean) => {
    const v = o[k];
    if (v === undefined) return undefined;
    if (
      typeof v !== "number" || !Number.isFinite(v) || v < 0 || v > max ||
      (whole && !Number.isInteger(v))
    ) {
      throw bad(
        `${k} is ${JSON.stringify(v)}, not ${whole ? "a whole number" : "a number"} in 0..${max}`,
      );
    }
    return v;
  };
  const rounds = num("rounds", 16, true), minMiB = num("minMiB", 1 << 20, false);
  const stopMiB = num("stopMiB", 1 << 20, false);
  return {
    rounds: rounds ?? PRECOPY_DEFAULTS.rounds,
    minBytes: minMiB === undefined ? PRECOPY_DEFAULTS.minBytes : Math.round(minMiB * 2 ** 20),
    minPages: stopMiB === undefined ? PRECOPY_DEFAULTS.minPages : Math.round(stopMiB * 256),
  };
}

/** A round found no progress when it has at least this share of the last round's pages. */
const NO_PROGRESS = 0.8;

/** What the rounds did. */
export interface PrecopyOutcome {
  /** What the destination holds, for the final dump. */
  state: PrecopyState;
  /** Each round's figures. */
  rounds: RoundStats[];
  /** Bytes of the stream. */
  bytes: number;
  /** Why the rounds stopped. */
  stopped: "little left" | "no progress" | "round limit";
}

/**
 * Whether to pre-copy a process with `estimatedBytes` of memory to send,
 * and why not: off, too small, or no dirty tracking (a warning then).
 */
export function precopyChoice(
  s: PrecopySettings,
  estimatedBytes: number,
): { precopy: true } | { precopy: false; warning?: string } {
  if (s.rounds <= 0 || estimatedBytes < s.minBytes) return { precopy: false };
  if (!softDirtyWorks()) {
    return {
      precopy: false,
      warning: "dirty tracking (soft-dirty, /proc/PID/clear_refs) does not work on this kernel: " +
        "no pre-copy, the whole memory moves while the process is frozen",
    };
  }
  return { precopy: true };
}

/** A run as the stream carries it: its 16-byte header, then the pages. */
export function encodeRun(run: PageRun): Uint8Array[] {
  const h = new Uint8Array(PAGES_HEADER_SIZE);
  const v = new DataView(h.buffer);
  v.setBigUint64(0, run.start, true);
  v.setUint32(8, run.data.length / PAGE_SIZE, true);
  return [h, run.data];
}

/**
 * Runs the rounds on process `pid`, each run of pages to `sink` (the
 * stream, which the caller ends), or to a page stream (`stream`, which
 * reads and sends them natively); the process runs on throughout.
 */
export async function precopy(
  pid: number,
  s: PrecopySettings,
  sink: ((chunk: Uint8Array) => Promise<void>) | { stream: HeldOut },
  copyAll = false,
): Promise<PrecopyOutcome> {
  const state = new PrecopyState();
  const rounds: RoundStats[] = [];
  let bytes = 0;
  const out: RoundOut = typeof sink === "function"
    ? {
      emit: async (run: PageRun) => {
        for (const c of encodeRun(run)) {
          await sink(c);
          bytes += c.length;
        }
      },
    }
    : sink;
  let stopped: PrecopyOutcome["stopped"] = "round limit";
  for (let r = 0; r < s.rounds; r++) {
    const st = await precopyRound(pid, state, out, copyAll);
    // On a page stream: a 16-byte header and a 16-byte tag per frame of at most 256 pages.
    if (typeof sink !== "function") bytes += st.sent * PAGE_SIZE + Math.ceil(st.sent / 256) * 32;
    rounds.push(st);
    if (r === 0) continue;
    if (st.dirty <= s.minPages) {
      stopped = "little left";
      break;
    }
    if (r >= 2 && st.dirty >= rounds[r - 1].dirty * NO_PROGRESS) {
      stopped = "no progress";
      break;
    }
  }
  return { state, rounds, bytes, stopped };
}
