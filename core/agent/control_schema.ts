/**
 * What the control socket accepts: one schema per request (valibot), the
 * single source of the {@link ControlRequest} type and of the check every
 * request line passes before the agent acts on it. A line that does not fit
 * is refused with where it went wrong (`migrate.pid: ...`), never used.
 *
 * @module
 */
import * as v from "valibot";
import { EXIT, PpmError } from "../errors.ts";

/** A PID: 1 to the kernel's largest (PID_MAX_LIMIT). */
const Pid = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(4_194_304));
/** A duration in ms, up to a day. */
const Ms = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(86_400_000));
/** A peer's name, hostname or address. */
const Peer = v.pipe(v.string(), v.minLength(1), v.maxLength(255));

const bare = <T extends string>(op: T) => v.strictObject({ op: v.literal(op) });

/** Every request, told apart by `op`. */
export const ControlRequestSchema = v.variant("op", [
  bare("status"),
  bare("peers"),
  bare("ps"),
  v.strictObject({
    op: v.literal("migrate"),
    pid: Pid,
    to: Peer,
    timeoutMs: v.optional(Ms),
    deadlineMs: v.optional(Ms),
    copyAll: v.optional(v.boolean()),
    /** Pre-copy rounds before the freeze (0: none); absent: the defaults. */
    precopyRounds: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(16))),
    /** Pre-copy only from this much memory, bytes; absent: the default (32 MiB). */
    precopyMinBytes: v.optional(
      v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER)),
    ),
  }),
  v.strictObject({
    op: v.literal("manage"),
    pid: Pid,
    name: v.optional(v.pipe(v.string(), v.maxLength(255))),
    by: v.optional(v.picklist(["run", "manage"])),
  }),
  v.strictObject({ op: v.literal("unmanage"), pid: Pid }),
  v.strictObject({ op: v.literal("wait"), pid: Pid, timeoutMs: v.optional(Ms) }),
  v.strictObject({ op: v.literal("balance"), dryRun: v.boolean() }),
  bare("drain"),
  bare("undrain"),
  bare("cordon"),
  bare("uncordon"),
]);

/** A request from the CLI. */
export type ControlRequest = v.InferOutput<typeof ControlRequestSchema>;

/**
 * Parses and checks one request line; throws a usage PpmError saying where
 * it does not fit.
 */
export function parseControlRequest(line: string): ControlRequest {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch (e) {
    throw new PpmError("bad request", `not JSON: ${(e as Error).message}`, "", EXIT.USAGE);
  }
  const r = v.safeParse(ControlRequestSchema, raw);
  if (r.success) return r.output;
  const issue = r.issues[0];
  const path = v.getDotPath(issue);
  const op = typeof (raw as { op?: unknown })?.op === "string"
    ? (raw as { op: string }).op.slice(0, 40)
    : "request";
  throw new PpmError(
    op === "request" || !r.issues.some((i) => v.getDotPath(i) !== "op")
      ? "unknown request"
      : "bad request",
    `${path ? `${op}.${path}` : op}: ${issue.message}`,
    "use a ppm of the same version as the agent",
    EXIT.USAGE,
  );
}
