/**
 * The migration conversation without a cluster: an in-memory channel pair
 * between migrateOut (source) and migrateIn (destination). Covers the
 * refusals that happen before anything is frozen; the full path runs in
 * the guest test.
 */
import { PPM_ABI_VERSION } from "../../ffi/uapi.ts";
import { PpmError } from "../../core/errors.ts";
import { migrateIn } from "../../core/migrate/destination.ts";
import { asMessage, type Offer } from "../../core/migrate/messages.ts";
import { answerOutcome } from "../../core/migrate/protocol.ts";
import type { MigrationChannel } from "../../core/transport/channel.ts";
import { buildOffer, migrateOut } from "../../core/migrate/source.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

/** Two connected in-memory channels (control messages only). */
function pair(): [MigrationChannel, MigrationChannel] {
  const queues: unknown[][] = [[], []];
  const waiters: ((v: unknown) => void)[][] = [[], []];
  const make = (me: number): MigrationChannel => ({
    send(msg) {
      const w = waiters[1 - me].shift();
      if (w) w(structuredClone(msg));
      else queues[1 - me].push(structuredClone(msg));
      return Promise.resolve();
    },
    recv(timeoutMs = 5000) {
      if (queues[me].length) return Promise.resolve(queues[me].shift());
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new PpmError("timeout", "no message", "")), timeoutMs);
        waiters[me].push((v) => {
          clearTimeout(t);
          resolve(v);
        });
      });
    },
    streamSink: () => () => Promise.resolve(),
    endStream: () => Promise.resolve(),
    streamSource: () => ({ async *[Symbol.asyncIterator]() {} }),
    close() {},
  });
  return [make(0), make(1)];
}

/** A `sleep` with only stdin/stdout/stderr open (Deno hands children a pipe of its own). */
function sleeper(): Deno.ChildProcess {
  const closeFds =
    'for f in /proc/self/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done; exec sleep 30';
  return new Deno.Command("bash", {
    args: ["-c", closeFds],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  })
    .spawn();
}

Deno.test("offer: describes the process, its kernel, CPU and every mapped file", async () => {
  const child = sleeper();
  await new Promise((r) => setTimeout(r, 200));
  try {
    const o = await buildOffer(child.pid, "nodeA");
    assertEquals([o.op, o.pid, o.comm, o.kernel, o.abi], [
      "offer",
      child.pid,
      "sleep",
      Deno.osRelease(),
      PPM_ABI_VERSION,
    ]);
    assert(o.files.some((f) => /sleep$/.test(f.path) && /^[0-9a-f]{64}$/.test(f.sha256)));
    assertEquals(o.origin, { node: "nodeA", pid: child.pid });
    assertEquals(o.stdin, "null");
    assert(o.estimatedBytes > 0 && o.estimatedBytes < 64 << 20, `${o.estimatedBytes}`);
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
});

Deno.test("destination refuses an offer from another kernel; the source says the process runs on", async () => {
  const [src, dst] = pair();
  const child = sleeper();
  await new Promise((r) => setTimeout(r, 200));
  try {
    // A destination that sees a different kernel in the offer.
    const dest = (async () => {
      const offer = await dst.recv() as Offer;
      await dst.send({
        op: "offer-reply",
        ok: false,
        reason: `kernel ${offer.kernel} differs from 9.9.9`,
      });
    })();
    let err: unknown;
    try {
      await migrateOut(child.pid, src, { node: "nodeA", stepTimeoutMs: 5000 });
    } catch (e) {
      err = e;
    }
    await dest;
    assert(err instanceof PpmError);
    assertMatch((err as PpmError).what, /runs on here/);
    assertMatch((err as PpmError).why, /differs from 9\.9\.9/);
    assertEquals(
      await Promise.race([
        child.status.then(() => "ended"),
        new Promise((r) => setTimeout(() => r("running"), 100)),
      ]),
      "running",
    );
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
});

Deno.test("migrateIn refuses offers it cannot honour, with the reason", async () => {
  const cases: [Partial<Offer>, RegExp][] = [
    [{ abi: PPM_ABI_VERSION + 1 }, /ABI/],
    [{ kernel: "5.10.0-1-amd64" }, /kernel 5\.10\.0-1-amd64/],
    // Features of other CPU families; whichever this CPU lacks (it cannot have all of them).
    [
      { cpuFlags: ["sse4a", "fma4", "avx512_4vnniw", "avx512_4fmaps", "amx_fp8"] },
      /lacks features/,
    ],
    [{ pid: Deno.pid }, /is taken/],
    [{ cwd: "/nonexistent/dir" }, /working directory \/nonexistent\/dir does not exist/],
    [
      { files: [{ path: "/nonexistent/lib.so", size: 1, sha256: "0".repeat(64) }] },
      /does not exist here/,
    ],
  ];
  for (const [change, why] of cases) {
    const [src, dst] = pair();
    const offer: Offer = {
      op: "offer",
      pid: 4_000_000,
      comm: "x",
      tids: [],
      kernel: Deno.osRelease(),
      cpuFlags: [],
      abi: PPM_ABI_VERSION,
      files: [],
      estimatedBytes: 0,
      from: "nodeA",
      origin: { node: "nodeA", pid: 4_000_000 },
      moves: 0,
      stdin: "null",
      fromAddr: "",
      sockets: [],
      cwd: "/",
      ...change,
    };
    const served = migrateIn(dst, { runDir: "/tmp", stepTimeoutMs: 5000 });
    await src.send(offer);
    const reply = await src.recv() as { ok: boolean; reason: string };
    assertEquals(reply.ok, false, JSON.stringify(change));
    assertMatch(reply.reason, why);
    assertEquals(await served, undefined);
  }
});

Deno.test("outcome query: hostile queries are not queries; the answer is what runs here", () => {
  for (
    const bad of [
      null,
      "outcome?",
      { op: "outcome?" },
      { op: "outcome?", pid: -1, comm: "x" },
      { op: "outcome?", pid: 1.5, comm: "x" },
      { op: "outcome?", pid: 2 ** 40, comm: "x" },
      { op: "outcome?", pid: 5, comm: 7 },
      { op: "outcome?", pid: 5, comm: "x".repeat(65) },
      { op: "outcome", pid: 5, comm: "x" },
    ]
  ) {
    assertEquals(asMessage(bad, "outcome?"), undefined, JSON.stringify(bad));
  }
  const me = Deno.readTextFileSync(`/proc/${Deno.pid}/comm`).trim();
  assertEquals(answerOutcome({ op: "outcome?", pid: Deno.pid, comm: me }, false), "running");
  assertEquals(answerOutcome({ op: "outcome?", pid: Deno.pid, comm: me }, true), "pending");
  // Another process with that PID (another name): not it.
  assertEquals(answerOutcome({ op: "outcome?", pid: Deno.pid, comm: "other" }, false), "absent");
  assertEquals(answerOutcome({ op: "outcome?", pid: 4_000_000, comm: me }, false), "absent");
});
