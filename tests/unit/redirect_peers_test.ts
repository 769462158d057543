/**
 * Redirect requests between agents: one kept connection per node carries
 * the add and the later removal; a node that cannot add them says why, and
 * the requester reports it. (No module on the host: the serving side's
 * table refuses, which is the refusal path.)
 */
import type { Redirect, RedirectEntry } from "../../ffi/redirect.ts";
import { PeerRedirects, type RequestChannel, serveRedirects } from "../../core/redirect/peers.ts";
import { releaseLocks } from "../../core/redirect/table.ts";
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

const lock = (peerPort: number): Redirect => ({
  proto: "tcp",
  action: "drop",
  old: { addr: "10.0.0.2", port: 7000 },
  peer: { addr: "10.0.0.3", port: peerPort },
  idleTimeout: 300,
});
const entry = (id: number, r: Redirect): RedirectEntry => ({
  ...r,
  id,
  state: "open",
  packets: 0,
  bytes: 0,
  ageMs: 0,
  idleMs: 0,
});

Deno.test("releaseLocks: only drops identical to those named go, whatever else is asked", () => {
  const table = [
    entry(1, lock(40000)),
    entry(2, lock(40001)),
    // The same ends, other actions: a release never touches them.
    entry(3, { ...lock(40000), action: "drop-syn" }),
    entry(4, { ...lock(40000), action: "peer", new: { addr: "10.0.0.4", port: 7000 } }),
    entry(5, { ...lock(40000), proto: "udp" }),
  ];
  const removed: number[] = [];
  const t = {
    list: () => table,
    remove: (id: number) => (removed.push(id), 1),
  };
  const n = releaseLocks([
    lock(40000),
    lock(40009), // not there: fine
    { ...lock(40001), action: "peer", new: { addr: "10.0.0.4", port: 7000 } }, // not a lock
    { ...lock(40000), action: "forward" },
  ], t);
  assertEquals(n, 1);
  assertEquals(removed, [1]);
  // Nothing to release: the table is not even read.
  assertEquals(releaseLocks([], { list: () => assertNever(), remove: () => 0 }), 0);
});

Deno.test("redirect release: a dead connection is replaced once; a refusal says why", async () => {
  let opened = 0;
  const served: Promise<void>[] = [];
  const peers = new PeerRedirects((_addr) => {
    opened++;
    const [client, server] = pipe();
    // The first connection's agent died: it closes at once.
    if (opened === 1) server.close();
    else {
      served.push(
        server.recv(5000).then((first) => serveRedirects(server, first as never, () => {}, 2000)),
      );
    }
    return Promise.resolve(client);
  });
  await peers.prepare(["10.0.0.2"]);
  // No module on this host: the serving side answers with why.
  const err = await peers.release("10.0.0.2", [lock(40000)]).catch((e) => e);
  assertMatch(String(err), /refused the redirects.*module/);
  assertEquals(opened, 2, "a new connection after the dead one");
  await peers.close();
  await Promise.all(served);
});

function assertNever(): never {
  throw new Error("the table was read");
}
