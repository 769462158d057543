/**
 * The messages between agents as ONE tagged union (told apart by `op`), and
 * the check every received message passes before it is used: a message
 * that does not fit is refused with where it went wrong
 * (`restored.pid: expected an integer, got 1.5`), and a site that waits for
 * one kind of message says what it expected and what came. The schemas are
 * message_schemas.ts, offer_schema.ts and core/redirect/messages.ts; the
 * conversation is protocol.ts.
 *
 * @module
 */
import * as v from "valibot";
import { PpmError } from "../errors.ts";
import {
  RedirectAddedSchema,
  RedirectAddSchema,
  RedirectDelSchema,
  RedirectFailedSchema,
  RedirectReleaseSchema,
  RedirectRemovedSchema,
} from "../redirect/messages.ts";
import { checkUntrusted, claimedOp } from "../untrusted.ts";
import {
  AbortSchema,
  CommitSchema,
  CommittedSchema,
  ExitedSchema,
  HandoverSchema,
  MovedSchema,
  OfferReplySchema,
  OfferSchema,
  OutcomeAnswerSchema,
  OutcomeQuerySchema,
  type OutcomeSchema,
  RelayResumedSchema,
  RelayResumeSchema,
  RestoredSchema,
  SignalSchema,
  type StdinModeSchema,
} from "./message_schemas.ts";

/** Every message between agents, told apart by `op`. */
export const MessageSchema = v.variant("op", [
  OfferSchema,
  OfferReplySchema,
  RestoredSchema,
  CommitSchema,
  CommittedSchema,
  AbortSchema,
  OutcomeQuerySchema,
  OutcomeAnswerSchema,
  RelayResumeSchema,
  RelayResumedSchema,
  HandoverSchema,
  ExitedSchema,
  RedirectAddSchema,
  RedirectDelSchema,
  RedirectReleaseSchema,
  RedirectAddedSchema,
  RedirectRemovedSchema,
  RedirectFailedSchema,
  SignalSchema,
  MovedSchema,
]);

/** A message between agents. */
export type Message = v.InferOutput<typeof MessageSchema>;
/** The kind of a {@link Message}. */
export type Op = Message["op"];
/** The messages of kind `K`. */
export type MessageOf<K extends Op> = Extract<Message, { op: K }>;

/** What the destination must provide, asked before anything is frozen. */
export type Offer = MessageOf<"offer">;
/** How a migrated process's stdin is provided at the destination. */
export type StdinMode = v.InferOutput<typeof StdinModeSchema>;
/** The destination's reply to an offer. */
export type OfferReply = MessageOf<"offer-reply">;
/** The destination's report after restoring the image. */
export type Restored = MessageOf<"restored">;
/** The source lets the process run at the destination. */
export type Commit = MessageOf<"commit">;
/** A source's question about the outcome of an unconfirmed commit. */
export type OutcomeQuery = MessageOf<"outcome?">;
/** The destination's answer: it runs here, it does not (and will not), or the move is still under way. */
export type Outcome = v.InferOutput<typeof OutcomeSchema>;
/** The destination's request to take a relay up again. */
export type RelayResume = MessageOf<"relay-resume">;
/** The source's answer to a {@link RelayResume}. */
export type RelayResumed = MessageOf<"relay-resumed">;
/** What the source tells the destination about a process once it runs there. */
export type Handover = MessageOf<"handover">;
/** The news of an exit. */
export type ExitMessage = MessageOf<"exited">;
/** A signal for a process that left, passed on towards where it runs. */
export type SignalMessage = MessageOf<"signal">;
/** The news that a process that left moved on again. */
export type MovedMessage = MessageOf<"moved">;

/** Every op, in the order of {@link MessageSchema}. */
export const OPS = [
  "offer",
  "offer-reply",
  "restored",
  "commit",
  "committed",
  "abort",
  "outcome?",
  "outcome",
  "relay-resume",
  "relay-resumed",
  "handover",
  "exited",
  "redirect-add",
  "redirect-del",
  "redirect-release",
  "redirect-added",
  "redirect-removed",
  "redirect-failed",
  "signal",
  "moved",
] as const satisfies readonly Op[];

// Every op of the union is listed (a compile-time check).
const _allListed: Op extends typeof OPS[number] ? true : never = true;

/** A received message that is not one, or not the one expected. */
export class MessageError extends PpmError {
  /**
   * @param claimed the op the message said it had, when that is a known one
   * @param what "a malformed message" or "an unexpected message"
   * @param why where it went wrong, or what was expected and what came
   */
  constructor(readonly claimed: Op | undefined, what: string, why: string) {
    super(what, why);
    this.name = "MessageError";
  }
}

/** Why `raw`, which claims no known op, is not a message. */
function notAMessage(raw: unknown): string {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    return `message: expected a map, got ${
      raw === null ? "null" : Array.isArray(raw) ? "a list" : typeof raw
    }`;
  }
  const op = (raw as { op?: unknown }).op;
  if (op === undefined) return "message.op: missing";
  const shown = typeof op === "string" ? JSON.stringify(op.slice(0, 40)) : typeof op;
  return `message.op: expected a known op, got ${shown}`;
}

/** `raw` as a message; throws a {@link MessageError} saying where it does not fit. */
export function parseMessage(raw: unknown): Message {
  const claimed = claimedOp(raw, OPS);
  if (claimed === undefined) {
    throw new MessageError(undefined, "a malformed message", notAMessage(raw));
  }
  const r = checkUntrusted(MessageSchema, raw, claimed);
  if (!r.ok) throw new MessageError(claimed, "a malformed message", r.why);
  return r.value;
}

/** "a", "a or b", "a, b or c". */
function oneOf(ops: readonly string[]): string {
  return ops.length < 2 ? ops.join("") : `${ops.slice(0, -1).join(", ")} or ${ops.at(-1)}`;
}

/**
 * `raw` as one of the messages `ops`; throws a {@link MessageError} saying
 * where it does not fit, or what was expected and what came instead.
 */
export function expectMessage<K extends Op>(raw: unknown, ...ops: K[]): MessageOf<K> {
  const wanted = ops as readonly Op[];
  let m: Message;
  try {
    m = parseMessage(raw);
  } catch (e) {
    if (!(e instanceof MessageError) || wanted.includes(e.claimed!)) throw e;
    const came = e.claimed ? `a malformed ${e.claimed} (${e.why})` : e.why;
    throw new MessageError(
      e.claimed,
      "an unexpected message",
      `expected ${oneOf(ops)}, got ${came}`,
    );
  }
  if (!wanted.includes(m.op)) {
    throw new MessageError(m.op, "an unexpected message", `expected ${oneOf(ops)}, got ${m.op}`);
  }
  return m as MessageOf<K>;
}

/** `raw` as one of the messages `ops`, or undefined (for a site that passes over others). */
export function asMessage<K extends Op>(raw: unknown, ...ops: K[]): MessageOf<K> | undefined {
  try {
    return expectMessage(raw, ...ops);
  } catch {
    return undefined;
  }
}

/** What receiving needs of a connection. */
export interface MessageSource {
  /** The next message, within `timeoutMs`. */
  recv(timeoutMs?: number): Promise<unknown>;
}

/**
 * The next message on `ch`, within `timeoutMs`, as one of `ops`; throws a
 * {@link MessageError} when it is not, and whatever `recv` throws.
 */
export async function receiveMessage<K extends Op>(
  ch: MessageSource,
  timeoutMs: number,
  ...ops: K[]
): Promise<MessageOf<K>> {
  return expectMessage(await ch.recv(timeoutMs), ...ops);
}
