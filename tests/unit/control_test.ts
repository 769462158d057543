/** The agent's control socket: root-only permissions, requests and errors. */
import { join } from "node:path";
import { controlRequest, serveControl, UNANSWERED } from "../../core/agent/control.ts";
import { PpmError } from "../../core/errors.ts";
import { assertEquals, assertMatch, assertRejects } from "../support/assert.ts";

/** Waits (at most 2 s) until the served socket exists. */
async function socketAppears(path: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await Deno.stat(path).then(() => true, () => false)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("control socket: directory 0700, socket 0600, one JSON reply per request, errors pass through", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "run", "ppm.sock");
  const ac = new AbortController();
  const served = serveControl(
    path,
    (req) => {
      if (req.op === "ps") return Promise.resolve([{ pid: 7 }]);
      return Promise.reject(new PpmError("no peer x", "unknown", "check ppm peers", 4));
    },
    ac.signal,
    () => {},
  );
  try {
    await socketAppears(path);
    assertEquals((await Deno.stat(join(dir, "run"))).mode! & 0o777, 0o700);
    assertEquals((await Deno.stat(path)).mode! & 0o777, 0o600);
    assertEquals(await controlRequest(path, { op: "ps" }), [{ pid: 7 }]);
    await assertRejects(() => controlRequest(path, { op: "migrate", pid: 1, to: "x" }));
    try {
      await controlRequest(path, { op: "peers" });
    } catch (e) {
      assertEquals([(e as PpmError).what, (e as PpmError).exitCode], ["no peer x", 4]);
    }
  } finally {
    ac.abort();
    await served;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("control socket: no agent is a clear error", async () => {
  await assertRejects(() => controlRequest("/nonexistent/ppm.sock", { op: "ps" }));
});

Deno.test("control socket: events before the reply arrive in order, then the result", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "ppm.sock");
  const ac = new AbortController();
  const served = serveControl(
    path,
    async (_req, emit) => {
      for (let i = 1; i <= 50; i++) emit({ progress: { sent: i, expected: 50 } });
      await new Promise((r) => setTimeout(r, 10));
      return { pid: 7 };
    },
    ac.signal,
    () => {},
  );
  try {
    await socketAppears(path);
    const seen: number[] = [];
    const r = await controlRequest(
      path,
      { op: "migrate", pid: 7, to: "x" },
      10_000,
      (ev) => seen.push((ev as { progress: { sent: number } }).progress.sent),
    );
    assertEquals(r, { pid: 7 });
    assertEquals(seen, Array.from({ length: 50 }, (_, i) => i + 1));
  } finally {
    ac.abort();
    await served;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("control socket: a request without a reply says whether the agent closed or was silent", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "ppm.sock");
  const listener = Deno.listen({ transport: "unix", path });
  const held: Deno.Conn[] = [];
  const serving = (async () => {
    let n = 0;
    for await (const conn of listener) {
      // The first request is dropped at once; the second is never answered.
      if (n++ === 0) conn.close();
      else held.push(conn);
    }
  })();
  try {
    const fails = (ms: number) =>
      controlRequest(path, { op: "ps" }, ms).then(() => new PpmError("answered", ""), (e) => e);
    const closed = await fails(5000);
    assertEquals(closed.what, UNANSWERED);
    assertMatch(closed.why, /closed the connection/);
    const silent = await fails(300);
    assertEquals(silent.what, UNANSWERED);
    assertMatch(silent.why, /no reply within 0 s/);
  } finally {
    listener.close();
    for (const c of held) c.close();
    await serving.catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});
