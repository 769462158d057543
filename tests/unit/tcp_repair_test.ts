/**
 * TCP repair on the host, over loopback, in one process: a connection is
 * dumped in repair mode, its socket closed (silently), and rebuilt on a new
 * socket; the peer sees nothing but the connection going on, with the
 * bytes that were queued both ways. Needs CAP_NET_ADMIN (root), as ppm does.
 */
import { dumpTcpRepair, setRepair } from "../../core/dump/sockets.ts";
import { restoreTcpRepair } from "../../core/restore/sockets.ts";
import {
  AF,
  bind4,
  closeSocket,
  connect4,
  IPPROTO,
  MSG,
  recvBytes,
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

async function recvWithin(fd: number, n: number): Promise<string> {
  let s = "";
  for (let i = 0; i < 200 && s.length < n; i++) {
    try {
      s += dec(recvBytes(fd, n - s.length, MSG.DONTWAIT));
    } catch {
      await new Promise((r) => setTimeout(r, 10)); // EAGAIN: not yet
    }
  }
  return s;
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
