/**
 * A checkpoint's sockets restored on its node (core/restore/network.ts):
 * /proc/net parsed, ports and connections in use found before anything is
 * made, addresses that are not this node's refused, the checkpoint's drops
 * found by flow (never another entry) and removed, the error of a failed
 * restore saying the drops stay. Then on the host, over loopback, as root:
 * a connection dumped in repair mode, closed silently, found in use while
 * it was open, rebuilt at its own address and port, talking again.
 */
import { recvWithin } from "../support/recv.ts";
import {
  checkAddresses,
  checkPortsHere,
  findDrops,
  inUse,
  parseProcNet,
  rebuildHere,
  removeDrops,
  withDropsKept,
} from "../../core/restore/network.ts";
import { dropSockets, endRepair } from "../../core/restore/sockets.ts";
import { dumpSocket, setRepair } from "../../core/dump/sockets.ts";
import type { NetworkRecord } from "../../core/image/network.ts";
import type { SocketEntry } from "../../core/image/sockets.ts";
import type { RedirectEntry } from "../../ffi/redirect.ts";
import { EXIT, PpmError } from "../../core/errors.ts";
import {
  AF,
  closeSocket,
  connect4,
  IPPROTO,
  sendAll,
  SOCK,
  socket,
  sockName,
} from "../../ffi/socket.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "../support/assert.ts";

/** The PpmError `fn` throws. */
function thrown(fn: () => unknown): PpmError {
  try {
    fn();
  } catch (e) {
    assert(e instanceof PpmError, `not a PpmError: ${e}`);
    return e;
  }
  throw new Error("it did not throw");
}

const options = {
  reuseaddr: false,
  keepalive: false,
  sndbuf: 0,
  rcvbuf: 0,
  nodelay: false,
  keepidle: 0,
  keepintvl: 0,
  keepcnt: 0,
};

const listener: SocketEntry = {
  fd: 3,
  flags: 2,
  kind: "tcp-listen",
  local: { addr: "0.0.0.0", port: 7010 },
  backlog: 128,
  options,
};
const conn: SocketEntry = {
  fd: 4,
  flags: 2,
  kind: "tcp",
  local: { addr: "10.77.0.2", port: 7010 },
  remote: { addr: "10.77.0.3", port: 40000 },
  options,
};
const udp: SocketEntry = {
  fd: 5,
  flags: 0,
  kind: "udp",
  local: { addr: "10.77.0.2", port: 9999 },
  options,
};

// 10.77.0.2 is 02004D0A as x86 prints it; 7010 is 1B62, 40000 9C40, 9999 270F.
const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   1: 02004D0A:1B62 03004D0A:9C40 06 00000000:00000000 03:000001EE 00000000     0
   2: 0100007F:1B62 0100007F:B70B 01 00000000:00000000 00:00000000 00000000     0
  garbage line
   3: 02004D0A:1B6 03004D0A:9C40 01 x
`;

Deno.test("restore network: /proc/net/tcp parsed as x86 prints it; bad lines skipped", () => {
  assertEquals(parseProcNet(TCP), [
    { local: { addr: "0.0.0.0", port: 22 }, remote: { addr: "0.0.0.0", port: 0 }, state: 10 },
    {
      local: { addr: "10.77.0.2", port: 7010 },
      remote: { addr: "10.77.0.3", port: 40000 },
      state: 6,
    },
    {
      local: { addr: "127.0.0.1", port: 7010 },
      remote: { addr: "127.0.0.1", port: 46859 },
      state: 1,
    },
  ]);
  assertEquals(parseProcNet(""), []);
});

Deno.test("restore network: what is in the way of the image's sockets, named", () => {
  const tcp = parseProcNet(TCP);
  // A connection in TIME_WAIT, another port's listener, a connection on the port: nothing.
  assertEquals(inUse([listener, conn, udp], tcp, []), undefined);
  // The same connection, open.
  const open = tcp.map((t) => ({ ...t, state: t.state === 6 ? 1 : t.state }));
  assertMatch(
    inUse([listener, conn], open, [])!,
    /TCP connection 10\.77\.0\.2:7010 to 10\.77\.0\.3:40000 .*fd 4.* is open on this node/,
  );
  // A listener on the port: on any address, on the same one; not on another one.
  const listening = (addr: string) => [{
    local: { addr, port: 7010 },
    remote: { addr: "0.0.0.0", port: 0 },
    state: 10,
  }];
  for (const addr of ["0.0.0.0", "10.77.0.9"]) {
    assertMatch(
      inUse([listener], listening(addr), [])!,
      new RegExp(`TCP port 7010 is in use on this node: a listener on ${addr}:7010`),
    );
  }
  assertEquals(
    inUse([{ ...listener, local: { addr: "10.77.0.2", port: 7010 } }], listening("10.77.0.9"), []),
    undefined,
  );
  // UDP: the same port on an overlapping address.
  const bound = (addr: string, port: number) => [{
    local: { addr, port },
    remote: { addr: "0.0.0.0", port: 0 },
    state: 7,
  }];
  assertMatch(inUse([udp], [], bound("0.0.0.0", 9999))!, /UDP port 9999 is in use/);
  assertEquals(inUse([udp], [], bound("10.77.0.5", 9999)), undefined);
  assertEquals(inUse([udp], [], bound("10.77.0.2", 9998)), undefined);
});

Deno.test("restore network: an address that is not this node's is refused, pointing at migrate", () => {
  const own = new Set(["10.77.0.2", "127.0.0.1"]);
  checkAddresses([listener, conn, udp, { ...udp, local: { addr: "127.0.0.5", port: 53 } }], own);
  const e = thrown(() =>
    checkAddresses([listener, { ...conn, local: { addr: "10.77.0.1", port: 7010 } }], own)
  );
  assertMatch(e.why, /fd 4, a TCP connection 10\.77\.0\.1:7010 .*had the address 10\.77\.0\.1/);
  assertMatch(e.fix, /ppm migrate/);
  assertEquals(e.exitCode, EXIT.INCOMPATIBLE);
});

const entry = (over: Partial<RedirectEntry>): RedirectEntry => ({
  id: 1,
  proto: "tcp",
  action: "drop",
  old: { addr: "10.77.0.2", port: 7010 },
  peer: { addr: "10.77.0.3", port: 40000 },
  idleTimeout: 86400,
  state: "open",
  packets: 3,
  bytes: 180,
  ageMs: 1000,
  idleMs: 200,
  ...over,
});

const rec: NetworkRecord = {
  bootId: "b00t",
  sockets: [listener, conn],
  drops: [
    {
      proto: "tcp",
      action: "drop-syn",
      old: { addr: "10.77.0.2", port: 7010 },
      peer: { addr: "0.0.0.0", port: 0 },
      idleTimeout: 86400,
    },
    {
      proto: "tcp",
      action: "drop",
      old: { addr: "10.77.0.2", port: 7010 },
      peer: { addr: "0.0.0.0", port: 0 },
      idleTimeout: 86400,
    },
    {
      proto: "tcp",
      action: "drop",
      old: { addr: "10.77.0.2", port: 7010 },
      peer: { addr: "10.77.0.3", port: 40000 },
      idleTimeout: 86400,
    },
  ],
};

const table: RedirectEntry[] = [
  entry({ id: 10 }),
  // A migration's drop of the same flow (another idle timeout), its answer and peer entries.
  entry({ id: 11, idleTimeout: 300 }),
  entry({ id: 12, action: "answer", new: { addr: "10.77.0.2", port: 7010 }, idleTimeout: 0 }),
  entry({ id: 13, action: "peer", new: { addr: "10.77.0.2", port: 7010 } }),
  // Another peer, another port, UDP.
  entry({ id: 14, peer: { addr: "10.77.0.4", port: 40000 } }),
  entry({ id: 15, old: { addr: "10.77.0.2", port: 7011 } }),
  entry({ id: 16, proto: "udp" }),
  // The listener's two.
  entry({ id: 20, action: "drop-syn", peer: { addr: "0.0.0.0", port: 0 } }),
  entry({ id: 21, peer: { addr: "0.0.0.0", port: 0 } }),
];

Deno.test("restore network: the checkpoint's drops are found by flow, action and idle time only", () => {
  assertEquals(findDrops(rec.drops, table).sort((a, b) => a - b), [10, 20, 21]);
  assertEquals(findDrops([], table), []);
  assertEquals(findDrops(rec.drops, []), []);
});

Deno.test("restore network: drops removed, counted; none of another boot; unreadable table throws", () => {
  const removed: number[] = [];
  const ops = {
    list: () => table,
    remove: (id: number) => {
      if (id === 21) throw new Error("EPERM");
      removed.push(id);
      return id === 20 ? 0 : 1; // 20 expired meanwhile
    },
  };
  assertEquals(removeDrops(rec, "b00t", ops), { removed: 1, notFound: 0, failed: 1 });
  assertEquals(removed, [10, 20]);
  removed.length = 0;
  assertEquals(removeDrops(rec, "another", ops), { removed: 0, notFound: 3, failed: 0 });
  assertEquals(removed, []);
  assertEquals(removeDrops({ ...rec, drops: [] }, "b00t", ops), {
    removed: 0,
    notFound: 0,
    failed: 0,
  });
  const partial = { list: () => table.slice(0, 1), remove: () => 1 };
  assertEquals(removeDrops(rec, "b00t", partial), { removed: 1, notFound: 2, failed: 0 });
  const broken = {
    list: () => {
      throw new Error("no module");
    },
    remove: () => 1,
  };
  assertThrows(() => removeDrops(rec, "b00t", broken), Error, "no module");
});

Deno.test("restore network: a failed restore says the drops stay, when there are some", () => {
  const e = withDropsKept(
    new PpmError("cannot restore", "PID 42 is taken", "end that process", EXIT.BUSY),
    rec,
  ) as PpmError;
  assertEquals([e.what, e.why, e.exitCode], ["cannot restore", "PID 42 is taken", EXIT.BUSY]);
  assertMatch(e.fix, /^end that process; .*drop entries stay.*ppm restore again/);
  const plain = withDropsKept(new Error("boom"), rec) as PpmError;
  assert(plain instanceof PpmError);
  assertMatch(`${plain.why} ${plain.fix}`, /boom .*drop entries stay/);
  const original = new PpmError("cannot restore", "x");
  assert(withDropsKept(original, { ...rec, drops: [] }) === original);
});

Deno.test({
  name:
    "restore network: a connection in use is found; closed silently, it is rebuilt where it was",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    const enc = (s: string) => new TextEncoder().encode(s);
    const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (server.addr as Deno.NetAddr).port;
    const c = socket(AF.INET, SOCK.STREAM, IPPROTO.TCP);
    let peer: Deno.Conn | undefined;
    let rebuilt: ReturnType<typeof rebuildHere> = [];
    try {
      connect4(c, { addr: "127.0.0.1", port });
      peer = await server.accept();
      await peer.write(enc("queued;"));
      await new Promise((r) => setTimeout(r, 50));
      const local = sockName(c) as { addr: string; port: number };
      const remote = { addr: "127.0.0.1", port };
      setRepair(c, true);
      const e = dumpSocket({ fd: 7, kind: "tcp", local, remote, copy: c }, 2);
      // The listener's port is taken (by the server), and so is the connection, still open.
      assertMatch(
        thrown(() => checkPortsHere([{ ...listener, local: { addr: "127.0.0.1", port } }])).why,
        new RegExp(`TCP port ${port} is in use`),
      );
      assertMatch(thrown(() => checkPortsHere([e])).why, /is open on this node/);
      closeSocket(c); // in repair mode: no FIN, no RST
      checkPortsHere([e]);
      const r: NetworkRecord = { bootId: "", sockets: [e], drops: [] };
      rebuilt = rebuildHere(r);
      assertEquals(rebuilt.map((x) => [x.fd, x.local]), [[7, local]]);
      assertEquals(sockName(rebuilt[0].copy), local);
      endRepair(rebuilt);
      const n = rebuilt[0].copy;
      assertEquals(await recvWithin(n, 7), "queued;");
      sendAll(n, enc("back"));
      const buf = new Uint8Array(4);
      let got = 0;
      for (let i = 0; i < 100 && got < 4; i++) got += (await peer.read(buf.subarray(got))) ?? 0;
      assertEquals(new TextDecoder().decode(buf), "back");
      // Rebuilt again while it is open: the port's in use, with the fix naming --leave-running.
      const again = thrown(() => rebuildHere(r));
      assertMatch(again.why, /EADDR(INUSE|NOTAVAIL)/);
      assertMatch(again.fix, /--leave-running/);
      assertEquals(again.exitCode, EXIT.BUSY);
    } finally {
      dropSockets(rebuilt);
      peer?.close();
      server.close();
    }
  },
});
