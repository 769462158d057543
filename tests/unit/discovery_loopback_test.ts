/**
 * The announcer and the listener with real sockets, on 127.0.0.1 only and
 * without multicast (the listener joins no group, announcements go to
 * 127.0.0.1): needs no root. The multicast path is tested in namespaces by
 * discovery_netns_test.ts.
 */
import dgram from "node:dgram";
import {
  announceKey,
  Announcer,
  instantLoadVector,
  Listener,
  type NodeIdentity,
  type PeerEvent,
  sealPacket,
} from "../../core/discovery/mod.ts";
import { assert, assertEquals } from "../support/assert.ts";

const KEY = announceKey(new Uint8Array(32).fill(1));
const INTERVAL = 100;

function identity(name: string, id: string): NodeIdentity {
  return {
    id,
    name,
    hostname: name,
    addresses: ["127.0.0.1"],
    migrationPort: 7378,
    version: "0.1.0",
    abi: 1,
    kernel: Deno.osRelease(),
    cpu: { hash: "0123456789abcdef", flags: ["sse2"] },
    startedAt: Date.now(),
  };
}

const load = () =>
  instantLoadVector({
    at: Date.now() / 1000,
    runnable: 1,
    cpus: 2,
    speed: 1,
    loadavg: [0, 0, 0],
    memTotal: 1e9,
    memAvailable: 5e8,
  });

function announcer(l: Listener, name: string, id: string, key = KEY): Promise<Announcer> {
  return Announcer.open({
    key,
    identity: identity(name, id),
    intervalMs: INTERVAL,
    load,
    target: { address: "127.0.0.1", port: l.port },
    sender: { interfaceAddress: null, ttl: 1, loopback: false },
  });
}

/** Waits (bounded) for an event matching `pred`; returns the milliseconds it took. */
async function waitEvent(
  events: { at: number; e: PeerEvent }[],
  pred: (e: PeerEvent) => boolean,
  since: number,
  timeoutMs: number,
): Promise<number> {
  return (await waitHit(events, pred, since, timeoutMs)).at - since;
}

/** Waits (bounded) for an event matching `pred`. */
async function waitHit(
  events: { at: number; e: PeerEvent }[],
  pred: (e: PeerEvent) => boolean,
  since: number,
  timeoutMs: number,
): Promise<{ at: number; e: PeerEvent }> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const hit = events.find((x) => x.at >= since && pred(x.e));
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(
    `no matching event in ${timeoutMs} ms: ${JSON.stringify(events.map((x) => x.e.type))}`,
  );
}

Deno.test("discovery loopback: join, leave message, expiry, forged and replayed packets", async () => {
  const listener = await Listener.open({
    key: KEY,
    selfId: "ffffffffffffffff",
    selfName: "self",
    expiry: 3,
    port: 0,
    group: null,
    interfaceAddress: null,
    bind: "127.0.0.1",
    tickMs: 10,
  });
  const started: Announcer[] = [];
  const raw = dgram.createSocket("udp4");
  try {
    const events: { at: number; e: PeerEvent }[] = [];
    listener.on((e) => events.push({ at: Date.now(), e }));
    const iterated: string[] = [];
    const ac = new AbortController();
    const consumer = (async () => {
      for await (const e of listener.stream(ac.signal)) {
        if (e.type !== "update") iterated.push(e.type);
      }
    })();

    // Joins within one interval: the first announcement goes out at once.
    const a = await announcer(listener, "a", "000000000000000a");
    const b = await announcer(listener, "b", "000000000000000b");
    started.push(a, b);
    let t = Date.now();
    a.start();
    b.start();
    const isJoin = (name: string) => (e: PeerEvent) => e.type === "join" && e.peer.name === name;
    assert(await waitEvent(events, isJoin("a"), t, 3 * INTERVAL) <= 3 * INTERVAL);
    await waitEvent(events, isJoin("b"), t, 3 * INTERVAL);
    await waitEvent(events, (e) => e.type === "update", t, 3 * INTERVAL);
    assertEquals(listener.snapshot().map((p) => [p.name, p.state]), [["a", "alive"], [
      "b",
      "alive",
    ]]);

    // A forged packet and a replayed one are ignored and counted.
    const before = structuredClone(listener.state.counters);
    const forged = sealPacket(
      {
        ...identity("a", "000000000000000a"),
        load: load(),
        seq: 1e6,
        timestamp: Date.now(),
        interval: 100,
        leaving: true,
      },
      announceKey(new Uint8Array(32).fill(2)),
    );
    const replayed = await a.announce();
    assert(replayed);
    await new Promise((r) => setTimeout(r, 20));
    for (const p of [forged, replayed]) {
      await new Promise<void>((res, rej) =>
        raw.send(p, listener.port, "127.0.0.1", (e) => (e ? rej(e) : res()))
      );
    }
    const deadline = Date.now() + 2000;
    while (
      Date.now() < deadline && listener.state.counters.ignored.replay === before.ignored.replay
    ) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assertEquals(listener.state.counters.ignored.forged, before.ignored.forged + 1);
    assertEquals(listener.state.counters.ignored.replay, before.ignored.replay + 1);
    assertEquals(listener.snapshot().length, 2);

    // A clean stop tells the listener at once.
    t = Date.now();
    await a.stop();
    const leftAfter = await waitEvent(
      events,
      (e) => e.type === "leave" && e.peer.name === "a" && e.reason === "left",
      t,
      INTERVAL,
    );
    // A silent one expires 3 intervals after its last announcement (checked every 10 ms).
    t = Date.now();
    await b.stop({ leave: false });
    const expired = await waitHit(
      events,
      (e) => e.type === "leave" && e.peer.name === "b" && e.reason === "expired",
      t,
      6 * INTERVAL,
    );
    const expiredAfter = expired.at - expired.e.peer.lastSeen;
    assert(expiredAfter > 3 * INTERVAL && expiredAfter <= 4 * INTERVAL, `${expiredAfter} ms`);
    assert(expired.at - t <= 4 * INTERVAL, `${expired.at - t} ms after the stop`);
    assertEquals(listener.snapshot(), []);
    ac.abort();
    await consumer;
    assertEquals(iterated, ["join", "join", "leave", "leave"]);
    console.log(`leave seen after ${leftAfter} ms; expired ${expiredAfter} ms after the last one`);
    const c = listener.state.counters;
    assertEquals(c.received, c.accepted + Object.values(c.ignored).reduce((x, y) => x + y, 0));
  } finally {
    for (const a of started) await a.stop({ leave: false });
    await new Promise<void>((r) => raw.close(() => r()));
    await listener.close();
  }
});
