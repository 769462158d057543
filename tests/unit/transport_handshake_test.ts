/**
 * The protocol-3 handshake against an active attacker: changed key shares,
 * nonces and versions in transit, replayed handshakes, old peers and peers
 * without a key share (never a fallback to clear text), bad key shares, and
 * the key schedule. Loopback only; every wait is bounded.
 */
import { randomBytes } from "node:crypto";
import { EXIT } from "../../core/errors.ts";
import { deriveKey } from "../../core/security/secret.ts";
import {
  AuthError,
  newKeyShare,
  PROTOCOL_VERSION,
  sessionKeys,
  sharedSecret,
  type Transcript,
} from "../../core/transport/auth.ts";
import { connectPeer } from "../../core/transport/conn.ts";
import { type Frame, FrameReader, FrameWriter, KIND } from "../../core/transport/frame.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import {
  chunks,
  concat,
  failure,
  hashStream,
  hello,
  indexOf,
  MiB,
  pattern,
  proxy,
  rawClient,
  SECRET,
  sha256,
  within,
  withServer,
} from "./transport_support.ts";

const enc = (s: string) => new TextEncoder().encode(s);

/** msgpack of a map key followed by the header of a 32-byte bin value. */
function binField(name: string): Uint8Array {
  return new Uint8Array([0xa0 | name.length, ...enc(name), 0xc4, 32]);
}

Deno.test("handshake: a key share or nonce changed in transit is refused on both sides", async () => {
  const cases = [
    { dir: "c2s", field: "kx" },
    { dir: "c2s", field: "nonce" },
    { dir: "s2c", field: "kx" },
    { dir: "s2c", field: "nonce" },
  ] as const;
  await withServer({}, async (s) => {
    for (const { dir, field } of cases) {
      let changed = false;
      const needle = binField(field);
      const p = proxy(s.port, (d, chunk, offset) => {
        if (d !== dir || offset !== 0) return; // the hello, or the challenge
        const at = indexOf(chunk, needle);
        if (at >= 0) {
          chunk[at + needle.length + 7] ^= 0x40; // a man in the middle's own key would do the same
          changed = true;
        }
      });
      try {
        const err = await failure(s.connect({ port: p.port }), `${dir} ${field}`);
        assert(changed, `${dir} ${field} was not found in the first chunk`);
        assert(err instanceof AuthError, `${err}`);
        assertEquals(err.code, "bad-mac", `${dir} ${field}: ${err.message}`);
        assertEquals(err.exitCode, EXIT.PERMISSION);
        assertMatch(err.message, /did not prove .* or the handshake was altered in transit/);
        const r = await s.refusal();
        assertEquals(r.code, "bad-mac", `${dir} ${field}: ${r.reason}`);
      } finally {
        await within(p.close(), "closing the proxy");
      }
    }
    assertEquals(s.listener.accepted, 0);
    assertEquals(s.listener.refused, { "bad-mac": cases.length });
  });
});

Deno.test("handshake: a changed key confirmation in the welcome is refused by the client", async () => {
  await withServer({}, async (s) => {
    const welcome = new Uint8Array([0xa7, ...enc("welcome")]);
    const needle = binField("mac");
    let changed = false;
    const p = proxy(s.port, (d, chunk) => {
      if (d !== "s2c" || changed || indexOf(chunk, welcome) < 0) return;
      const at = indexOf(chunk, needle);
      chunk[at + needle.length + 5] ^= 1;
      changed = true;
    });
    try {
      const err = await failure(s.connect({ port: p.port }), "connect");
      assert(changed);
      assertEquals((err as AuthError).code, "bad-mac");
      assertMatch(
        err.message,
        /server-node did not confirm the keys of this connection: the handshake was altered/,
      );
      // The server had finished its side; the connection it handed over ends with the reason.
      const server = await s.next();
      assertMatch((await failure(server.recv(5_000), "server recv")).message, /bad-mac/);
    } finally {
      await within(p.close(), "closing the proxy");
    }
  });
});

Deno.test("handshake: a version lowered in transit is refused, never a fallback to clear text", async () => {
  await withServer({}, async (s) => {
    for (const dir of ["c2s", "s2c"] as const) {
      const needle = new Uint8Array([0xa1, 0x76, PROTOCOL_VERSION]); // "v": 3
      let changed = false;
      const p = proxy(s.port, (d, chunk, offset) => {
        if (d !== dir || offset !== 0) return;
        const at = indexOf(chunk, needle);
        if (at >= 0) {
          chunk[at + 2] = 2;
          changed = true;
        }
      });
      try {
        const err = await failure(s.connect({ port: p.port }), `lowered ${dir}`);
        assert(changed);
        assertEquals((err as AuthError).code, "version", err.message);
        assertEquals(err.exitCode, EXIT.INCOMPATIBLE);
        assertMatch(err.message, /speaks protocol 2, (server|client)-node 3/);
        assertMatch(err.fix, /same ppm version/);
        assertEquals((await s.refusal()).code, "version");
      } finally {
        await within(p.close(), "closing the proxy");
      }
    }
    assertEquals(s.listener.accepted, 0);
  });
});

Deno.test("handshake: a version 2 hello, or one without a key share, is refused as version", async () => {
  await withServer({}, async (s) => {
    const v2 = { op: "hello", v: 2, node: "old-node", nonce: randomBytes(32), time: Date.now() };
    const noShare = { ...v2, v: PROTOCOL_VERSION };
    for (
      const [msg, re] of [
        [v2, /^the client speaks protocol 2, server-node 3$/],
        [noShare, /^the client offers no key share \(X25519\): this node only talks encrypted$/],
      ] as const
    ) {
      const raw = await rawClient(s.port);
      try {
        await raw.writer.control({ ...msg, nonce: new Uint8Array(msg.nonce) });
        const f = await within(raw.reader.next(), "refusal") as Frame;
        assertEquals(f.kind, KIND.ERROR);
        assertEquals((f as { code: string }).code, "version");
        await within(raw.closedByServer(), "server closing");
        const r = await s.refusal();
        assertEquals(r.code, "version");
        assertMatch(r.reason, re);
        assertEquals(r.error.exitCode, EXIT.INCOMPATIBLE);
      } finally {
        raw.close();
      }
    }
    // Key shares that cannot be used: all zeros (a low-order point), the wrong size.
    for (const kx of [new Uint8Array(32), new Uint8Array(31), new Uint8Array(33)]) {
      const raw = await rawClient(s.port);
      try {
        await raw.writer.control(
          hello("client-node", new Uint8Array(randomBytes(32)), Date.now(), kx),
        );
        const f = await within(raw.reader.next(), "refusal") as Frame;
        assertEquals((f as { code: string }).code, "malformed");
        assertMatch(
          (await s.refusal()).reason,
          /key share is not a usable X25519 key|valid nonce, node, time or key/,
        );
      } finally {
        raw.close();
      }
    }
    assertEquals(s.listener.accepted, 0);
  });
});

Deno.test("handshake: a client refuses a version 2 server, and one that offers no key share", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const errors: Frame[] = [];
  const serving = (async () => {
    for (const v of [2, PROTOCOL_VERSION]) {
      const c = await l.accept();
      try {
        const r = new FrameReader(c), w = new FrameWriter(c);
        const h = await r.next() as { value: Record<string, unknown> };
        assertEquals(h.value.v, PROTOCOL_VERSION);
        assert(h.value.kx instanceof Uint8Array);
        await w.control({
          op: "challenge",
          v,
          node: "old-node",
          nonce: new Uint8Array(randomBytes(32)),
          mac: new Uint8Array(32),
        });
        const e = await r.next();
        if (e) errors.push(e);
      } finally {
        c.close();
      }
    }
  })();
  try {
    for (const re of [/the server speaks protocol 2, a 3/, /the server offers no key share/]) {
      const err = await failure(
        connectPeer({ host: "127.0.0.1", port: l.addr.port, secret: SECRET, node: "a" }),
        "connect to an old server",
      );
      assertEquals((err as AuthError).code, "version");
      assertMatch(err.message, re);
    }
    await within(serving, "the fake server");
    assertEquals(errors.map((f) => (f as { code: string }).code), ["version", "version"]);
  } finally {
    l.close();
  }
});

Deno.test("handshake: a recorded handshake replayed later is refused, to the same node or another", async () => {
  let bytes: Uint8Array = new Uint8Array(0);
  await withServer({}, async (s) => {
    const recorded: Uint8Array[] = [];
    const p = proxy(s.port, (d, chunk) => void (d === "c2s" && recorded.push(chunk.slice())));
    try {
      const client = await s.connect({ port: p.port });
      const server = await s.next();
      await client.send({ op: "offer", pid: 7 });
      assertEquals(await server.recv(5_000), { op: "offer", pid: 7 });
      const data = pattern(MiB, 4);
      const [, got] = await within(
        Promise.all([
          client.sendStream(chunks(data, 64 * 1024), 1),
          hashStream(server.streamSource(1)),
        ]),
        "stream",
      );
      assertEquals(got, { hash: sha256(data), bytes: data.length });
      client.close();
      await within(Promise.all([client.closed, server.closed]), "closing");
    } finally {
      await within(p.close(), "closing the proxy");
    }
    bytes = concat(recorded);
    assert(bytes.length > MiB);

    // To the same node: the hello's nonce was seen.
    const again = await rawClient(s.port);
    try {
      again.conn.write(bytes).catch(() => {});
      const f = await within(again.reader.next(), "refusal");
      assertEquals((f as { code: string }).code, "replay");
      assertEquals((await s.refusal()).code, "replay");
    } finally {
      again.close();
    }
    assertEquals(s.listener.accepted, 1);
  });

  // To another node with the same secret and name, which has not seen the nonce: the
  // recorded proof answers another challenge (another nonce, another key share).
  await withServer({}, async (s) => {
    const again = await rawClient(s.port);
    try {
      again.conn.write(bytes).catch(() => {});
      const ch = await within(again.reader.next(), "challenge") as { value: { op: string } };
      assertEquals(ch.value.op, "challenge");
      const f = await within(again.reader.next(), "refusal");
      assertEquals((f as { code: string }).code, "bad-mac");
      const r = await s.refusal();
      assertEquals(r.code, "bad-mac");
      assertMatch(r.reason, /client-node did not prove that it holds the cluster secret/);
    } finally {
      again.close();
    }
    assertEquals(s.listener.accepted, 0);
  });
});

Deno.test("handshake: the keys depend on the exchange, the secret, both nonces and the transcript", () => {
  const a = newKeyShare(), b = newKeyShare(), c = newKeyShare();
  const shared = sharedSecret(a, b.publicKey)!;
  assertEquals(shared, sharedSecret(b, a.publicKey));
  const t: Transcript = {
    nonceC: new Uint8Array(32).fill(1),
    nonceS: new Uint8Array(32).fill(2),
    keyC: a.publicKey,
    keyS: b.publicKey,
    clientNode: "n1",
    serverNode: "n2",
    time: 1_700_000_000_000,
  };
  const k = sessionKeys(SECRET, shared, t);
  assertEquals([k.c2s.length, k.s2c.length], [32, 32]);
  assert(!sameBytes(k.c2s, k.s2c));
  const variants = [
    sessionKeys(deriveKey(SECRET, "other"), shared, t), // another secret, same exchange
    sessionKeys(SECRET, sharedSecret(a, c.publicKey)!, t), // same secret, another exchange
    sessionKeys(SECRET, shared, { ...t, nonceC: new Uint8Array(32).fill(3) }),
    sessionKeys(SECRET, shared, { ...t, nonceS: new Uint8Array(32).fill(3) }),
    sessionKeys(SECRET, shared, { ...t, clientNode: "n3" }),
    sessionKeys(SECRET, shared, { ...t, time: t.time + 1 }),
    sessionKeys(SECRET, shared, { ...t, keyS: c.publicKey }),
  ];
  for (const [i, v] of variants.entries()) {
    assert(!sameBytes(v.c2s, k.c2s) && !sameBytes(v.s2c, k.s2c), `variant ${i}`);
  }
  // Without the ephemeral private keys, the secret alone gives nothing: a fresh exchange
  // with the same public key of one side gives other keys.
  assertEquals(sharedSecret(a, new Uint8Array(32)), null);
  assertEquals(sharedSecret(a, new Uint8Array(31)), null);
});

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
