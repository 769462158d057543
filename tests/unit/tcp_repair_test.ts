/**
 * TCP repair on the host, over loopback, in one process: a connection is
 * dumped in repair mode, its socket closed (silently), and rebuilt on a new
 * socket; the peer sees nothing but the connection going on, with the
 * bytes that were queued both ways. Needs CAP_NET_ADMIN (root), as ppm does.
 */
import { recvWithin } from "../support/recv.ts";
import {
  connectionFlows,
  describeSocket,
  dumpSocket,
  dumpTcpRepair,
  type HeldSocket,
  ownAddresses,
  setRepair,
} from "../../core/dump/sockets.ts";
import {
  dropSockets,
  endRepair,
  rebuildSockets,
  type RebuiltSocket,
  restoreTcpRepair,
} from "../../core/restore/sockets.ts";
import {
  acceptNow,
  AF,
  bind4,
  closeSocket,
  connect4,
  type Inet4,
  IPPROTO,
  listenSocket,
  sendAll,
  setsockoptInt,
  SO,
  SOCK,
  socket,
  sockName,
  SOL_SOCKET,
} from "../../ffi/socket.ts";
import { assert, assertEquals } from "../support/assert.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

async function readExactly(conn: Deno.Conn, n: number): Promise<string> {
  const out = new Uint8Array(n);
  let got = 0;
  for (let i = 0; i < 100 && got < n; i++) {
    const r = await conn.read(out.subarray(got));
    if (r === null) break;
    got += r;
  }
  return dec(out.subarray(0, got));
}

Deno.test({
  name: "tcp repair: dump, close silently, rebuild; the peer sees the connection go on",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    const c = socket(AF.INET, SOCK.STREAM, IPPROTO.TCP);
    let n = -1;
    let server: Deno.Conn | undefined;
    try {
      connect4(c, { addr: "127.0.0.1", port });
      server = await listener.accept();
      // Bytes the client has not read yet, and bytes the server has not read yet.
      await server.write(enc("hello-from-server;"));
      sendAll(c, enc("abc"));
      await new Promise((r) => setTimeout(r, 50));

      setRepair(c, true);
      const st = dumpTcpRepair(c);
      assertEquals(dec(st.recvQueue), "hello-from-server;");
      assertEquals(st.notSent, 0);
      assert(st.mss > 0);
      const local = sockName(c) as { addr: string; port: number };
      closeSocket(c); // in repair mode: no FIN, no RST

      n = socket(AF.INET, SOCK.STREAM, IPPROTO.TCP);
      setsockoptInt(n, IPPROTO.TCP, 19, /* TCP_REPAIR */ 1);
      setsockoptInt(n, SOL_SOCKET, SO.REUSEADDR, 1);
      bind4(n, local);
      restoreTcpRepair(n, st, { addr: "127.0.0.1", port });
      setRepair(n, false);

      assertEquals(await recvWithin(n, 18), "hello-from-server;");
      await server.write(enc("more"));
      assertEquals(await recvWithin(n, 4), "more");
      sendAll(n, enc("xyz"));
      assertEquals(await readExactly(server, 6), "abcxyz");
    } finally {
      server?.close();
      listener.close();
      if (n >= 0) closeSocket(n);
    }
  },
});

Deno.test({
  name:
    "tcp repair: a connection of a process to its own listener is rebuilt with both ends, over " +
    "loopback on another node, and goes on with the bytes queued both ways",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    // Through the machine's own address where it has one, as MPI libraries connect to themselves.
    const own = Deno.networkInterfaces().find((i) =>
      i.family === "IPv4" && !i.address.startsWith("127.")
    )?.address ?? "127.0.0.1";
    const l = socket(AF.INET, SOCK.STREAM, IPPROTO.TCP);
    const c = socket(AF.INET, SOCK.STREAM, IPPROTO.TCP);
    let a = -1;
    let rebuilt: RebuiltSocket[] = [];
    try {
      bind4(l, { addr: own, port: 0 });
      listenSocket(l, 1);
      connect4(c, sockName(l) as Inet4);
      for (let i = 0; i < 100 && a < 0; i++) {
        a = acceptNow(l) ?? -1;
        if (a < 0) await new Promise((r) => setTimeout(r, 10));
      }
      assert(a >= 0, "accepted");
      sendAll(c, enc("to-server;"));
      sendAll(a, enc("to-client;"));
      await new Promise((r) => setTimeout(r, 50));
      const copies = new Map([[3, c], [4, a]]);
      const flows = connectionFlows(copies.values());
      const held: HeldSocket[] = [];
      for (const [fd, copy] of copies) {
        const d = describeSocket(fd, copy, ownAddresses(), flows);
        assert(!("reason" in d), `fd ${fd} can move: ${JSON.stringify(d)}`);
        held.push({ ...d, copy });
      }
      // Alone, the client's end is a connection to another process on this node: it stays.
      assert("reason" in describeSocket(3, c, ownAddresses(), new Set()));
      for (const h of held) setRepair(h.copy, true);
      const entries = held.map((h) => dumpSocket(h, 0));
      closeSocket(c); // in repair mode: nothing is sent
      closeSocket(a);
      a = -1;
      // On another node (its address is not this machine's: the pair does not use it).
      rebuilt = rebuildSockets(entries, "192.0.2.1");
      assertEquals(rebuilt.map((r) => r.local.addr), ["127.0.0.1", "127.0.0.1"]);
      assertEquals(rebuilt.map((r) => r.local.port), entries.map((e) => e.local.port));
      endRepair(rebuilt);
      const [rc, ra] = rebuilt.map((r) => r.copy);
      assertEquals(await recvWithin(ra, 10), "to-server;");
      assertEquals(await recvWithin(rc, 10), "to-client;");
      sendAll(rc, enc("again"));
      assertEquals(await recvWithin(ra, 5), "again");
    } finally {
      dropSockets(rebuilt);
      for (const fd of [l, c, a]) if (fd >= 0) closeSocket(fd);
    }
  },
});
