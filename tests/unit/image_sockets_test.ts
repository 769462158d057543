/** The SOCKETS record is checked field by field; a malformed one is a clear error. */
import { checkSockets } from "../../core/image/sockets.ts";
import { SOCKET_OPTIONS } from "../support/socket_entries.ts";
import { assertEquals, assertThrows } from "../support/assert.ts";

const options = SOCKET_OPTIONS;
const tcp = {
  sendSeq: 1000,
  sendQueue: new Uint8Array([1, 2, 3]),
  notSent: 1,
  recvSeq: 4_000_000_000,
  recvQueue: new Uint8Array(0),
  mss: 1448,
  sndWscale: 7,
  rcvWscale: 7,
  sack: true,
  timestamps: true,
  tsval: 123456,
  window: { sndWl1: 1, sndWnd: 2, maxWindow: 3, rcvWnd: 4, rcvWup: 5 },
};
const listener = {
  fd: 3,
  flags: 2,
  kind: "tcp-listen",
  local: { addr: "0.0.0.0", port: 7000 },
  backlog: 16,
  options,
};

Deno.test("image sockets: a listener, a connection and a waiting one pass", () => {
  const list = checkSockets([
    listener,
    {
      fd: 4,
      flags: 2,
      kind: "tcp",
      local: { addr: "10.0.0.1", port: 7000 },
      remote: { addr: "10.0.0.9", port: 5000 },
      options,
      tcp,
    },
    {
      fd: 3,
      flags: 2,
      kind: "tcp-pending",
      local: { addr: "10.0.0.1", port: 7000 },
      remote: { addr: "10.0.0.8", port: 5001 },
      options,
      tcp,
    },
  ]);
  assertEquals(list.map((s) => s.kind), ["tcp-listen", "tcp", "tcp-pending"]);
  assertEquals(list[1].tcp!.notSent, 1);
});

Deno.test("image sockets: malformed entries are refused with what is wrong", () => {
  const conn = {
    fd: 4,
    flags: 0,
    kind: "tcp",
    local: { addr: "10.0.0.1", port: 1 },
    remote: { addr: "10.0.0.2", port: 2 },
    options,
    tcp,
  };
  assertThrows(
    () => checkSockets([{ ...conn, kind: "sctp" }]),
    (e) => String(e).includes("unknown kind"),
  );
  assertThrows(
    () => checkSockets([{ ...conn, remote: undefined }]),
    (e) => String(e).includes("without a remote end"),
  );
  // The end peers know (a socket that moved before): an address, on the socket's own port.
  assertEquals(
    checkSockets([{ ...conn, known: { addr: "10.0.0.7", port: 1 } }])[0].known,
    { addr: "10.0.0.7", port: 1 },
  );
  for (
    const [known, why] of [
      [{ addr: "10.0.0.7", port: 2 }, "its own on 1"],
      [{ addr: "0.0.0.0", port: 1 }, "without an address"],
      [{ addr: "10.0.0.7", port: 0 }, "port"],
      [{ addr: "10.0.0.7; rm -rf /", port: 1 }, "not an IPv4"],
      ["10.0.0.7:1", "known end"],
    ] as const
  ) {
    assertThrows(() => checkSockets([{ ...conn, known }]), Error, why);
  }
  assertThrows(
    () => checkSockets([{ ...conn, local: { addr: "10.0.0.300", port: 1 } }]),
    Error,
    "not an IPv4",
  );
  assertThrows(
    () => checkSockets([{ ...conn, tcp: { ...tcp, notSent: 4 } }]),
    (e) => String(e).includes("notSent"),
  );
  assertThrows(
    () => checkSockets([{ ...conn, tcp: { ...tcp, sndWscale: 15 } }]),
    Error,
    "sndWscale",
  );
  assertThrows(
    () => checkSockets([{ ...conn, kind: "tcp-pending" }]),
    Error,
    "without its listener",
  );
  assertThrows(() => checkSockets({}), (e) => String(e).includes("not a list"));
});
