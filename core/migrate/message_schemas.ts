/**
 * Every message between agents, one valibot schema each: the migration
 * conversation (protocol.ts), what follows it on the same connection (the
 * handover, the news of an exit), and what opens a connection of its own
 * (a question about an outcome, a relay taken up again; redirect requests
 * are core/redirect/messages.ts). The schema is the type, and the check a
 * message passes on receipt (messages.ts).
 *
 * @module
 */
import * as v from "valibot";
import { STREAM } from "../transport/channel.ts";
import { isRelayToken } from "../relay/record.ts";
import { isOffsets, type StreamOffsets } from "../relay/replay.ts";
import { int, opt, Pid, Reason, text } from "../untrusted.ts";

export { OfferSchema, StdinModeSchema } from "./offer_schema.ts";

/** A page stream secret: 16 bytes as 32 hex digits. */
const Secret = v.pipe(v.string(), v.regex(/^[0-9a-f]{32}$/, "expected 32 hex digits"));

/** A yes to an offer. */
const OfferYes = v.object({
  op: v.literal("offer-reply"),
  ok: v.literal(true),
  /** Where and how to send the frozen pages (an offer with `pagestream`). */
  pages: v.optional(v.object({ port: int(1, 65535), key: Secret, session: Secret })),
});

/** A no to an offer, and why. */
const OfferNo = v.object({
  op: v.literal("offer-reply"),
  ok: v.literal(false),
  reason: opt(Reason),
});

/** The destination's reply to an offer. */
export const OfferReplySchema = v.variant("ok", [OfferYes, OfferNo]);

/** The restore's figures (core/restore/restore.ts `RestoreStats`), for the source's result. */
const RestoreFigures = v.object({
  pages: int(0, Number.MAX_SAFE_INTEGER),
  /** Pages the pre-copy rounds put in place ahead of the restore (a vessel, core/restore/vessel.ts). */
  ahead: opt(int(0, Number.MAX_SAFE_INTEGER)),
  timesUs: v.pipe(
    v.record(text(32), v.pipe(v.number(), v.finite())),
    v.check((o) => Object.keys(o).length <= 32, "expected at most 32 times"),
  ),
});

/** The process exists at the destination, stopped, as `pid`. */
const RestoredYes = v.object({
  op: v.literal("restored"),
  ok: v.literal(true),
  /** Its PID there. */
  pid: Pid,
  /** The restore's figures. */
  stats: opt(RestoreFigures),
  /** The destination's address as peers know it (absent without sockets). */
  addr: opt(text(64)),
});

/** The restore failed, and why. */
const RestoredNo = v.object({
  op: v.literal("restored"),
  ok: v.literal(false),
  reason: opt(Reason),
});

/** The destination's report after restoring the image. */
export const RestoredSchema = v.variant("ok", [RestoredYes, RestoredNo]);

/** A relay's token (core/relay/record.ts). */
const RelayToken = v.custom<string>(isRelayToken, "expected a relay token of 32 hex digits");

/** The source lets the process run at the destination. */
export const CommitSchema = v.object({
  op: v.literal("commit"),
  /** Names the relay of its standard streams (an older source names none). */
  relay: opt(RelayToken),
});

/** The destination says the process runs there. */
export const CommittedSchema = v.object({ op: v.literal("committed"), ok: v.boolean() });

/** The source gives the migration up before the commit. */
export const AbortSchema = v.object({ op: v.literal("abort") });

/**
 * What a source asks a destination (on a new connection) when its commit
 * was not confirmed: does process `pid` (named `comm`) run there?
 */
export const OutcomeQuerySchema = v.object({
  op: v.literal("outcome?"),
  /** The process (the same PID at both ends). */
  pid: Pid,
  /** Its name. */
  comm: text(64),
});

/** The destination's answer: it runs here, it does not (and will not), or the move is still under way. */
export const OutcomeSchema = v.picklist(["running", "absent", "pending"]);

/** The answer to an outcome query. */
export const OutcomeAnswerSchema = v.object({ op: v.literal("outcome"), state: OutcomeSchema });

/** Bytes each of `streams` took at one end: stream id → offset. */
function offsets(streams: number[], names: string) {
  return v.custom<StreamOffsets>(
    (x) => isOffsets(x, streams),
    `expected the bytes taken of ${names}, each a safe integer >= 0`,
  );
}

/** The destination's request to take a relay up again, on a new connection. */
export const RelayResumeSchema = v.object({
  op: v.literal("relay-resume"),
  /** The relay's token (from the commit). */
  token: RelayToken,
  /** The process's PID at the destination (for the log). */
  pid: Pid,
  /** Bytes of stdin the destination took (the source sends the rest again). */
  has: offsets([STREAM.STDIN], "stdin"),
});

/** The source's answer: whether it took the relay up, and what it has of each output stream. */
export const RelayResumedSchema = v.object({
  op: v.literal("relay-resumed"),
  /** Taken up. */
  ok: v.boolean(),
  /** Why not. */
  reason: v.optional(Reason),
  /** Bytes of stdout and stderr the source took (the destination sends the rest again). */
  has: v.optional(offsets([STREAM.STDOUT, STREAM.STDERR], "stdout and stderr")),
});

/** A map (the balancer's record of a decision, shown as it came). */
const PlainMap = v.custom<object>(
  (x) => typeof x === "object" && x !== null && !Array.isArray(x),
  "expected a map",
);

/** Why a process moved (core/agent/processes.ts `MoveReason`). */
const MoveReasonSchema = v.variant("kind", [
  v.object({ kind: v.literal("manual"), by: text(255) }),
  v.object({
    kind: v.literal("balance"),
    mode: v.picklist(["drain", "memory", "load"]),
    record: PlainMap,
  }),
]);

/** What the source tells the destination about a process once it runs there. */
export const HandoverSchema = v.object({
  op: v.literal("handover"),
  /** Its PID (the same at both ends). */
  pid: Pid,
  /** Managed at the source, so managed here. */
  managed: v.boolean(),
  /** Its name. */
  name: text(255),
  /** When it started on its first node (seconds since the epoch). */
  startedAt: v.pipe(v.number(), v.finite(), v.minValue(0)),
  /** Why it moved. */
  why: MoveReasonSchema,
});

/** The news of an exit, sent back along the way the process came (core/agent/exits.ts). */
export const ExitedSchema = v.object({
  op: v.literal("exited"),
  /** The PID (the same on every node). */
  pid: Pid,
  /** Exit code, when it exited. */
  code: opt(int(0, 255)),
  /** Signal number, when a signal killed it. */
  signal: opt(int(1, 127)),
  /** Where it ended. */
  node: text(256),
});

/**
 * A signal for a process that left, sent along the way it went (core/agent/signals.ts):
 * its deputy at home got it, or was killed (then SIGKILL). Each agent on the way gives it
 * to the process when it runs there, else passes it on; it is taken only on the connection
 * the process itself came in on, and only for that process.
 */
export const SignalSchema = v.object({
  op: v.literal("signal"),
  /** The process (the same PID on every node). */
  pid: Pid,
  /** The signal, 1..64. */
  sig: int(1, 64),
});

/**
 * The news that a process that left moved on again, sent back along the way it came, so
 * that its home node (its deputy, in `ppm ps`) knows where it runs now.
 */
export const MovedSchema = v.object({
  op: v.literal("moved"),
  /** The process (the same PID on every node). */
  pid: Pid,
  /** The node it runs on now. */
  node: text(256),
});
