/** The TypeScript form of struct ppm_redirect: addresses and ports in network order. */
import { addrBytes, decodeRedirect, encodeRedirect, portBytes } from "../../ffi/redirect.ts";
import { ppmRedirect } from "../../ffi/uapi.ts";
import { assertEquals, assertThrows } from "../support/assert.ts";

Deno.test("redirect codec: an entry survives encode and decode; bytes are network order", () => {
  const buf = encodeRedirect({
    proto: "tcp",
    action: "peer",
    old: { addr: "10.77.0.1", port: 7000 },
    new: { addr: "10.77.0.2", port: 7000 },
    peer: { addr: "0.0.0.0", port: 0 },
    idleTimeout: 30,
  });
  assertEquals(buf.length, ppmRedirect.size);
  const f = Object.fromEntries(ppmRedirect.fields.map((x) => [x.name, x.offset]));
  assertEquals([...buf.subarray(f.old_addr, f.old_addr + 4)], [10, 77, 0, 1]);
  assertEquals([...buf.subarray(f.old_port, f.old_port + 2)], [0x1b, 0x58]);
  const e = decodeRedirect(buf);
  assertEquals(
    [e.proto, e.action, e.old, e.new, e.peer, e.idleTimeout, e.state],
    [
      "tcp",
      "peer",
      { addr: "10.77.0.1", port: 7000 },
      { addr: "10.77.0.2", port: 7000 },
      { addr: "0.0.0.0", port: 0 },
      30,
      "open",
    ],
  );
});

Deno.test("redirect codec: a drop has no new endpoint; bad addresses and ports are refused", () => {
  const e = decodeRedirect(encodeRedirect({
    proto: "udp",
    action: "drop",
    old: { addr: "192.168.1.1", port: 53 },
    peer: { addr: "192.168.1.9", port: 40000 },
  }));
  assertEquals([e.proto, e.action, e.new], ["udp", "drop", undefined]);
  // A drop of new connections only: a drop with PPM_RDR_F_SYN (the first byte of flags).
  const synBuf = encodeRedirect({
    proto: "tcp",
    action: "drop-syn",
    old: { addr: "192.168.1.1", port: 80 },
    peer: { addr: "0.0.0.0", port: 0 },
  });
  const syn = decodeRedirect(synBuf);
  assertEquals([syn.action, syn.new, synBuf[9], synBuf[10]], ["drop-syn", undefined, 1, 1]);
  // A connection's drop that answers keepalive probes: PPM_RDR_F_ALIVE (bit 1 of flags).
  const aliveBuf = encodeRedirect({
    proto: "tcp",
    action: "drop",
    old: { addr: "192.168.1.1", port: 80 },
    peer: { addr: "192.168.1.9", port: 40000 },
    keepAlive: true,
  });
  const alive = decodeRedirect(aliveBuf);
  assertEquals([alive.action, alive.keepAlive, aliveBuf[9], aliveBuf[10]], ["drop", true, 1, 2]);
  assertEquals(syn.keepAlive, undefined);
  assertThrows(() => addrBytes("10.0.0"));
  assertThrows(() => addrBytes("10.0.0.256"));
  assertThrows(() => addrBytes("::1"));
  assertThrows(() => portBytes(65536));
  assertThrows(() => portBytes(-1));
});
