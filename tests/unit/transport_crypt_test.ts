/**
 * Frame encryption over real connections: what crosses the socket, captured
 * by a loopback proxy, never holds the payload in clear (control messages,
 * byte streams, their ends, ERROR frames), and a bit flipped anywhere in a
 * frame ends the connection without delivering it. Every wait is bounded.
 */
import { PpmError } from "../../core/errors.ts";
import { TAG_BYTES } from "../../core/transport/cipher.ts";
import { encodeMessage } from "../../core/transport/codec.ts";
import { HEADER_BYTES } from "../../core/transport/frame.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import {
  chunks,
  closeAll,
  concat,
  failure,
  hashStream,
  indexOf,
  MiB,
  proxy,
  sha256,
  within,
  withServer,
} from "./transport_support.ts";

const MARKER = "PPM-SECRET-MARKER";

/** `n` bytes of the marker, repeated. */
function markerBytes(n: number): Uint8Array {
  const m = new TextEncoder().encode(MARKER);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = m[i % m.length];
  return out;
}

Deno.test("crypt: what goes over the socket never holds the payload in clear", async () => {
  await withServer({}, async (s) => {
    const wire = { c2s: [] as Uint8Array[], s2c: [] as Uint8Array[] };
    const p = proxy(s.port, (d, chunk) => void wire[d].push(chunk.slice()));
    try {
      const client = await s.connect({ port: p.port, expectNode: "server-node" });
      const server = await s.next();
      // Control messages both ways, with the marker in strings and binary values.
      const offer = { op: "offer", note: MARKER, blob: markerBytes(1000) };
      await client.send(offer);
      assertEquals(await server.recv(5_000), offer);
      await server.send({ op: "reply", note: MARKER.repeat(100) });
      assertEquals(await client.recv(5_000), { op: "reply", note: MARKER.repeat(100) });
      // The image (64 KiB of marker, then 1 MiB more) and a stdio relay the other way.
      const image = markerBytes(64 * 1024 + MiB), stdout = markerBytes(300_000);
      const [, , got, out] = await within(
        Promise.all([
          client.sendStream(chunks(image, 200_000), 1),
          server.sendStream(chunks(stdout, 4096), 2),
          hashStream(server.streamSource(1)),
          hashStream(client.streamSource(2)),
        ]),
        "streams",
      );
      assertEquals(got, { hash: sha256(image), bytes: image.length });
      assertEquals(out, { hash: sha256(stdout), bytes: stdout.length });
      // An ERROR frame with the marker in its reason.
      client.close(`giving up: ${MARKER}`);
      assertMatch(
        (await failure(server.recv(5_000), "recv after close")).message,
        new RegExp(`closed: giving up: ${MARKER}`),
      );
      await within(Promise.all([client.closed, server.closed]), "closing");
    } finally {
      await closeAll();
      await within(p.close(), "closing the proxy");
    }
    const c2s = concat(wire.c2s), s2c = concat(wire.s2c);
    assert(c2s.length > 64 * 1024 + MiB && s2c.length > 300_000, "the traffic was captured");
    const needle = new TextEncoder().encode(MARKER.slice(0, 10));
    assertEquals(indexOf(c2s, needle), -1, "the marker went from client to server in clear");
    assertEquals(indexOf(s2c, needle), -1, "the marker went from server to client in clear");
  });
});

/**
 * Where a flip lands in the client's first frame after the handshake: the
 * byte (from the frame's start) and the bit.
 */
interface Flip {
  at: number;
  bit: number;
  part: string;
}

Deno.test("crypt: a bit flipped anywhere in a frame is refused, and nothing of it delivered", async () => {
  const body = { op: "tampered", pad: "x".repeat(100) };
  const payloadBytes = encodeMessage(body).length;
  const flips: Flip[] = [];
  for (let b = 0; b < HEADER_BYTES * 8; b++) {
    flips.push({ at: b >> 3, bit: b & 7, part: b < 8 ? "kind" : "length" });
  }
  for (const at of [0, 1, 50, payloadBytes - 1]) {
    flips.push({ at: HEADER_BYTES + at, bit: 3, part: "payload" });
  }
  for (let t = 0; t < TAG_BYTES; t++) {
    flips.push({ at: HEADER_BYTES + payloadBytes + t, bit: t & 7, part: "tag" });
  }
  await withServer({}, async (s) => {
    for (const [i, flip] of flips.entries()) {
      // Finds the client's third frame (after hello and proof) in the byte stream and flips it.
      const seen: Uint8Array[] = [];
      let flipped = -1;
      const p = proxy(s.port, (d, chunk, offset) => {
        if (d !== "c2s" || flipped >= 0) return;
        seen.push(chunk.slice());
        const all = concat(seen);
        const len = (at: number) => new DataView(all.buffer).getUint32(at + 1, true);
        if (all.length < HEADER_BYTES) return;
        const proofAt = HEADER_BYTES + len(0);
        if (all.length < proofAt + HEADER_BYTES) return;
        const start = proofAt + HEADER_BYTES + len(proofAt);
        if (all.length > start + HEADER_BYTES && len(start) !== payloadBytes) {
          throw new Error(`the third frame has ${len(start)} bytes, not ${payloadBytes}`);
        }
        const target = start + flip.at;
        if (target >= offset && target < offset + chunk.length) {
          chunk[target - offset] ^= 1 << flip.bit;
          flipped = target;
        }
      });
      try {
        const client = await s.connect({ port: p.port });
        const server = await s.next();
        await client.send(body);
        // More bytes after it, so a longer length does not simply wait; 9 MiB covers
        // every flip of the third length byte (up to +8 MiB).
        const after = flip.at === 3 ? 9 * MiB : 64 * 1024;
        const sending = client.sendStream(chunks(new Uint8Array(after), 1 << 20), 1)
          .catch(() => {});
        const err = await failure(server.recv(10_000), `flip ${i} (${flip.part})`);
        assert(flipped >= 0, `flip ${i} did not happen`);
        assert(err instanceof PpmError);
        assertMatch(
          err.message,
          /its tag does not match|unknown frame kind|exceeds the limit|no stream id/,
          `flip ${i} (${flip.part} byte ${flip.at} bit ${flip.bit})`,
        );
        await within(sending, "the sender");
      } finally {
        await closeAll();
        await within(p.close(), "closing the proxy");
      }
    }
  });
});
