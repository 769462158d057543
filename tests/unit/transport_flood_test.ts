/**
 * Pre-authentication exhaustion: silent and stalled connections from
 * several loopback addresses (127.0.0.1, 127.0.0.2, ...) against a listener,
 * the per-source and overall limits on half-open handshakes, and a real node
 * that must get in all the same. Loopback only; every wait is bounded.
 */
import { EXIT, PpmError } from "../../core/errors.ts";
import { listenPeers, sourceOf } from "../../core/transport/conn.ts";
import { KIND, PRE_AUTH_MAX_PAYLOAD } from "../../core/transport/frame.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import {
  connectFrom,
  hashStream,
  MiB,
  pattern,
  SECRET,
  sha256,
  sleep,
  type SourcedSocket,
  within,
  withServer,
} from "./transport_support.ts";

/** The loopback addresses the floods come from. */
const SOURCES = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];

/** What a flooding connection does after connecting. */
function stall(s: SourcedSocket, i: number): void {
  switch (i % 3) {
    case 0: // nothing
      break;
    case 1: // one byte of a header
      s.write(new Uint8Array([KIND.CONTROL]));
      break;
    case 2: { // the largest header allowed before authentication, and half its payload
      const h = new Uint8Array(5 + PRE_AUTH_MAX_PAYLOAD / 2);
      h[0] = KIND.CONTROL;
      new DataView(h.buffer).setUint32(1, PRE_AUTH_MAX_PAYLOAD, true);
      s.write(h);
    }
  }
}

/** Opens `n` stalling connections, spread over `sources`, `batch` at a time. */
async function flood(
  port: number,
  n: number,
  sources: string[],
  held: SourcedSocket[],
  batch = 25,
): Promise<void> {
  for (let i = 0; i < n; i += batch) {
    const made = await Promise.all(
      Array.from(
        { length: Math.min(batch, n - i) },
        (_, k) => connectFrom(port, sources[(i + k) % sources.length]),
      ),
    );
    made.forEach((s, k) => stall(s, i + k));
    held.push(...made);
  }
}

async function release(held: SourcedSocket[]): Promise<void> {
  for (const s of held) s.destroy();
  await within(Promise.all(held.map((s) => s.closed)), "closing the flood", 10_000);
}

/** A real node: connects, exchanges a control message and a 1 MiB stream; returns the ms taken. */
async function realExchange(s: Parameters<Parameters<typeof withServer>[1]>[0]): Promise<number> {
  const t0 = performance.now();
  const client = await s.connect({ timeoutMs: 5_000 });
  const server = await s.next();
  await client.send({ op: "offer", pid: 1 });
  assertEquals(await server.recv(5_000), { op: "offer", pid: 1 });
  const data = pattern(MiB, 9);
  const [, got] = await within(
    Promise.all([
      client.sendStream(
        (async function* () {
          yield data;
        })(),
        1,
      ),
      hashStream(server.streamSource(1)),
    ]),
    "1 MiB stream",
    5_000,
  );
  assertEquals(got, { hash: sha256(data), bytes: MiB });
  client.close();
  await within(Promise.all([client.closed, server.closed]), "closing", 5_000);
  return performance.now() - t0;
}

Deno.test("flood: 200 silent or stalled connections from 5 addresses do not keep a real node out", async () => {
  // A long handshake bound, so only the limits (not timeouts) can make room.
  await withServer({ handshakeTimeoutMs: 30_000 }, async (s) => {
    const held: SourcedSocket[] = [];
    try {
      await within(flood(s.port, 200, SOURCES, held), "opening 200 connections", 10_000);
      // Let the listener accept them all.
      const settled = () => (s.listener.refused.busy ?? 0) + s.listener.pending;
      for (let i = 0; i < 250 && settled() < 200; i++) await sleep(20);
      assert(s.listener.pending <= SOURCES.length * 8, `${s.listener.pending} half-open`);
      const busy = s.listener.refused.busy ?? 0;
      assertEquals(busy + s.listener.pending, 200);

      // A real node from 127.0.0.1, one of the flooding addresses.
      const ms = await realExchange(s);
      console.log(
        `flood: ${held.length} connections, ${busy} dropped as busy, ` +
          `${s.listener.pending} half-open; a real exchange took ${ms.toFixed(0)} ms`,
      );
      assert(ms < 5_000, `${ms} ms`);
      assertEquals(s.listener.accepted, 1);

      // And again while the flood goes on from the other addresses.
      let flooding = true;
      const more = (async () => {
        while (flooding) await flood(s.port, 10, SOURCES.slice(1), held, 10);
      })();
      try {
        await sleep(50);
        assert((await realExchange(s)) < 5_000);
      } finally {
        flooding = false;
        await within(more, "stopping the flood");
      }
      assertEquals(s.listener.accepted, 2);
      assert(s.listener.pending <= SOURCES.length * 8);
      const r = await s.refusal();
      assertEquals(r.code, "busy");
      assertMatch(
        r.reason,
        /^more than 8 handshakes at once from 127\.0\.0\.\d: the oldest was dropped$/,
      );
    } finally {
      await release(held);
    }
  });
});

function countClosed(held: SourcedSocket[]): number {
  return held.filter((s) => s.isClosed).length;
}

Deno.test("flood: the per-source limit drops that source's oldest; the overall one the busiest source's", async () => {
  await withServer(
    { handshakeTimeoutMs: 30_000, maxPendingPerSource: 2, maxPendingHandshakes: 5 },
    async (s) => {
      const held: SourcedSocket[] = [];
      const open = async (from: string) => {
        const c = await connectFrom(s.port, from);
        held.push(c);
        for (let i = 0; i < 100 && s.listener.pending + countClosed(held) < held.length; i++) {
          await sleep(10);
        }
        return c;
      };
      try {
        const a = await open("127.0.0.2");
        const b1 = await open("127.0.0.1");
        const b2 = await open("127.0.0.1");
        const b3 = await open("127.0.0.1"); // over 2 from 127.0.0.1: b1 goes
        await within(b1.closed, "dropping b1");
        let r = await s.refusal();
        assertEquals(r.code, "busy");
        assertMatch(r.reason, /more than 2 handshakes at once from 127\.0\.0\.1/);
        const c1 = await open("127.0.0.3");
        const c2 = await open("127.0.0.3");
        assertEquals(s.listener.pending, 5);
        // Over 5 overall: the oldest of a source with the most (127.0.0.1 and .3 have 2; .1's
        // oldest, b2, is older than .3's).
        const d = await open("127.0.0.4");
        await within(b2.closed, "dropping b2");
        r = await s.refusal();
        assertMatch(r.reason, /^more than 5 handshakes at once: the oldest was dropped$/);
        await sleep(100);
        for (const [name, c] of Object.entries({ a, b3, c1, c2, d })) {
          assert(!c.isClosed, `${name} was dropped`);
        }
        assertEquals(s.listener.refused, { busy: 2 });
      } finally {
        await release(held);
      }
    },
  );
});

Deno.test("flood: many real clients at once from one address all get in (a dropped one retries)", async () => {
  await withServer({ maxPendingPerSource: 2 }, async (s) => {
    const n = 8;
    const clients = await within(
      Promise.all(Array.from({ length: n }, (_, i) => s.connect({ node: `client-${i}` }))),
      "connecting 8 at once",
    );
    const servers = await Promise.all(clients.map(() => s.next()));
    assertEquals(servers.map((c) => c.peer).sort(), clients.map((c) => c.node).sort());
    console.log(
      `${n} clients at once, at most 2 half-open: refused ${JSON.stringify(s.listener.refused)}`,
    );
    assertEquals(s.listener.accepted, n);
    for (const c of clients) c.close();
  });
});

Deno.test("flood: a silent connection is dropped when the whole handshake's time is up", async () => {
  await withServer({ handshakeTimeoutMs: 300 }, async (s) => {
    const held: SourcedSocket[] = [];
    try {
      const t0 = performance.now();
      // A header, then one byte every 50 ms: progress, but the handshake never finishes.
      const slow = await connectFrom(s.port, "127.0.0.1");
      held.push(slow);
      slow.write(new Uint8Array([KIND.CONTROL, 100, 0, 0, 0]));
      const drip = setInterval(() => slow.write(new Uint8Array([0x80])), 50);
      try {
        await within(slow.closed, "dropping a dripping client", 5_000);
      } finally {
        clearInterval(drip);
      }
      const ms = performance.now() - t0;
      assert(ms >= 250 && ms < 2_000, `${ms} ms`);
      const r = await s.refusal();
      assertEquals(r.code, "timeout");
      assertMatch(r.reason, /^the handshake did not finish within 300 ms/);
    } finally {
      await release(held);
    }
  });
});

Deno.test("flood: sources are addresses, and IPv6 /64 prefixes", () => {
  assertEquals(sourceOf("10.0.0.2"), "10.0.0.2");
  assertEquals(sourceOf("::ffff:10.0.0.2"), "10.0.0.2");
  assertEquals(sourceOf("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  assertEquals(sourceOf("2001:db8:1:2:bbbb:cccc:dddd:eeee"), "2001:db8:1:2::/64");
  assertEquals(sourceOf("2001:db8::1"), "2001:db8:0:0::/64");
  assertEquals(sourceOf("::1"), "0:0:0:0::/64");
  assertEquals(sourceOf("fe80::1%eth0"), "fe80:0:0:0::/64");
});

Deno.test("flood: limits that are not positive integers are refused at once", () => {
  for (const bad of [{ maxPendingPerSource: 0 }, { maxPendingHandshakes: 1.5 }]) {
    let err: unknown;
    try {
      listenPeers({
        hostname: "127.0.0.1",
        port: 0,
        secret: SECRET,
        node: "n",
        onConnection: () => {},
        ...bad,
      }).close();
    } catch (e) {
      err = e;
    }
    assert(err instanceof PpmError, JSON.stringify(bad));
    assertEquals(err.exitCode, EXIT.USAGE);
    assertMatch(err.message, /is not a positive integer/);
  }
});
