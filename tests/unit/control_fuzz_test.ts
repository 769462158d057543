/**
 * Authenticated control messages, fuzzed: offers (mutated from a real one,
 * field by field, with hostile values) and redirect requests. Each is
 * refused with a reason or taken as a well-formed value; nothing throws
 * past the handler, nothing hangs, and no offer names a path outside the
 * agent's run directory. PPM_FUZZ_ITERATIONS sets the number of cases
 * (default 400); PPM_FUZZ_SEED the seed.
 */
import { PpmError } from "../../core/errors.ts";
import { migrateIn } from "../../core/migrate/destination.ts";
import { checkOffer } from "../../core/migrate/offer_check.ts";
import type { MigrationChannel } from "../../core/transport/channel.ts";
import { buildOffer } from "../../core/migrate/source.ts";
import { serveRedirects } from "../../core/redirect/peers.ts";
import { assert, assertEquals } from "../support/assert.ts";

const N = Number(Deno.env.get("PPM_FUZZ_ITERATIONS") ?? "400");
let seed = Number(Deno.env.get("PPM_FUZZ_SEED") ?? "20261205");
function rand(n: number): number {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % n;
}

const HOSTILE: unknown[] = [
  undefined,
  null,
  true,
  -1,
  0,
  1.5,
  2 ** 53,
  -(2 ** 31),
  NaN,
  "",
  "../../../etc/passwd",
  "/etc/shadow\nfd 9 2 0 /etc/shadow",
  "a\0b",
  "x".repeat(70000),
  [],
  new Array(70000).fill(0),
  {},
  { op: "offer" },
  new Uint8Array(8),
  123n,
  2n ** 70n,
  { addr: "300.1.1.1", port: 80 },
  { addr: "1.2.3.4", port: 70000 },
  [{ path: "/x", id: { mode: -1 } }],
  [{ kind: "tcp", local: { addr: "1.2.3.4", port: 1 } }],
];

function mutate(o: Record<string, unknown>): Record<string, unknown> {
  const c: Record<string, unknown> = structuredClone(o);
  const keys = Object.keys(c);
  for (let k = 0; k <= rand(3); k++) {
    const key = keys[rand(keys.length)];
    const v = HOSTILE[rand(HOSTILE.length)];
    if (rand(4) === 0 && Array.isArray(c[key]) && (c[key] as unknown[]).length) {
      (c[key] as unknown[])[rand((c[key] as unknown[]).length)] = v;
    } else c[key] = v;
  }
  return c;
}

/** A channel whose peer sent `first`; records what is sent back. */
function channel(first: unknown): MigrationChannel & { sent: unknown[] } {
  const sent: unknown[] = [];
  let given = false;
  return {
    sent,
    send(msg) {
      sent.push(msg);
      return Promise.resolve();
    },
    recv() {
      if (!given) {
        given = true;
        return Promise.resolve(first);
      }
      return Promise.reject(new PpmError("closed", "the peer went away", ""));
    },
    streamSink: () => () => Promise.resolve(),
    endStream: () => Promise.resolve(),
    streamSource: () => ({
      // deno-lint-ignore require-yield
      async *[Symbol.asyncIterator]() {
        throw new PpmError("closed", "the peer went away", "");
      },
    }),
    close() {},
  };
}

Deno.test("fuzz: hostile offers are refused with a reason or checked whole; migrateIn never throws", async () => {
  const child = new Deno.Command("sleep", {
    args: ["30"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  })
    .spawn();
  const runDir = await Deno.makeTempDir();
  try {
    await new Promise((r) => setTimeout(r, 200));
    const good = await buildOffer(child.pid, "nodeA") as unknown as Record<string, unknown>;
    checkOffer(good);
    let refused = 0;
    for (let i = 0; i < N; i++) {
      const bad = mutate(good);
      try {
        const o = checkOffer(bad);
        assert(Number.isInteger(o.pid) && o.pid > 0, `case ${i}: pid ${o.pid}`);
        assert(o.cwd.startsWith("/") && !o.cwd.includes("\0"), `case ${i}: cwd`);
      } catch (e) {
        assert(e instanceof PpmError && e.what === "refused", `case ${i}: ${e}`);
        refused++;
      }
      if (i % 8 === 0) {
        const ch = channel(bad);
        const r = await migrateIn(ch, { runDir, stepTimeoutMs: 200 });
        assertEquals(r, undefined, `case ${i}`);
        const reply = ch.sent[0] as { op?: string; ok?: boolean } | undefined;
        assert(
          reply === undefined || reply.ok === false || reply.op === "offer-reply",
          `case ${i}`,
        );
      }
    }
    // Nothing was created outside the run directory, and nothing is left in it.
    assertEquals([...Deno.readDirSync(runDir)].length, 0);
    assert(refused > N / 4, `only ${refused} of ${N} refused`);
  } finally {
    child.kill("SIGKILL");
    await child.status;
    await Deno.remove(runDir, { recursive: true });
  }
});

Deno.test("fuzz: hostile redirect requests get an answer, never an exception", async () => {
  for (let i = 0; i < Math.min(N, 200); i++) {
    const req = rand(2) === 0
      ? {
        op: "redirect-add",
        entries: [HOSTILE[rand(HOSTILE.length)], HOSTILE[rand(HOSTILE.length)]],
      }
      : { op: "redirect-del", ids: HOSTILE[rand(HOSTILE.length)] };
    const sent: unknown[] = [];
    await serveRedirects(
      {
        send: (m) => {
          sent.push(m);
          return Promise.resolve();
        },
        recv: () => Promise.reject(new Error("closed")),
        close() {},
      },
      req as never,
      () => {},
    );
    assertEquals(sent.length, 1, `case ${i}: ${Deno.inspect(req).slice(0, 80)}`);
  }
});
