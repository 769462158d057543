/**
 * Errors told in the user's terms keep the error they tell as their
 * `cause` (for logs and debugging), while what users and scripts see,
 * the rendered text and the JSON form, stays as it was.
 */
import { ErrnoError } from "../../ffi/libc.ts";
import { EXIT, PpmError } from "../../core/errors.ts";
import { Tracee } from "../../core/ptrace/tracee.ts";
import { checkOffer } from "../../core/migrate/offer_check.ts";
import type { MigrationChannel } from "../../core/transport/channel.ts";
import { migrateOut } from "../../core/migrate/source.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

Deno.test("PpmError: a cause is kept, and neither rendered nor in the JSON form", () => {
  const low = new Error("ECONNRESET");
  const e = new PpmError("cannot send", "the peer went away", "try again", EXIT.FAILURE, {
    cause: low,
  });
  assert(e.cause === low);
  assertEquals(e.details, "");
  const plain = new PpmError("cannot send", "the peer went away", "try again", EXIT.FAILURE);
  assertEquals(e.render(), plain.render());
  assertEquals(JSON.stringify(e), JSON.stringify(plain));
  assertEquals(Object.keys(e.toJSON()), ["error", "reason", "fix", "exitCode"]);
  assert(!("cause" in plain), "no cause given: none set");
  // Details, given as before or with a cause.
  assertEquals(new PpmError("a", "b", "", EXIT.FAILURE, "log excerpt").details, "log excerpt");
  const both = new PpmError("a", "b", "", EXIT.FAILURE, { details: "log", cause: low });
  assertEquals([both.details, both.cause], ["log", low]);
  assertEquals(both.render(), "ppm: a: b\nlog");
});

/** A channel that fails the way `fail` says on the first send. */
function failing(fail: () => Error): MigrationChannel {
  return {
    send: () => Promise.reject(fail()),
    recv: () => Promise.reject(new Error("nothing to receive")),
    streamSink: () => () => Promise.resolve(),
    endStream: () => Promise.resolve(),
    streamSource: () => ({ async *[Symbol.asyncIterator]() {} }),
    close() {},
  };
}

async function refusalOf(channel: MigrationChannel): Promise<PpmError> {
  // A `sleep` with only stdin/stdout/stderr open (Deno hands children a pipe of its own).
  const closeFds =
    'for f in /proc/self/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done; exec sleep 30';
  const child = new Deno.Command("bash", {
    args: ["-c", closeFds],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await new Promise((r) => setTimeout(r, 200));
    await migrateOut(child.pid, channel, { node: "nodeA", stepTimeoutMs: 2000 });
  } catch (e) {
    assert(e instanceof PpmError, String(e));
    return e;
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
  throw new Error("the migration was not refused");
}

Deno.test("migrateOut: a refusal keeps the failure it tells as its cause", async () => {
  const reset = new Error("connection reset by peer");
  const plain = await refusalOf(failing(() => reset));
  assertMatch(plain.what, /runs on here/);
  assertMatch(plain.why, /the connection failed: connection reset by peer/);
  assert(plain.cause === reset, "a plain error is the cause");

  const told = new PpmError("cannot reach node B", "no route", "check the link", EXIT.MISSING);
  const refused = await refusalOf(failing(() => told));
  assertMatch(refused.what, /runs on here/);
  assertEquals([refused.why, refused.fix, refused.exitCode], [
    "cannot reach node B: no route",
    "check the link",
    EXIT.MISSING,
  ]);
  assert(refused.cause === told, "a PpmError is the cause");
});

Deno.test("checkOffer: a malformed offer's refusal keeps the field error as its cause", () => {
  let err: unknown;
  try {
    checkOffer({ op: "offer", origin: {}, stdin: "null", pid: "seven" });
  } catch (e) {
    err = e;
  }
  assert(err instanceof PpmError && err.what === "refused", String(err));
  assertMatch(err.why, /a malformed offer/);
  assert(err.cause instanceof PpmError, `cause: ${err.cause}`);
});

Deno.test("Tracee: a refused seize keeps the errno error as its cause", () => {
  let err: unknown;
  try {
    Tracee.attach(4_000_000).resume();
  } catch (e) {
    err = e;
  }
  assert(err instanceof PpmError, String(err));
  assertEquals(err.exitCode, EXIT.MISSING);
  assert(err.cause instanceof ErrnoError && err.cause.code === "ESRCH", `cause: ${err.cause}`);
});
