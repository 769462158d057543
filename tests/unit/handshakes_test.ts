import { halfOpen, settleHandshakes } from "../../core/freeze/handshakes.ts";
import { assertEquals } from "../support/assert.ts";

const HEAD =
  "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
// Port 8000 = 0x1F40: a listener (0A), a half-done handshake (03), an established one (01).
const TABLE = [
  HEAD,
  "   0: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0",
  "   1: 01004D0A:1F40 03004D0A:C350 03 00000000:00000000 02:00000064 00000000     0        0 0 0 0",
  "   2: 01004D0A:1F40 03004D0A:C351 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0",
  "   3: 01004D0A:0050 03004D0A:C352 03 00000000:00000000 02:00000064 00000000     0        0 0 0 0",
].join("\n");

Deno.test("handshakes: SYN_RECV entries are counted for the listener's ports only", () => {
  assertEquals(halfOpen(TABLE, new Set([8000])), 1);
  assertEquals(halfOpen(TABLE, new Set([8000, 80])), 2);
  assertEquals(halfOpen(TABLE, new Set([9999])), 0);
  assertEquals(halfOpen(HEAD, new Set([8000])), 0);
});

Deno.test("handshakes: the wait ends when they complete, or at its bound", () => {
  let reads = 0;
  const completing = () => (++reads < 3 ? TABLE : HEAD);
  assertEquals(settleHandshakes(new Set([8000]), 1000, completing), 0);
  assertEquals(reads, 3);
  const t0 = performance.now();
  assertEquals(settleHandshakes(new Set([8000]), 50, () => TABLE), 1);
  const took = performance.now() - t0;
  assertEquals(took >= 50 && took < 1000, true, `${took} ms`);
  // No listener: nothing is read.
  assertEquals(settleHandshakes(new Set(), 50, () => TABLE), 0);
});
