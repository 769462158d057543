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
 *   source → handover     managed or not, and why it moved (core/agent)
 *   dest   → exited       how it ended, once it did (core/agent/exits.ts)
 *   source → signal       a signal its deputy at home got (core/agent/signals.ts),
 *                         for as long as it runs there or beyond (passed on)
 *   dest   → moved        it moved on from there: where it runs now (for its
 *                         deputy at home, passed back along the way it came)
 *
 * Anything else, a timeout or a dropped connection before `committed`:
 * the destination kills its copy and the source resumes the process (a
 * source that gives up before the commit says `abort`). A source whose
 * commit was not confirmed asks on a new connection (`outcome?`, answered
 * by `outcome`).
 *
 * The messages, and the check each passes on receipt, are messages.ts; the
 * channel and its stream ids are in core/transport/channel.ts.
 *
 * @module
 */

import type { Outcome, OutcomeQuery } from "./messages.ts";

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
