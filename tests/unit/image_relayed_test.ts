/**
 * The relayed descriptors of the FILES record (a pipe, FIFO or unix stream
 * socket whose other end stays on the node the process left): valid ones
 * come back whole; hostile values (an unknown end, socket state on a pipe,
 * a standard stream, a copy, an object number, too many) are refused
 * naming the descriptor.
 */
import { checkFds, MAX_RELAYED } from "../../core/image/fds.ts";
import { checkId } from "../../core/image/schema.ts";
import { ImageError } from "../../core/image/errors.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

const entry = (fd: number, relayed: unknown, extra: Record<string, unknown> = {}) => ({
  fd,
  kind: "relayed",
  path: "pipe:[123]",
  flags: 0o2000000,
  pos: 0n,
  relayed,
  ...extra,
});

function refused(v: unknown, re: RegExp): void {
  try {
    checkFds(v, checkId);
  } catch (e) {
    assert(e instanceof ImageError, `not an ImageError: ${e}`);
    assertMatch((e as Error).message, re);
    return;
  }
  throw new Error(`accepted: ${JSON.stringify(v, (_k, x) => typeof x === "bigint" ? `${x}n` : x)}`);
}

Deno.test("FILES relayed: each end comes back whole", () => {
  const fds = [
    entry(3, { end: "pipe-read", shutdown: 0, passcred: false }),
    entry(4, { end: "pipe-write", shutdown: 0, passcred: false }, { flags: 1 }),
    entry(7, { end: "unix-stream", shutdown: 2, passcred: true }, { path: "socket:[9]", flags: 2 }),
  ];
  const got = checkFds(fds, checkId);
  assertEquals(got.map((f) => [f.fd, f.kind, f.relayed?.end]), [
    [3, "relayed", "pipe-read"],
    [4, "relayed", "pipe-write"],
    [7, "relayed", "unix-stream"],
  ]);
  assertEquals(got[2].relayed, { end: "unix-stream", shutdown: 2, passcred: true });
});

Deno.test("FILES relayed: hostile values are refused naming the descriptor", () => {
  const ok = { end: "pipe-read", shutdown: 0, passcred: false };
  refused([entry(3, { ...ok, end: "tty" })], /fd 3.*unknown end/);
  refused([entry(3, { ...ok, end: "x".repeat(100) })], /fd 3/);
  refused([entry(3, { ...ok, end: 1 })], /fd 3/);
  refused([entry(3, { ...ok, shutdown: 4 })], /fd 3/);
  refused([entry(3, { ...ok, shutdown: -1 })], /fd 3/);
  refused([entry(3, { ...ok, shutdown: 1.5 })], /fd 3/);
  refused([entry(3, { ...ok, passcred: "yes" })], /fd 3.*passcred/);
  refused([entry(3, { ...ok, shutdown: 1 })], /fd 3.*socket state on a pipe/);
  refused([entry(3, { ...ok, passcred: true })], /fd 3.*unix socket state on a pipe end/);
  refused(
    [entry(3, { ...ok, end: "tcp-stream", shutdown: 1 }, { path: "socket:[9]" })],
    /fd 3.*unix socket state on a TCP connection/,
  );
  assertEquals(
    checkFds([entry(3, { ...ok, end: "tcp-stream" }, { path: "socket:[9]" })], checkId)[0].relayed
      ?.end,
    "tcp-stream",
  );
  refused([entry(3, null)], /fd 3/);
  refused([entry(3, undefined)], /fd 3.*without its state/);
  refused([entry(1, ok)], /fd 1.*standard stream/);
  refused([entry(3, ok, { object: 0 })], /fd 3/);
  refused([entry(3, ok), entry(4, undefined, { dupOf: 3 })], /fd 4/);
  refused([entry(3, ok), entry(3, ok)], /fd 3.*twice/);
  // State of a relayed descriptor on another kind, and another kind's on a relayed one.
  refused([{ ...entry(3, undefined), kind: "pipe", object: 0, relayed: ok }], /fd 3/);
  refused([{ ...entry(3, ok), pipe: { size: 4096, data: [] } }], /fd 3/);
});

Deno.test(`FILES relayed: at most ${MAX_RELAYED}`, () => {
  const ok = { end: "pipe-write", shutdown: 0, passcred: false };
  const many = (n: number) => Array.from({ length: n }, (_, i) => entry(3 + i, ok));
  assertEquals(checkFds(many(MAX_RELAYED), checkId).length, MAX_RELAYED);
  refused(many(MAX_RELAYED + 1), /more than 64/);
});
