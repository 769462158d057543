/**
 * The migration conversation between the source and destination agents,
 * over one authenticated connection (core/transport):
 *
 *   source → offer        what the process needs (kernel, CPU, files, PID)
 *   dest   → offer-reply  yes, or why not
 *   source → stream 1     the image, streamed while the process is frozen
 *   dest   → restored     the process exists there, stopped (or why not); its
 *                         sockets exist too, in TCP repair mode, and the
 *                         destination answers for the old address (ANSWER)
 *   source               forwards outside peers' flows (FORWARD) and asks
 *                         cluster peers' agents to rewrite theirs (PEER)
 *   source → commit       dest ends repair mode and lets the process run ...
 *   dest   → committed    ... and says so; only now does the source end its copy
 *   dest   → streams 2, 3 the process's stdout and stderr, relayed back to the
 *                         source's original descriptors for as long as it runs
 *   source → stream 4     what arrives on the process's original stdin (unless
 *                         that was /dev/null or closed)
 *
 * Anything else, a timeout or a dropped connection before `committed`:
 * the destination kills its copy and the source resumes the process.
 *
 * The channel and its stream ids are in core/transport/channel.ts.
 *
 * @module
 */

import type { FlowSocket } from "../redirect/redirect_plan.ts";
import type { ExpectedFile } from "../restore/compat.ts";

/** What the destination must provide, asked before anything is frozen. */
export interface Offer {
  /** Message type. */
  op: "offer";
  /** The process's PID (restored with the same PID). */
  pid: number;
  /** Its name. */
  comm: string;
  /** Kernel release of the source. */
  kernel: string;
  /** CPU flags of the source. */
  cpuFlags: string[];
  /** Module ABI version. */
  abi: number;
  /** Identity of every mapped file. */
  files: { path: string; size: number; sha256: string }[];
  /** Anonymous memory to send, bytes (for progress and throughput). */
  estimatedBytes: number;
  /** Source node name. */
  from: string;
  /** Where the process started (for `ppm ps`). */
  origin: { node: string; pid: number };
  /** Times it moved before. */
  moves: number;
  /** Its stdin: closed, /dev/null, or relayed from the source (stream 4). */
  stdin: StdinMode;
  /** The source node's address, as the process's peers know it ("" without sockets). */
  fromAddr: string;
  /** Its IPv4 sockets (their ports must be free at the destination). */
  sockets: FlowSocket[];
  /** Its working directory (it must exist at the destination). */
  cwd: string;
  /**
   * Its working directory, open files and mapped files with what they are
   * (type, owner, mode, size, mtime): the destination checks them before
   * anything is frozen.
   */
  expected?: ExpectedFile[];
}

/** How a migrated process's stdin is provided at the destination. */
export type StdinMode = "closed" | "null" | "relay";

/** Reply to an offer. */
export interface OfferReply {
  /** Message type. */
  op: "offer-reply";
  /** Accepted? */
  ok: boolean;
  /** Why not. */
  reason?: string;
}

/**
 * What a source asks a destination (on a new connection) when its commit
 * was not confirmed: does process `pid` (named `comm`) run there?
 */
export interface OutcomeQuery {
  /** Message type. */
  op: "outcome?";
  /** The process (the same PID at both ends). */
  pid: number;
  /** Its name. */
  comm: string;
}

/** The destination's answer: it runs here, it does not (and will not), or the move is still under way. */
export type Outcome = "running" | "absent" | "pending";

/** True for an {@link OutcomeQuery} (checked as hostile input). */
export function isOutcomeQuery(v: unknown): v is OutcomeQuery {
  const o = v as OutcomeQuery | undefined;
  return typeof o === "object" && o !== null && o.op === "outcome?" && Number.isInteger(o.pid) &&
    o.pid > 0 && o.pid <= 4194304 && typeof o.comm === "string" && o.comm.length <= 64;
}

/**
 * The answer to an outcome query: "pending" while a migration of `pid` is
 * under way here, else "running" when a process `pid` named `comm` runs
 * here (a restored process keeps its PID; the destination checked the PID
 * free before taking it), else "absent".
 */
export function answerOutcome(q: OutcomeQuery, underWay: boolean): Outcome {
  if (underWay) return "pending";
  try {
    const comm = Deno.readTextFileSync(`/proc/${q.pid}/comm`).replace(/\n$/, "");
    return comm === q.comm ? "running" : "absent";
  } catch {
    return "absent";
  }
}
