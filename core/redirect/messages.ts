/**
 * The messages of redirect requests between agents (peers.ts), as valibot
 * schemas: the schema is the type, and the check every such message passes
 * before it is used. They are part of the one union of messages between
 * agents (core/migrate/messages.ts).
 *
 * @module
 */
import * as v from "valibot";
import { addrBytes } from "../../ffi/redirect.ts";
import { int, list, opt, Reason } from "../untrusted.ts";

/** Most entries or ids in one request (a migration has at most this many sockets). */
export const MAX_REDIRECTS = 65536;

function isIPv4(s: string): boolean {
  try {
    addrBytes(s);
    return true;
  } catch {
    return false;
  }
}

/** An IPv4 endpoint as the module takes it. */
const Endpoint = v.object({
  addr: v.pipe(v.string(), v.maxLength(15), v.check(isIPv4, "expected an IPv4 address")),
  port: int(0, 65535),
});

/** One entry to add (ffi/redirect.ts `Redirect`). */
const RedirectEntry = v.object({
  proto: v.picklist(["tcp", "udp"]),
  action: v.picklist(["drop", "drop-syn", "peer", "forward", "answer"]),
  old: Endpoint,
  new: opt(Endpoint),
  peer: Endpoint,
  idleTimeout: opt(int(0, 0xffffffff)),
});

/** An entry's id on the node that holds it. */
const RedirectId = int(0, Number.MAX_SAFE_INTEGER);

/** Add these entries (absent: none). */
export const RedirectAddSchema = v.object({
  op: v.literal("redirect-add"),
  entries: v.nullish(list(RedirectEntry, MAX_REDIRECTS), () => []),
});

/** Remove the entries with these ids (absent: none). */
export const RedirectDelSchema = v.object({
  op: v.literal("redirect-del"),
  ids: v.nullish(list(RedirectId, MAX_REDIRECTS), () => []),
});

/**
 * Remove the drops identical to these (entries of other actions are not touched): the locks a
 * destination's agent left when it died holding a restored copy, released by the source once it
 * took the flows back (core/migrate/source.ts). An entry not there is fine.
 */
export const RedirectReleaseSchema = v.object({
  op: v.literal("redirect-release"),
  entries: v.nullish(list(RedirectEntry, MAX_REDIRECTS), () => []),
});

/** The entries were added, with these ids. */
export const RedirectAddedSchema = v.object({
  op: v.literal("redirect-added"),
  ok: v.literal(true),
  ids: list(RedirectId, MAX_REDIRECTS),
});

/** The entries were removed. */
export const RedirectRemovedSchema = v.object({
  op: v.literal("redirect-removed"),
  ok: v.literal(true),
  /** How many were there and removed (for a release; absent: not said). */
  count: opt(int(0, MAX_REDIRECTS)),
});

/** The request failed, and why. */
export const RedirectFailedSchema = v.object({
  op: v.literal("redirect-failed"),
  ok: v.literal(false),
  reason: opt(Reason),
});

/** A request to another node's agent. */
export const RedirectRequestSchema = v.variant("op", [
  RedirectAddSchema,
  RedirectDelSchema,
  RedirectReleaseSchema,
]);

/** A request to another node's agent. */
export type RedirectRequest = v.InferOutput<typeof RedirectRequestSchema>;

/** The answer to a {@link RedirectRequest}. */
export const RedirectAnswerSchema = v.variant("op", [
  RedirectAddedSchema,
  RedirectRemovedSchema,
  RedirectFailedSchema,
]);

/** The answer to a {@link RedirectRequest}. */
export type RedirectAnswer = v.InferOutput<typeof RedirectAnswerSchema>;

/** The ops of redirect requests. */
export const REDIRECT_REQUEST_OPS = ["redirect-add", "redirect-del", "redirect-release"] as const;

/** The ops of redirect requests and answers. */
export const REDIRECT_OPS = [
  ...REDIRECT_REQUEST_OPS,
  "redirect-added",
  "redirect-removed",
  "redirect-failed",
] as const;
