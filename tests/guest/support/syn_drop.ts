/**
 * Run in a guest as root with the module loaded: what a SYN-only drop
 * (`drop-syn`, PPM_RDR_F_SYN) does to a listener on ADDR:PORT, this node's
 * own address. Prints one JSON line:
 *
 * - `established`: a connection made before the entry still echoes;
 * - `held`: a new connection did not complete while the entry was there;
 * - `completed`: it completed once the entry was removed (its SYN sent again);
 * - `dropped`: packets the entry counted;
 * - `udpRefused`: a UDP SYN drop was refused (the flag is TCP's only).
 *
 * Exit 0 when all hold, 1 if not.
 *
 * @module
 */
import { addRedirect, deleteRedirect, listRedirects } from "../../../core/redirect/table.ts";

const [addr, portText] = Deno.args;
const port = Number(portText);
const listener = Deno.listen({ hostname: "0.0.0.0", port });
(async () => {
  for await (const conn of listener) {
    (async () => {
      const buf = new Uint8Array(64);
      for (;;) {
        const n = await conn.read(buf).catch(() => null);
        if (!n) break;
        await conn.write(buf.subarray(0, n));
      }
      conn.close();
    })();
  }
})();

async function echo(c: Deno.TcpConn, text: string): Promise<boolean> {
  await c.write(new TextEncoder().encode(text));
  const buf = new Uint8Array(64);
  const n = await c.read(buf);
  return n !== null && new TextDecoder().decode(buf.subarray(0, n)) === text;
}

const timeout = (ms: number) => new Promise<"timeout">((r) => setTimeout(() => r("timeout"), ms));

const first = await Deno.connect({ hostname: addr, port });
const id = addRedirect({
  proto: "tcp",
  action: "drop-syn",
  old: { addr, port },
  peer: { addr: "0.0.0.0", port: 0 },
  idleTimeout: 60,
});
const pending = Deno.connect({ hostname: addr, port });
const held = (await Promise.race([pending.then(() => "connected" as const), timeout(2500)])) ===
  "timeout";
const established = await echo(first, "still here");
const dropped = listRedirects().find((e) => e.id === id)?.packets ?? 0;
deleteRedirect(id);
// Linux sends the SYN again 1 s, then 3 s after the first: the one after the removal gets through.
const second = await Promise.race([pending, timeout(8000)]);
const completed = second !== "timeout" && await echo(second, "let in");
let udpRefused = false;
try {
  deleteRedirect(addRedirect({
    proto: "udp",
    action: "drop-syn",
    old: { addr, port },
    peer: { addr: "0.0.0.0", port: 0 },
  }));
} catch {
  udpRefused = true;
}
console.log(JSON.stringify({ established, held, completed, dropped, udpRefused }));
Deno.exit(established && held && completed && dropped > 0 && udpRefused ? 0 : 1);
