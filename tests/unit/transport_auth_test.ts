/**
 * The transport over loopback TCP: the handshake (forward-secret, no
 * downgrade), control messages, byte streams, backpressure, and bad clients.
 * Every wait is bounded.
 */
import { randomBytes } from "node:crypto";
import { EXIT, PpmError } from "../../core/errors.ts";
import { writeAll } from "../../core/host/write_all.ts";
import { RECORD } from "../../core/image/format.ts";
import { PAGE_SIZE } from "../../ffi/libc.ts";
import { readImage } from "../../core/image/reader.ts";
import { ImageWriter } from "../../core/image/writer.ts";
import type { MigrationChannel } from "../../core/transport/channel.ts";
import {
  AuthError,
  clientMac,
  newKeyShare,
  PROTOCOL_VERSION,
  serverMac,
  sessionKeys,
  sharedSecret,
  type Transcript,
  welcomeMac,
} from "../../core/transport/auth.ts";
import { FrameCipher } from "../../core/transport/cipher.ts";
import { connectPeer } from "../../core/transport/conn.ts";
import { type Frame, KIND } from "../../core/transport/frame.ts";
import { NonceCache } from "../../core/transport/nonces.ts";
import { deriveKey } from "../../core/security/secret.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import {
  chunks,
  closeAll,
  failure,
  hashStream,
  hello,
  MiB,
  OTHER_SECRET,
  pattern,
  proxy,
  rawClient,
  SECRET,
  sha256,
  sleep,
  within,
  withServer,
} from "./transport_support.ts";

Deno.test("transport: control messages, a 20 MiB stream, concurrent streams and an image", async () => {
  await withServer({}, async (s) => {
    const client = await s.connect({ expectNode: "server-node" });
    const server = await s.next();
    const _channel: MigrationChannel = client; // what core/migrate needs
    assertEquals([client.node, client.peer], ["client-node", "server-node"]);
    assertEquals([server.node, server.peer], ["server-node", "client-node"]);

    // Control messages both ways, with bigint and binary values.
    const offer = { op: "offer", pid: 4242, addr: 0xffff_ffff_ffff_f000n, blob: pattern(100) };
    await client.send(offer);
    assertEquals(await server.recv(5_000), offer);
    await server.send({ op: "offer-reply", ok: true });
    assertEquals(await client.recv(5_000), { op: "offer-reply", ok: true });

    // A 20 MiB stream in chunks of up to 3 MiB, checked by hash.
    const big = pattern(20 * MiB, 11);
    const [sent, got] = await within(
      Promise.all([client.sendStream(chunks(big, 3 * MiB), 1), hashStream(server.streamSource(1))]),
      "20 MiB stream",
    );
    assertEquals(sent, big.length);
    assertEquals(got, { hash: sha256(big), bytes: big.length });

    // Two streams each way at once, interleaved with control messages.
    const a = pattern(5 * MiB + 3, 21), b = pattern(3 * MiB + 1, 22), c = pattern(1 * MiB, 23);
    const results = await within(
      Promise.all([
        client.sendStream(chunks(a, 256 * 1024, 1), 2),
        client.sendStream(chunks(b, 100_000, 2), 3),
        server.sendStream(chunks(c, 9_000, 3), 2),
        client.send({ op: "ping" }),
        hashStream(server.streamSource(2)),
        hashStream(server.streamSource(3)),
        hashStream(client.streamSource(2)),
        server.recv(5_000),
      ]),
      "concurrent streams",
    );
    assertEquals(results.slice(4), [
      { hash: sha256(a), bytes: a.length },
      { hash: sha256(b), bytes: b.length },
      { hash: sha256(c), bytes: c.length },
      { op: "ping" },
    ]);

    // An image piped through the connection straight into readImage.
    const img = new ImageWriter(client.streamSink(4));
    const pages = pattern(300 * PAGE_SIZE, 5);
    const writing = (async () => {
      await img.writeAnyRecord(RECORD.TASK, { pid: 4242, comm: "sleeper" });
      await img.writePages(0x7f00_0000_0000n, pages);
      await img.end({ id: "ck-1" });
      await client.endStream(4);
    })();
    const records = await within(Array.fromAsync(readImage(server.streamSource(4))), "image");
    await writing;
    assertEquals(records.map((r) => r.kind), ["record", "pages", "end"]);
    assertEquals((records[1] as { data: Uint8Array }).data, pages);

    // Misuse is refused clearly.
    assertMatch((await failure(client.streamSink(4)(new Uint8Array(1)), "sink")).message, /ended/);
    assertMatch((await failure(client.endStream(4), "end")).message, /ended/);
    let twice: unknown;
    try {
      server.streamSource(4);
    } catch (e) {
      twice = e;
    }
    assertMatch((twice as Error).message, /already has a reader/);

    // recv times out without losing what comes later.
    const t0 = performance.now();
    const timeout = await failure(server.recv(150), "recv timeout");
    assertEquals(timeout.exitCode, EXIT.TIMEOUT);
    assert(performance.now() - t0 < 2_000);
    await client.send("late");
    assertEquals(await server.recv(5_000), "late");

    // Closing: the peer's pending recv fails; messages sent before still arrive.
    await client.send("last words");
    const pending = server.recv(5_000);
    client.close("done here");
    assertEquals(await pending, "last words");
    assertMatch(
      (await failure(server.recv(5_000), "recv after close")).message,
      /client-node .* ended the connection: closed: done here/,
    );
    await within(Promise.all([client.closed, server.closed]), "closed");
    assertMatch((await failure(client.send(1), "send after close")).message, /closed here/);
  });
});

/**
 * Copies `size` bytes over a plain TCP connection in 1 MiB writes; the
 * receiver reads into one reused buffer, or (`fresh`) into a new buffer per
 * read, as the transport must (readImage may keep views of every chunk).
 * Returns the milliseconds taken.
 */
async function rawCopy(size: number, chunk: Uint8Array, fresh: boolean): Promise<number> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const receiving = (async () => {
      const c = await l.accept();
      let buf = new Uint8Array(MiB), n = 0;
      for (let r; (r = await c.read(buf)) !== null;) {
        n += r;
        if (fresh) buf = new Uint8Array(MiB);
      }
      c.close();
      return n;
    })();
    const t0 = performance.now();
    const c = await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port });
    for (let sent = 0; sent < size; sent += chunk.length) {
      await writeAll(c, chunk);
    }
    c.close();
    assertEquals(await within(receiving, "raw copy", 120_000), size);
    return performance.now() - t0;
  } finally {
    l.close();
  }
}

Deno.test("transport: throughput over loopback compared with raw TCP", async () => {
  const size = 64 * MiB, chunk = pattern(MiB, 99);
  const rawMs = await rawCopy(size, chunk, false);
  const freshMs = await rawCopy(size, chunk, true);
  await withServer({}, async (s) => {
    const client = await s.connect();
    const server = await s.next();
    const t0 = performance.now();
    const source = async function* () {
      for (let sent = 0; sent < size; sent += chunk.length) yield chunk;
    };
    let got = 0;
    const receiving = (async () => {
      for await (const c of server.streamSource(1)) got += c.length;
    })();
    await within(
      Promise.all([client.sendStream(source(), 1), receiving]),
      "transport copy",
      120_000,
    );
    const ms = performance.now() - t0;
    assertEquals(got, size);
    const rate = (t: number) => `${(size / MiB / (t / 1000)).toFixed(0)} MiB/s`;
    console.log(
      `loopback, 64 MiB in 1 MiB chunks: transport ${rate(ms)}; raw TCP ${rate(rawMs)} ` +
        `(reused buffer), ${rate(freshMs)} (fresh buffer per read, like the transport); ` +
        `transport/raw = ${(rawMs / ms).toFixed(2)}, transport/raw-fresh = ${
          (freshMs / ms).toFixed(2)
        }`,
    );
  });
});

Deno.test("transport: a reader that does not consume applies backpressure, then gets everything", async () => {
  const limit = MiB, size = 48 * MiB;
  await withServer({ connection: { streamBufferBytes: limit } }, async (s) => {
    const client = await s.connect();
    const server = await s.next();
    const data = pattern(size, 77);
    let sent = 0;
    const sink = client.streamSink(1);
    const sending = (async () => {
      for await (const c of chunks(data, 512 * 1024)) {
        await sink(c);
        sent += c.length;
      }
      await client.endStream(1);
    })();
    await new Promise((r) => setTimeout(r, 500));
    const buffered = server.bufferedBytes(1);
    console.log(
      `backpressure: after 500 ms with no reader, ${(sent / MiB).toFixed(1)} MiB sent, ` +
        `${(buffered / MiB).toFixed(1)} MiB buffered (limit ${limit / MiB} MiB)`,
    );
    assert(buffered <= limit + 4 * MiB, `${buffered} bytes buffered`);
    assert(sent < size / 2, `${sent} bytes went out with nobody reading`);
    const got = await within(hashStream(server.streamSource(1)), "draining");
    await within(sending, "sending");
    assertEquals(got, { hash: sha256(data), bytes: size });

    // A reader that leaves early discards the rest instead of stalling the connection.
    const rest = client.sendStream(chunks(pattern(8 * MiB, 1), MiB), 2);
    for await (const _ of server.streamSource(2)) break;
    await within(rest, "sending a discarded stream");
    await client.send("after the discarded stream");
    assertEquals(await server.recv(5_000), "after the discarded stream");
  });
});

Deno.test("transport: different secrets are refused on both sides, with reasons", async () => {
  await withServer({}, async (s) => {
    // The client finds the server's proof wrong.
    const err = await failure(s.connect({ secret: OTHER_SECRET }), "connect");
    assert(err instanceof AuthError);
    assertEquals(err.code, "bad-mac");
    assertEquals(err.exitCode, EXIT.PERMISSION);
    assertMatch(
      err.message,
      /^transport: cannot authenticate with 127\.0\.0\.1:\d+: server-node did not prove that it holds the cluster secret of client-node: the nodes have different cluster secrets, or the handshake was altered in transit$/,
    );
    assertMatch(err.fix, /same cluster secret/);
    const r1 = await s.refusal();
    assertEquals(r1.code, "bad-mac");
    assertMatch(r1.reason, /the peer refused \(bad-mac\).*different cluster secrets/);

    // The server finds a client's proof wrong (a client that skips checking the server).
    const raw = await rawClient(s.port);
    await raw.writer.control(hello("mallory", new Uint8Array(randomBytes(32))));
    const ch = await within(raw.reader.next(), "challenge") as { value: Record<string, unknown> };
    assertEquals(ch.value.op, "challenge");
    await raw.writer.control({ op: "proof", mac: new Uint8Array(32) });
    const answer = await within(raw.reader.next(), "answer");
    assertEquals(answer?.kind, KIND.ERROR);
    assertEquals((answer as { code: string }).code, "bad-mac");
    await within(raw.closedByServer(), "server closing");
    raw.close();
    const r2 = await s.refusal();
    assertEquals(r2.code, "bad-mac");
    assertMatch(
      r2.reason,
      /^mallory did not prove that it holds the cluster secret of server-node/,
    );
    assertEquals(s.listener.refused, { "bad-mac": 2 });
    assertEquals(s.listener.accepted, 0);
  });
});

Deno.test("transport: a replayed hello and a skewed clock are refused", async () => {
  await withServer({}, async (s) => {
    // A real client whose hello is recorded on the way (by speaking the protocol by hand).
    const key = deriveKey(SECRET, "connect");
    const share = newKeyShare();
    const nonceC = new Uint8Array(randomBytes(32)), time = Date.now();
    const first = await rawClient(s.port);
    await first.writer.control(hello("client-node", nonceC, time, share.publicKey));
    const ch =
      (await within(first.reader.next(), "challenge") as { value: Record<string, unknown> })
        .value;
    assertEquals(ch.v, PROTOCOL_VERSION);
    const t: Transcript = {
      nonceC,
      nonceS: ch.nonce as Uint8Array,
      keyC: share.publicKey,
      keyS: ch.kx as Uint8Array,
      clientNode: "client-node",
      serverNode: "server-node",
      time,
    };
    assertEquals(ch.mac, serverMac(key, t));
    await first.writer.control({ op: "proof", mac: clientMac(key, t) });
    const keys = sessionKeys(SECRET, sharedSecret(share, t.keyS)!, t);
    await first.writer.encrypt(new FrameCipher(keys.c2s));
    assertEquals(
      await within(first.reader.next(), "welcome"),
      { kind: KIND.CONTROL, value: { op: "welcome", mac: welcomeMac(keys, t) }, size: 50 },
    );
    first.reader.encrypt(new FrameCipher(keys.s2c));
    const server = await s.next();
    await first.writer.control({ op: "hi" });
    assertEquals(await server.recv(5_000), { op: "hi" });
    await server.send("hello back");
    assertEquals(
      await within(first.reader.next(), "reply"),
      { kind: KIND.CONTROL, value: "hello back", size: 11 },
    );

    // The same hello again: refused as a replay, whatever follows.
    const replay = await rawClient(s.port);
    await replay.writer.control(hello("client-node", nonceC, time, share.publicKey));
    const refusal = await within(replay.reader.next(), "refusal") as Frame;
    assertEquals(refusal.kind, KIND.ERROR);
    assertEquals((refusal as { code: string }).code, "replay");
    await within(replay.closedByServer(), "server closing");
    replay.close();
    const r = await s.refusal();
    assertEquals(r.code, "replay");
    assertMatch(r.reason, /the hello from client-node was seen before/);
    first.close();

    // A client whose clock is 5 minutes behind.
    const skewed = await failure(
      s.connect({ clock: () => Date.now() - 300_000 }),
      "skewed connect",
    );
    assertEquals((skewed as AuthError).code, "clock-skew");
    assertMatch(
      skewed.message,
      /the clock of client-node is 300 s behind the clock of server-node/,
    );
    assertEquals((await s.refusal()).code, "clock-skew");
  });
});

Deno.test("transport: silent, slow and garbage clients are dropped in time; others are served", async () => {
  const timeoutMs = 300;
  await withServer({ handshakeTimeoutMs: timeoutMs, maxPendingHandshakes: 4 }, async (s) => {
    // Silent.
    const silent = await rawClient(s.port);
    let t0 = performance.now();
    await within(silent.closedByServer(), "dropping a silent client", 5_000);
    const silentMs = performance.now() - t0;
    silent.close();
    assert(silentMs >= timeoutMs - 50 && silentMs < timeoutMs + 2_000, `${silentMs} ms`);
    let r = await s.refusal();
    assertEquals(r.code, "timeout");
    assertMatch(
      r.reason,
      /^the handshake did not finish within 300 ms \(this node was waiting for hello\)$/,
    );

    // Half a hello, then nothing.
    const slow = await rawClient(s.port);
    await slow.conn.write(new Uint8Array([KIND.CONTROL, 100, 0, 0, 0, 0x80]));
    t0 = performance.now();
    await within(slow.closedByServer(), "dropping a slow client", 5_000);
    assert(performance.now() - t0 < timeoutMs + 2_000);
    slow.close();
    assertEquals((await s.refusal()).code, "timeout");

    // Garbage.
    for (const bytes of [pattern(1000, 5), new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n")]) {
      const g = await rawClient(s.port);
      await g.conn.write(bytes);
      await within(g.closedByServer(), "dropping a garbage client", 5_000);
      g.close();
      r = await s.refusal();
      assertEquals(r.code, "malformed", r.reason);
    }

    // Well-formed but not a hello.
    const wrong = await rawClient(s.port);
    await wrong.writer.control({ op: "offer" });
    assertEquals(
      ((await within(wrong.reader.next(), "refusal")) as { code: string }).code,
      "malformed",
    );
    wrong.close();
    assertMatch((await s.refusal()).reason, /expected hello/);

    // The listener still serves good clients.
    const client = await s.connect();
    const server = await s.next();
    await client.send("still here?");
    assertEquals(await server.recv(5_000), "still here?");
    assertEquals(s.listener.accepted, 1);
    assertEquals(s.listener.refused, { timeout: 2, malformed: 3 });
  });
});

Deno.test("transport: a client gives up on a server that does not answer, or is not there", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of l) held.push(c);
  })();
  const t0 = performance.now();
  const err = await failure(
    connectPeer({
      host: "127.0.0.1",
      port: l.addr.port,
      secret: SECRET,
      node: "a",
      timeoutMs: 300,
    }),
    "connect to a mute server",
  );
  assert(performance.now() - t0 < 3_000);
  assertEquals((err as AuthError).code, "timeout");
  assertEquals(err.exitCode, EXIT.TIMEOUT);
  l.close();
  await accepting.catch(() => {});
  for (const c of held) c.close();

  const port = l.addr.port; // nothing listens there now
  const refused = await failure(
    connectPeer({ host: "127.0.0.1", port, secret: SECRET, node: "a" }),
    "connect to nothing",
  );
  assertMatch(refused.message, /cannot connect to 127\.0\.0\.1:\d+: connection refused/);
});

Deno.test("transport: a byte changed in transit is detected, either way", async () => {
  await withServer({}, async (s) => {
    for (const dir of ["c2s", "s2c"] as const) {
      const at = 300_000; // well past the handshake, inside the stream
      let flipped = false;
      const p = proxy(s.port, (d, chunk, offset) => {
        if (d === dir && !flipped && offset <= at && at < offset + chunk.length) {
          chunk[at - offset] ^= 0x10;
          flipped = true;
        }
      });
      try {
        const client = await s.connect({ port: p.port });
        const server = await s.next();
        const [from, to] = dir === "c2s" ? [client, server] : [server, client];
        const data = pattern(32 * MiB, 8); // more than socket buffers hold, so the sender sees the end
        const sending = from.sendStream(chunks(data, 64 * 1024), 1).catch((e) => e);
        const err = await failure(
          hashStream(to.streamSource(1)),
          `reading a tampered ${dir} stream`,
        );
        assert(flipped);
        assertMatch(
          err.message,
          /^transport: stream 1 from \S+ \(127\.0\.0\.1:\d+\) was cut short: its tag does not match/,
        );
        // The sender learns that the connection is gone, one way or another.
        assert((await within(sending, "sender failing")) instanceof PpmError);
        assertMatch(
          (await failure(from.recv(5_000), "sender's recv")).message,
          /protocol|closed|reset|failed/i,
        );
      } finally {
        await closeAll();
        await within(p.close(), "closing the proxy");
      }
    }
  });
});

Deno.test("transport: beyond the handshake limit, the oldest handshake is dropped as busy", async () => {
  await withServer({ handshakeTimeoutMs: 400, maxPendingHandshakes: 1 }, async (s) => {
    const a = await rawClient(s.port);
    await sleep(50); // let the server take it
    const b = await rawClient(s.port);
    await within(a.closedByServer(), "dropping the first", 5_000);
    const r = await s.refusal();
    assertEquals(r.code, "busy");
    assertMatch(r.reason, /^more than 1 handshakes at once: the oldest was dropped$/);
    assertEquals(r.error.exitCode, EXIT.BUSY);
    await within(b.closedByServer(), "dropping the second", 5_000);
    assertEquals((await s.refusal()).code, "timeout");
    a.close();
    b.close();
    // A real client still gets in.
    const c = await s.connect();
    await c.send("in");
    assertEquals(await (await s.next()).recv(5_000), "in");
    assertEquals(s.listener.refused, { busy: 1, timeout: 1 });
  });
});

Deno.test("transport: the nonce cache refuses repeats until they expire, and stays bounded", () => {
  let now = 0;
  const cache = new NonceCache(1_000, 3, () => now);
  const n = (i: number) => new Uint8Array(32).fill(i);
  assert(cache.add(n(1)));
  assert(!cache.add(n(1)));
  now = 500;
  assert(cache.add(n(2)) && cache.add(n(3)));
  assert(!cache.add(n(2)));
  now = 1_001; // n(1) expired
  assert(cache.add(n(1)));
  assertEquals(cache.size, 3);
  assert(cache.add(n(4))); // full: the oldest (n(2)) goes
  assertEquals([cache.size, cache.evicted], [3, 1]);
  assert(cache.add(n(2)));
  cache.delete(n(4));
  assert(cache.add(n(4)));
});
