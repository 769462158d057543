/**
 * Redirect requests between agents: one kept connection per node carries
 * the add and the later removal; a node that cannot add them says why, and
 * the requester reports it. (No module on the host: the serving side's
 * table refuses, which is the refusal path.)
 */
import { PeerRedirects, type RequestChannel, serveRedirects } from "../../core/redirect/peers.ts";
import { assertEquals, assertMatch } from "../support/assert.ts";

/** Two ends of an in-memory channel. */
function pipe(): [RequestChannel, RequestChannel] {
  const q: unknown[][] = [[], []];
  const w: ((v: unknown) => void)[][] = [[], []];
  const closed = [false, false];
  const end = (me: number): RequestChannel => ({
    send(msg) {
      if (closed[me] || closed[1 - me]) return Promise.reject(new Error("closed"));
      const waiter = w[1 - me].shift();
      if (waiter) waiter(structuredClone(msg));
      else q[1 - me].push(structuredClone(msg));
      return Promise.resolve();
    },
    recv(timeoutMs = 5000) {
      if (q[me].length) return Promise.resolve(q[me].shift());
      if (closed[1 - me]) return Promise.reject(new Error("closed"));
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("timeout")), timeoutMs);
        w[me].push((v) => {
          clearTimeout(t);
          resolve(v);
        });
      });
    },
    close() {
      closed[me] = true;
      for (const waiter of w[1 - me].splice(0)) waiter(undefined);
    },
  });
  return [end(0), end(1)];
}

Deno.test("redirect requests: one connection per node, opened ahead; refusals say why", async () => {
  let opened = 0;
  const served: Promise<void>[] = [];
  const peers = new PeerRedirects((_addr) => {
    opened++;
    const [client, server] = pipe();
    // The serving agent reads the first request, then serves until the client closes.
    served.push(
      server.recv(5000).then((first) => serveRedirects(server, first as never, () => {}, 2000)),
    );
    return Promise.resolve(client);
  });
  await peers.prepare(["10.0.0.3", "10.0.0.3"]);
  assertEquals(opened, 1);
  let err: unknown;
  try {
    await peers.add("10.0.0.3", [{
      proto: "tcp",
      action: "peer",
      old: { addr: "10.0.0.1", port: 7000 },
      new: { addr: "10.0.0.2", port: 7000 },
      peer: { addr: "10.0.0.3", port: 40000 },
    }]);
  } catch (e) {
    err = e;
  }
  assertMatch(String(err), /refused the redirects/);
  assertEquals(opened, 1, "the prepared connection was used");
  await peers.close();
  await Promise.all(served);
});
