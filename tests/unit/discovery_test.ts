/**
 * Discovery without sockets: the packet (encode, MAC, checks), freshness and
 * replay, the peer table with a fake clock, the counters, events, and the
 * local facts that go into an announcement.
 */
import { Encoder } from "@msgpack/msgpack";
import { assessPeers } from "../../core/balance/peers.ts";
import { DEFAULT_BALANCE_SETTINGS } from "../../core/balance/settings.ts";
import { LoadTracker } from "../../core/balance/tracker.ts";
import type { LoadSample } from "../../core/balance/types.ts";
import { PpmError } from "../../core/errors.ts";
import { hmac } from "../../core/security/secret.ts";
import {
  announcedAddresses,
  announceKey,
  checkAnnouncement,
  cpuFeatures,
  DiscoveryState,
  EventHub,
  flagBytes,
  HEADER_BYTES,
  ignoredTotal,
  instantLoadVector,
  interfaceAddress,
  type Interfaces,
  loadVector,
  MAC_BYTES,
  MAGIC,
  MalformedAnnouncement,
  MAX_CPU_FLAG_BYTES,
  MAX_PACKET_BYTES,
  newNodeId,
  openPacket,
  peekPacket,
  type PeerAnnouncement,
  type PeerEvent,
  PeerTable,
  ReplayGuard,
  sealPacket,
  WIRE_VERSION,
} from "../../core/discovery/mod.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "../support/assert.ts";

const SECRET = new Uint8Array(32).fill(7);
const KEY = announceKey(SECRET);
const OTHER_KEY = announceKey(new Uint8Array(32).fill(8));
const T0 = 1_700_000_000_000;
const GiB = 2 ** 30;

function ann(over: Partial<PeerAnnouncement> = {}): PeerAnnouncement {
  return {
    id: "00112233445566aa",
    name: "node2",
    hostname: "node2.cluster",
    addresses: ["10.88.0.2"],
    migrationPort: 7378,
    version: "0.1.0",
    abi: 1,
    kernel: "6.1.0-18-amd64",
    cpu: { hash: "0123456789abcdef", flags: ["avx", "avx2", "sse4_2"] },
    load: {
      load: 0.5,
      cpus: 4,
      speed: 1,
      memTotal: 16 * GiB,
      memAvailable: 12 * GiB,
      drain: false,
      at: T0 / 1000,
      runnable: 2,
      loadavg: [0.5, 0.4, 0.3],
      cpuPressure: 1.5,
    },
    seq: 1,
    timestamp: T0,
    startedAt: T0 - 5000,
    interval: 1000,
    leaving: false,
    ...over,
  };
}

/** A packet with a valid MAC around an arbitrary body. */
function sealRaw(body: Uint8Array, key = KEY, version = WIRE_VERSION): Uint8Array {
  const head = new Uint8Array([...MAGIC, version, ...body]);
  return new Uint8Array([...head, ...hmac(key, head)]);
}

function state(selfName = "node1") {
  return new DiscoveryState({ key: KEY, selfId: "ffffffffffffffff", selfName, expiry: 3 });
}

// ------------------------------------------------------------------ packet

Deno.test("discovery packet: round trip, layout, and the MAC covers header and body", () => {
  const a = ann();
  const p = sealPacket(a, KEY);
  assertEquals(new TextDecoder().decode(p.subarray(0, 4)), "PPMA");
  assertEquals(p[4], WIRE_VERSION);
  assert(p.length < MAX_PACKET_BYTES, `${p.length} bytes`);
  const end = p.length - MAC_BYTES;
  assertEquals(p.subarray(end), hmac(KEY, p.subarray(0, end)));
  const opened = openPacket(p, KEY);
  assert(opened.ok);
  assertEquals(opened.announcement, a);
  assertEquals(peekPacket(p), { id: a.id, seq: 1 });
  // Without the optional PSI figure.
  const { cpuPressure: _, ...load } = a.load;
  const b = ann({ load });
  const ob = openPacket(sealPacket(b, KEY), KEY);
  assert(ob.ok);
  assertEquals(ob.announcement, b);
});

Deno.test("discovery packet: with every field at its limit a packet stays within 1200 bytes", () => {
  // 20 flags of 23 characters: 480 bytes, the budget.
  const flags = Array.from({ length: 20 }, (_, i) => `f${String(i).padStart(22, "0")}`);
  assertEquals(flagBytes(flags), MAX_CPU_FLAG_BYTES);
  const odd = 0.1; // a float: 9 bytes, the most a number takes
  const big = ann({
    name: "n".repeat(64),
    hostname: "h".repeat(64),
    kernel: "k".repeat(64),
    version: "v".repeat(32),
    addresses: Array(4).fill("223.255.255.254"),
    migrationPort: 65535,
    abi: 0x7fffffff,
    cpu: { hash: "0123456789abcdef", flags },
    seq: Number.MAX_SAFE_INTEGER,
    timestamp: Number.MAX_SAFE_INTEGER,
    startedAt: Number.MAX_SAFE_INTEGER,
    interval: 3_600_000,
    load: {
      load: odd,
      cpus: 1 << 20,
      speed: odd,
      memTotal: odd,
      memAvailable: odd,
      drain: false,
      at: odd,
      runnable: odd,
      loadavg: [odd, odd, odd],
      cpuPressure: odd,
    },
  });
  const p = sealPacket(big, KEY);
  assert(p.length <= MAX_PACKET_BYTES && MAX_PACKET_BYTES <= 1200, `${p.length} bytes`);
  // More flags are refused before sending (and by receivers).
  const more = ann({ cpu: { hash: "0123456789abcdef", flags: [...flags, "x"] } });
  assertThrows(() => sealPacket(more, KEY), (e) => e instanceof MalformedAnnouncement);
  // This machine's flags fit, trimmed to the budget if need be.
  const mine = cpuFeatures(Deno.readTextFileSync("/proc/cpuinfo"));
  assert(flagBytes(mine.flags) <= MAX_CPU_FLAG_BYTES);
  const many = cpuFeatures(`flags : ${Array.from({ length: 200 }, (_, i) => `avx${i}`).join(" ")}`);
  assert(flagBytes(many.flags) <= MAX_CPU_FLAG_BYTES && many.flags.length > 50);
  assert(sealPacket(ann({ cpu: many }), KEY).length <= MAX_PACKET_BYTES);
});

Deno.test("discovery packet: forged, wrong secret and tampered packets are refused", () => {
  const p = sealPacket(ann(), KEY);
  const wrong = openPacket(p, OTHER_KEY);
  assertEquals(wrong.ok ? "" : wrong.reason, "forged");
  assertEquals(openPacket(sealPacket(ann(), OTHER_KEY), KEY).ok, false);
  for (const i of [HEADER_BYTES + 3, p.length - 1, p.length - MAC_BYTES - 1]) {
    const t = p.slice();
    t[i] ^= 1;
    const r = openPacket(t, KEY);
    assertEquals(r.ok ? "" : r.reason, "forged", `byte ${i}`);
  }
  // The version byte cannot be changed: another version is refused as such ...
  const v = p.slice();
  v[4] = 2;
  const rv = openPacket(v, KEY);
  assertEquals(rv.ok ? "" : rv.reason, "version");
  // ... and a packet of another version, even authentic, too.
  const other = openPacket(sealRaw(new Uint8Array([0xc0]), KEY, 9), KEY);
  assertEquals(other.ok ? "" : other.reason, "version");
});

Deno.test("discovery packet: garbage, short, foreign, malformed and oversized packets", () => {
  const reason = (p: Uint8Array) => {
    const r = openPacket(p, KEY);
    return r.ok ? "accepted" : r.reason;
  };
  assertEquals(reason(new Uint8Array()), "malformed");
  assertEquals(reason(new Uint8Array([0x50, 0x50, 0x4d, 0x41, 1])), "malformed");
  assertEquals(reason(crypto.getRandomValues(new Uint8Array(300))), "malformed");
  assertEquals(reason(new TextEncoder().encode("M-SEARCH * HTTP/1.1\r\n".repeat(5))), "malformed");
  assertEquals(reason(new Uint8Array(MAX_PACKET_BYTES + 1)), "oversized");
  const big = sealPacket(ann(), KEY);
  assertEquals(reason(new Uint8Array([...big, ...new Uint8Array(MAX_PACKET_BYTES)])), "oversized");
  // Authentic but not an announcement: not msgpack, trailing bytes, wrong types, missing fields.
  const enc = new Encoder();
  const bodies: [Uint8Array, RegExp][] = [
    [new Uint8Array([0xc1]), /not msgpack/],
    [new Uint8Array([...enc.encode(ann()), 0]), /not msgpack/],
    [enc.encode([1, 2, 3]), /the announcement is/],
    [enc.encode({ ...ann(), seq: 0 }), /^seq is 0/],
    [enc.encode({ ...ann(), seq: 1.5 }), /^seq is 1.5/],
    [enc.encode({ ...ann(), id: "XYZ" }), /^id is "XYZ"/],
    [enc.encode({ ...ann(), name: "-bad" }), /^name is/],
    [enc.encode({ ...ann(), hostname: "a b" }), /^hostname is/],
    [enc.encode({ ...ann(), addresses: ["239.1.1.1"] }), /^addresses is/],
    [enc.encode({ ...ann(), addresses: Array(5).fill("10.0.0.1") }), /^addresses is/],
    [enc.encode({ ...ann(), migrationPort: 70000 }), /^migrationPort is/],
    [enc.encode({ ...ann(), interval: 10 }), /^interval is 10/],
    [enc.encode({ ...ann(), leaving: 1 }), /^leaving is 1/],
    [enc.encode({ ...ann(), cpu: { hash: "x", flags: [] } }), /^cpu.hash is/],
    [enc.encode({ ...ann(), cpu: { hash: "0123456789abcdef", flags: ["A B"] } }), /^cpu.flags/],
    [enc.encode({ ...ann(), load: { ...ann().load, cpus: 0 } }), /^load.cpus is 0/],
    [enc.encode({ ...ann(), load: { ...ann().load, memTotal: -1 } }), /^load.memTotal is -1/],
    [enc.encode({ ...ann(), load: { ...ann().load, loadavg: [1, 2] } }), /^load.loadavg/],
    [enc.encode({ ...ann(), load: { ...ann().load, drain: "no" } }), /^load.drain/],
    [new Encoder({ useBigInt64: true }).encode({ ...ann(), seq: 2n ** 60n }), /^seq is 1152921/],
  ];
  const { timestamp: _, ...noTimestamp } = ann();
  bodies.push([enc.encode(noTimestamp), /^timestamp is undefined/]);
  for (const [body, re] of bodies) {
    const r = openPacket(sealRaw(body), KEY);
    assert(!r.ok, `accepted ${re}`);
    assertEquals(r.reason, "malformed");
    assertMatch(r.detail, re);
  }
  // 64-bit integers from another encoder are read as numbers.
  const wide = openPacket(
    sealRaw(new Encoder({ useBigInt64: true }).encode({ ...ann(), seq: 5n })),
    KEY,
  );
  assert(wide.ok);
  assertEquals(wide.announcement.seq, 5);
  // Unknown fields from a newer ppm are dropped, not refused.
  const r = openPacket(sealRaw(enc.encode({ ...ann(), future: { x: 1 } })), KEY);
  assert(r.ok);
  assertEquals(r.announcement, ann());
  assertEquals(peekPacket(new Uint8Array(10)), null);
  // A node never sends what its peers would refuse.
  const says = (re: RegExp) => (e: unknown) =>
    e instanceof MalformedAnnouncement && re.test(e.message);
  assertThrows(() => sealPacket(ann({ seq: -1 }), KEY), says(/seq is -1/));
  assertThrows(() => checkAnnouncement({ ...ann(), abi: "1" }), says(/abi is "1"/));
});

// ------------------------------------------------------------- replay guard

Deno.test("discovery replay: sequence numbers must grow per sender; stale and future times", () => {
  const g = new ReplayGuard({ windowMs: 30_000, futureMs: 5_000 });
  assertEquals(g.accept("a", 5, T0, T0), "fresh");
  assertEquals(g.accept("a", 5, T0, T0), "replay");
  assertEquals(g.accept("a", 4, T0 + 1, T0), "replay");
  assertEquals(g.accept("a", 6, T0, T0), "fresh");
  assertEquals(g.accept("b", 1, T0, T0), "fresh"); // another run starts at 1
  assertEquals(g.check("a", 7, T0 - 30_001, T0), "stale");
  assertEquals(g.check("a", 7, T0 - 30_000, T0), "fresh");
  assertEquals(g.check("a", 7, T0 + 5_001, T0), "future");
  assertEquals(g.check("a", 7, T0 + 5_000, T0), "fresh");
  // check() does not remember; a refused packet does not move the sequence.
  assertEquals(g.accept("a", 9, T0 - 40_000, T0), "stale");
  assertEquals(g.accept("a", 7, T0, T0), "fresh");
  // A sender is forgotten only when all its packets would be stale anyway.
  g.prune(T0 + 29_000);
  assertEquals(g.size, 2);
  g.prune(T0 + 30_001);
  assertEquals(g.size, 0);
  assertEquals(g.accept("a", 5, T0, T0 + 30_001), "stale");
  // The number of senders is bounded; the least recently heard is forgotten.
  const small = new ReplayGuard({ maxSenders: 2 });
  small.accept("x", 1, T0, T0);
  small.accept("y", 1, T0, T0);
  small.accept("x", 2, T0, T0);
  small.accept("z", 1, T0, T0);
  assertEquals(small.size, 2);
  assertEquals(small.check("x", 2, T0, T0), "replay");
  assertEquals(small.check("y", 1, T0, T0), "fresh");
});

// ------------------------------------------------------------ state & table

Deno.test("discovery state: join, update, self, replay, stale, future, forged; counters", () => {
  const s = state();
  const from = "10.88.0.2:40000";
  let r = s.receive(sealPacket(ann(), KEY), from, T0);
  assertEquals(r.verdict, "accepted");
  assertEquals(r.events.map((e) => e.type), ["join"]);
  assertEquals(r.events[0].peer.from, from);
  r = s.receive(sealPacket(ann({ seq: 2, timestamp: T0 + 1000 }), KEY), from, T0 + 1000);
  assertEquals(r.events.map((e) => e.type), ["update"]);
  // The same packet again, and an older one: replays.
  assertEquals(s.receive(sealPacket(ann({ seq: 2 }), KEY), from, T0 + 1000).verdict, "replay");
  assertEquals(s.receive(sealPacket(ann(), KEY), from, T0 + 1000).verdict, "replay");
  // Times outside the window.
  const old = ann({ seq: 3, timestamp: T0 - 30_000 });
  assertEquals(s.receive(sealPacket(old, KEY), from, T0 + 1000).verdict, "stale");
  const ahead = ann({ seq: 3, timestamp: T0 + 7000 });
  assertEquals(s.receive(sealPacket(ahead, KEY), from, T0 + 1000).verdict, "future");
  // Forged, garbage, own, another agent with our name.
  assertEquals(s.receive(sealPacket(ann({ seq: 9 }), OTHER_KEY), from, T0).verdict, "forged");
  assertEquals(s.receive(new Uint8Array(20), from, T0).verdict, "malformed");
  assertEquals(s.receive(new Uint8Array(1500), from, T0).verdict, "oversized");
  const own = ann({ id: "ffffffffffffffff", name: "node1" });
  assertEquals(s.receive(sealPacket(own, KEY), from, T0).verdict, "self");
  const clash = ann({ id: "0000000000000001", name: "node1" });
  assertEquals(s.receive(sealPacket(clash, KEY), from, T0).verdict, "conflict");
  assertEquals(s.table.size, 1);
  assertEquals(s.counters.received, 11);
  assertEquals(s.counters.accepted, 2);
  assertEquals(s.counters.ignored, {
    oversized: 1,
    malformed: 1,
    version: 0,
    forged: 1,
    self: 1,
    stale: 1,
    future: 1,
    replay: 2,
    conflict: 1,
  });
  assertEquals(ignoredTotal(s.counters), 9);
  assertEquals(s.counters.received, s.counters.accepted + ignoredTotal(s.counters));
});

Deno.test("discovery state: a peer expires after 3 missed intervals (fake clock), stale after 1.5", () => {
  const s = state();
  s.receive(sealPacket(ann({ interval: 250 }), KEY), "a", T0);
  const peer = () => s.table.snapshot(T0 + elapsed)[0];
  let elapsed = 200;
  assertEquals(peer().state, "alive");
  assertEquals(peer().age, 0.2);
  elapsed = 376;
  assertEquals(peer().state, "stale");
  assertEquals(s.tick(T0 + 749), []);
  assertEquals(s.tick(T0 + 750), []);
  const gone = s.tick(T0 + 751);
  assertEquals(gone.map((e) => [e.type, e.type === "leave" ? e.reason : ""]), [[
    "leave",
    "expired",
  ]]);
  assertEquals(s.table.size, 0);
  // The expiry follows each peer's own interval and the configured count.
  const t = new PeerTable(5);
  t.observe(ann({ interval: 1000 }), "a", T0);
  t.observe(ann({ id: "00000000000000bb", name: "node3", interval: 100 }), "b", T0);
  assertEquals(t.expire(T0 + 501).map((e) => e.peer.name), ["node3"]);
  assertEquals(t.expire(T0 + 5000), []);
  assertEquals(t.expire(T0 + 5001).map((e) => e.peer.name), ["node2"]);
});

Deno.test("discovery state: a leaving announcement removes the peer at once, for good", () => {
  const s = state();
  const p1 = sealPacket(ann({ seq: 1 }), KEY);
  s.receive(p1, "a", T0);
  const left = s.receive(sealPacket(ann({ seq: 2, leaving: true }), KEY), "a", T0 + 10);
  assertEquals(left.verdict, "accepted");
  assertEquals(left.events.map((e) => [e.type, e.type === "leave" ? e.reason : ""]), [[
    "leave",
    "left",
  ]]);
  assertEquals(s.table.size, 0);
  // A second leave (sent in case the first is lost) changes nothing.
  assertEquals(s.receive(sealPacket(ann({ seq: 3, leaving: true }), KEY), "a", T0 + 20).events, []);
  // Replaying an earlier announcement does not bring it back.
  assertEquals(s.receive(p1, "a", T0 + 30).verdict, "replay");
  assertEquals(s.receive(p1, "a", T0 + 40_000).verdict, "stale");
  assertEquals(s.table.size, 0);
});

Deno.test("discovery table: a restarted node replaces its old run; the old run is a conflict", () => {
  const t = new PeerTable(3);
  const first = ann({ id: "000000000000000a", startedAt: T0 - 9000 });
  const second = ann({ id: "000000000000000b", startedAt: T0 - 1000 });
  t.observe(first, "a", T0);
  const o = t.observe(second, "a", T0 + 1);
  assertEquals(
    o.events.map((e) => `${e.type}:${e.peer.id}:${e.type === "leave" ? e.reason : ""}`),
    ["leave:000000000000000a:replaced", "join:000000000000000b:"],
  );
  const back = t.observe({ ...first, seq: 2 }, "a", T0 + 2);
  assertEquals(back, { events: [], conflict: true });
  assertEquals(t.snapshot(T0 + 3).map((p) => p.id), ["000000000000000b"]);
  // The state counts it.
  const s = state();
  s.receive(sealPacket(second, KEY), "a", T0);
  assertEquals(s.receive(sealPacket(first, KEY), "a", T0).verdict, "conflict");
  assertEquals(s.counters.ignored.conflict, 1);
});

Deno.test("discovery table: snapshots for ppm peers and views for the balancing policy", () => {
  const t = new PeerTable(3);
  t.observe(ann({ name: "b", id: "000000000000000b" }), "10.88.0.3:1", T0);
  t.observe(ann({ name: "a", id: "000000000000000a" }), "10.88.0.2:1", T0 + 500);
  const snap = t.snapshot(T0 + 1000);
  assertEquals(snap.map((p) => [p.name, p.state, p.age, p.from]), [
    ["a", "alive", 0.5, "10.88.0.2:1"],
    ["b", "alive", 1, "10.88.0.3:1"],
  ]);
  assertEquals(snap[0].version, "0.1.0");
  assertEquals(snap[0].load.loadavg, [0.5, 0.4, 0.3]);
  assertEquals(JSON.parse(JSON.stringify(snap)), snap);
  const views = t.peerViews();
  assertEquals(views.find((v) => v.id === "a"), {
    id: "a",
    load: 0.5,
    cpus: 4,
    speed: 1,
    memTotal: 16 * GiB,
    memAvailable: 12 * GiB,
    drain: false,
    at: T0 / 1000,
  });
  const judged = assessPeers("self", views, [], DEFAULT_BALANCE_SETTINGS, T0 / 1000 + 1);
  assertEquals(judged.map((j) => j.verdict), ["target", "target"]);
  // A peer of another module ABI (an upgrade under way) is not offered to the balancer.
  t.observe(ann({ name: "c", id: "000000000000000c", abi: 99 }), "10.88.0.4:1", T0 + 600);
  assertEquals(t.peerViews().length, 3);
  const abi = t.snapshot(T0 + 1000).find((p) => p.name === "a")!.abi;
  assertEquals(t.peerViews(abi).map((v) => v.id).sort(), ["a", "b"]);
});

// ------------------------------------------------------------------ events

Deno.test("discovery events: callbacks and a bounded async iterator", async () => {
  const hub = new EventHub<number>();
  const seen: number[] = [];
  const off = hub.on((n) => seen.push(n));
  hub.on(() => {
    throw new Error("a failing subscriber");
  });
  const ac = new AbortController();
  const it = hub.stream(ac.signal, 3);
  for (let i = 1; i <= 5; i++) hub.emit(i);
  off();
  hub.emit(6);
  assertEquals(seen, [1, 2, 3, 4, 5]);
  assertEquals(it.dropped, 3);
  assertEquals((await it.next()).value, 4);
  assertEquals((await it.next()).value, 5);
  assertEquals((await it.next()).value, 6);
  const pending = it.next();
  ac.abort();
  assertEquals((await pending).done, true);
  const late = hub.stream();
  const collected: number[] = [];
  const done = (async () => {
    for await (const n of late) collected.push(n);
  })();
  hub.emit(7);
  hub.close();
  await done;
  assertEquals(collected, [7]);
  hub.emit(8);
  assertEquals((await hub.stream().next()).done, true);
});

Deno.test("discovery events: the listener's event type carries the reason of a leave", () => {
  const s = state();
  const events: PeerEvent[] = [];
  events.push(...s.receive(sealPacket(ann(), KEY), "a", T0).events);
  events.push(...s.tick(T0 + 3001));
  assertEquals(events.map((e) => e.type), ["join", "leave"]);
  const last = events[1];
  assert(last.type === "leave");
  assertEquals(last.reason, "expired");
});

// -------------------------------------------------------------- local facts

Deno.test("discovery local: ids, CPU features, interfaces, addresses, load vectors", () => {
  const a = newNodeId();
  assertMatch(a, /^[0-9a-f]{16}$/);
  assert(a !== newNodeId());
  const cpuinfo = "processor\t: 0\nflags\t\t: fpu sse sse2 avx2 ht avx vmx\n";
  const c = cpuFeatures(cpuinfo);
  assertEquals(c.flags, ["avx", "avx2", "sse", "sse2"]);
  assertMatch(c.hash, /^[0-9a-f]{16}$/);
  assertEquals(cpuFeatures("flags : avx2 sse avx ht sse2 vmx fpu").hash, c.hash);
  assert(cpuFeatures("flags : sse").hash !== c.hash);
  const ifs = [
    { family: "IPv4", name: "lo", address: "127.0.0.1" },
    { family: "IPv6", name: "eth0", address: "fe80::1" },
    { family: "IPv4", name: "eth0", address: "192.168.1.5" },
    { family: "IPv4", name: "br0", address: "10.88.0.1" },
    { family: "IPv4", name: "br0", address: "169.254.3.3" },
    { family: "IPv6", name: "wg0", address: "fd00::1" },
  ] as Interfaces;
  assertEquals(interfaceAddress(null, ifs), null);
  assertEquals(interfaceAddress("br0", ifs), "10.88.0.1");
  assertEquals(interfaceAddress("10.88.0.1", ifs), "10.88.0.1");
  const missing = (i: string, re: RegExp) =>
    assertThrows(() => interfaceAddress(i, ifs), (e) => e instanceof PpmError && re.test(e.why));
  missing("br9", /no such interface/);
  missing("wg0", /no IPv4 address/);
  missing("10.9.9.9", /no interface of this node has that address/);
  assertEquals(announcedAddresses("10.0.0.9", "10.88.0.1", ifs), ["10.0.0.9"]);
  assertEquals(announcedAddresses(null, "10.88.0.1", ifs), ["10.88.0.1"]);
  assertEquals(announcedAddresses(null, null, ifs), ["192.168.1.5", "10.88.0.1"]);
  // The load vector carries the balancing announcement of the tracker.
  const sample: LoadSample = {
    at: T0 / 1000,
    runnable: 6,
    cpus: 4,
    speed: 1,
    loadavg: [1, 2, 3],
    memTotal: 8 * GiB,
    memAvailable: 4 * GiB,
  };
  const tracker = new LoadTracker("n", DEFAULT_BALANCE_SETTINGS);
  tracker.observe(sample);
  const lv = loadVector(tracker.announcement(true), sample);
  assertEquals(lv, {
    load: 1.5,
    cpus: 4,
    speed: 1,
    memTotal: 8 * GiB,
    memAvailable: 4 * GiB,
    drain: true,
    at: T0 / 1000,
    runnable: 6,
    loadavg: [1, 2, 3],
  });
  assertEquals(instantLoadVector({ ...sample, cpuPressure: 3 }).cpuPressure, 3);
  assert(openPacket(sealPacket(ann({ load: lv }), KEY), KEY).ok);
});

Deno.test("discovery table: time this node could not listen is not counted against its peers", () => {
  const s = state();
  s.receive(sealPacket(ann({ interval: 1000 }), KEY), "a", T0);
  // Held up 5 s: the peer's announcements wait unread; it is excused that long.
  s.table.excuse(5000);
  assertEquals(s.tick(T0 + 7900), []);
  assertEquals(s.tick(T0 + 8001).map((e) => e.type), ["leave"]);
});
