/** Which node gets which redirect entries when a process with sockets moves A → B. */
import {
  CHECKPOINT_DROP_IDLE_S,
  DROP_IDLE_S,
  innerConnections,
  planDrops,
  planLocks,
  planRedirects,
} from "../../core/redirect/redirect_plan.ts";
import { assert, assertEquals } from "../support/assert.ts";

const A = "10.77.0.1", B = "10.77.0.2", P = "10.77.0.3", Q = "10.77.0.254";

Deno.test("redirect plan: a connection to a cluster peer is rewritten by that peer", () => {
  const plan = planRedirects(
    [{ kind: "tcp", local: { addr: A, port: 7000 }, remote: { addr: P, port: 40000 } }],
    A,
    B,
    [A, B, P],
  );
  assertEquals(plan.drops.map((d) => [d.action, d.old, d.peer]), [
    ["drop", { addr: A, port: 7000 }, { addr: P, port: 40000 }],
  ]);
  assertEquals(plan.forwards, []);
  assertEquals(plan.answers.length, 1);
  assertEquals([...plan.peers.keys()], [P]);
  const r = plan.peers.get(P)![0];
  assertEquals([r.action, r.old, r.new, r.peer, r.idleTimeout], [
    "peer",
    { addr: A, port: 7000 },
    { addr: B, port: 7000 },
    { addr: P, port: 40000 },
    0,
  ]);
});

Deno.test("redirect plan: a connection to an outside peer is forwarded by A, answered by B", () => {
  const plan = planRedirects(
    [{ kind: "tcp", local: { addr: A, port: 7000 }, remote: { addr: Q, port: 5555 } }],
    A,
    B,
    [P],
  );
  assertEquals(plan.peers.size, 0);
  assertEquals(plan.forwards.map((f) => [f.action, f.old, f.new, f.peer]), [
    ["forward", { addr: A, port: 7000 }, { addr: B, port: 7000 }, { addr: Q, port: 5555 }],
  ]);
  assertEquals(plan.answers.map((f) => [f.action, f.old, f.new, f.peer]), [
    ["answer", { addr: A, port: 7000 }, { addr: B, port: 7000 }, { addr: Q, port: 5555 }],
  ]);
});

Deno.test("redirect plan: a peer on B itself is rewritten by B, locally", () => {
  const plan = planRedirects(
    [{ kind: "tcp", local: { addr: A, port: 7000 }, remote: { addr: B, port: 40000 } }],
    A,
    B,
    [A, B, P],
  );
  // B answers as A, and sends the peer's packets for A's end to the process, not out to A.
  assertEquals(plan.answers.map((r) => [r.action, r.old, r.new, r.peer]), [
    ["answer", { addr: A, port: 7000 }, { addr: B, port: 7000 }, { addr: B, port: 40000 }],
    ["peer", { addr: A, port: 7000 }, { addr: B, port: 7000 }, { addr: B, port: 40000 }],
  ]);
  assertEquals([plan.forwards, plan.peers.size, plan.drops.length], [[], 0, 1]);
});

Deno.test("redirect plan: a wildcard listener reaches B from everywhere (SYN-CHANGE)", () => {
  const plan = planRedirects(
    [{ kind: "tcp-listen", local: { addr: "0.0.0.0", port: 8080 } }],
    A,
    B,
    [A, B, P, "10.77.0.4"],
  );
  const any = { addr: "0.0.0.0", port: 0 };
  assertEquals(plan.drops.map((d) => [d.old, d.peer]), [[{ addr: A, port: 8080 }, any]]);
  assertEquals(plan.forwards.map((d) => [d.old, d.new, d.peer]), [
    [{ addr: A, port: 8080 }, { addr: B, port: 8080 }, any],
  ]);
  assertEquals([...plan.peers.keys()].sort(), [P, "10.77.0.4"]);
  // B answers as A, and its own clients that dial A reach the listener locally.
  assertEquals(plan.answers.map((r) => [r.action, r.peer]), [["answer", any], ["peer", any]]);
});

Deno.test("redirect plan: loopback sockets need nothing; UDP connected follows its peer", () => {
  const plan = planRedirects(
    [
      { kind: "udp", local: { addr: "127.0.0.1", port: 53 } },
      { kind: "udp", local: { addr: A, port: 9000 }, remote: { addr: P, port: 9001 } },
    ],
    A,
    B,
    [P],
  );
  assertEquals(plan.drops.length, 1);
  assertEquals(plan.peers.get(P)![0].proto, "udp");
  assertEquals(plan.forwards.length, 0);
});

Deno.test("redirect plan: the new node locks its rebuilt connections until the commit", () => {
  const locks = planLocks(
    [
      { kind: "tcp", local: { addr: A, port: 7000 }, remote: { addr: P, port: 40000 } },
      { kind: "tcp-listen", local: { addr: "0.0.0.0", port: 7000 } },
      { kind: "tcp-pending", local: { addr: A, port: 7000 }, remote: { addr: Q, port: 5 } },
    ],
    B,
  );
  assertEquals(locks.map((l) => [l.action, l.old, l.peer]), [
    ["drop", { addr: B, port: 7000 }, { addr: P, port: 40000 }],
    ["drop", { addr: B, port: 7000 }, { addr: Q, port: 5 }],
  ]);
});

Deno.test("redirect plan: the freeze's drops, a migration's as before, a checkpoint's on every address", () => {
  const sockets = [
    { kind: "tcp-listen" as const, local: { addr: "0.0.0.0", port: 7000 } },
    { kind: "tcp" as const, local: { addr: A, port: 7000 }, remote: { addr: P, port: 40000 } },
    { kind: "tcp-pending" as const, local: { addr: A, port: 7000 }, remote: { addr: Q, port: 5 } },
    { kind: "udp" as const, local: { addr: "0.0.0.0", port: 9000 } },
    { kind: "udp" as const, local: { addr: "127.0.0.1", port: 53 } },
    // The same flow twice (SO_REUSEPORT): one entry, the module refuses a second.
    { kind: "udp" as const, local: { addr: "0.0.0.0", port: 9000 } },
  ];
  // A migration: the node's one address, and exactly the drops of planRedirects (but the flow
  // that appears twice).
  const once = sockets.slice(0, 5);
  assertEquals(planDrops(once, [A]), planRedirects(once, A, A, []).drops);
  assertEquals(planDrops(sockets, [A]), planDrops(once, [A]));
  // A checkpoint: a wildcard socket's drops cover every address of the node, loopback too.
  const all = planDrops(sockets, [A, "127.0.0.1"], CHECKPOINT_DROP_IDLE_S);
  assertEquals(
    all.map((
      d,
    ) => [d.proto, d.action, `${d.old.addr}:${d.old.port}`, `${d.peer.addr}:${d.peer.port}`]),
    [
      ["tcp", "drop", `${A}:7000`, "0.0.0.0:0"],
      ["tcp", "drop", "127.0.0.1:7000", "0.0.0.0:0"],
      ["tcp", "drop", `${A}:7000`, `${P}:40000`],
      ["tcp", "drop", `${A}:7000`, `${Q}:5`],
      ["udp", "drop", `${A}:9000`, "0.0.0.0:0"],
      ["udp", "drop", "127.0.0.1:9000", "0.0.0.0:0"],
    ],
  );
  assertEquals(new Set(all.map((d) => d.idleTimeout)), new Set([86400]));
  const syn = planDrops(sockets.slice(0, 1), [A, B], undefined, "drop-syn");
  assertEquals(syn.map((d) => [d.action, d.old.addr, d.idleTimeout]), [
    ["drop-syn", A, DROP_IDLE_S],
    ["drop-syn", B, DROP_IDLE_S],
  ]);
  // A live freeze's connections answer keepalive probes; listeners, UDP and SYN drops never do.
  const alive = planDrops(once, [A], undefined, "drop", true);
  assertEquals(
    alive.map((d) => [d.proto, `${d.peer.addr}:${d.peer.port}`, d.keepAlive ?? false]),
    [
      ["tcp", "0.0.0.0:0", false],
      ["tcp", `${P}:40000`, true],
      ["tcp", `${Q}:5`, true],
      ["udp", "0.0.0.0:0", false],
    ],
  );
  assert(!planDrops(once, [A], undefined, "drop-syn", true).some((d) => d.keepAlive));
  assert(!planDrops(once, [A]).some((d) => d.keepAlive), "not unless asked (a killed checkpoint)");
});

Deno.test("redirect plan: a connection of the process to its own listener needs no entry", () => {
  // Both ends in the process (an MPI library connected to its own listener, through the node's
  // address): they move together, and only the listener is redirected.
  const pair = [
    { kind: "tcp" as const, local: { addr: A, port: 40001 }, remote: { addr: A, port: 7000 } },
    { kind: "tcp" as const, local: { addr: A, port: 7000 }, remote: { addr: A, port: 40001 } },
  ];
  const listener = { kind: "tcp-listen" as const, local: { addr: A, port: 7000 } };
  const plan = planRedirects([...pair, listener], A, B, [A, B, P]);
  const olds = [...plan.drops, ...plan.forwards, ...plan.answers, ...plan.peers.get(P)!];
  assertEquals(olds.every((r) => r.peer.addr === "0.0.0.0"), true, "only the listener's");
  assertEquals(planDrops(pair, [A]), []);
  assertEquals(planLocks(pair, B), []);
  assertEquals([...innerConnections([...pair, listener])], pair);
  // One end alone (its peer is another process on A) is not inner: it is planned as before.
  assertEquals(innerConnections([pair[0]]).size, 0);
  assertEquals(planLocks([pair[0]], B).length, 1);
  // A connection to itself (the same end both ways) is one flow: inner too.
  const self = { kind: "tcp" as const, local: { addr: A, port: 5 }, remote: { addr: A, port: 5 } };
  assertEquals(innerConnections([self]).size, 1);
});

Deno.test("redirect plan: a process that moved before is redirected from its first node", () => {
  // It came A → B; peers know its sockets by A's address. Now B → C (C = P here).
  const C = P, R = "10.77.0.4";
  const known = { addr: A, port: 7000 };
  const rows = (list: { action: string; old: unknown; new?: unknown; peer: unknown }[]) =>
    list.map((r) => [r.action, r.old, r.new, r.peer]);
  const conn = (peer: string) => ({
    kind: "tcp" as const,
    local: { addr: B, port: 7000 },
    remote: { addr: peer, port: 40000 },
    known,
  });
  // A peer on R, another node of the cluster: R rewrites A's end to C's (its newest entry wins
  // over the one of the first move, which sent it to B).
  let plan = planRedirects([conn(R)], B, C, [A, B, C, R]);
  assertEquals(rows(plan.peers.get(R)!), [
    ["peer", known, { addr: C, port: 7000 }, { addr: R, port: 40000 }],
  ]);
  assertEquals(rows(plan.answers), [
    ["answer", known, { addr: C, port: 7000 }, { addr: R, port: 40000 }],
  ]);
  // B's freeze drops what B itself sees: its own end.
  assertEquals(plan.drops.map((d) => d.old), [{ addr: B, port: 7000 }]);
  // A peer on B, the node it leaves: B rewrites its packets, once the process runs on C.
  plan = planRedirects([conn(B)], B, C, [A, B, C]);
  assertEquals(rows(plan.forwards), [
    ["peer", known, { addr: C, port: 7000 }, { addr: B, port: 40000 }],
  ]);
  assertEquals(plan.peers.size, 0);
  // A peer outside the cluster sends to A: A forwards, to C now.
  plan = planRedirects([conn(Q)], B, C, [A, B, C]);
  assertEquals(plan.forwards, []);
  assertEquals(rows(plan.peers.get(A)!), [
    ["forward", known, { addr: C, port: 7000 }, { addr: Q, port: 40000 }],
  ]);
  // A listener: A forwards, every other node (B too) rewrites for its own clients.
  const listener = { kind: "tcp-listen" as const, local: { addr: B, port: 7000 }, known };
  plan = planRedirects([listener], B, C, [A, B, C, R]);
  assertEquals(plan.peers.get(A)!.map((r) => r.action), ["forward"]);
  assertEquals(plan.peers.get(R)!.map((r) => r.action), ["peer"]);
  assertEquals(plan.forwards.map((r) => [r.action, r.old, r.peer]), [
    ["peer", known, { addr: "0.0.0.0", port: 0 }],
  ]);
  assertEquals(plan.answers.map((r) => r.action), ["answer", "peer"]);
  // Home again (B → A): every node's entry for it is replaced by one that keeps A's end.
  plan = planRedirects([conn(R)], B, A, [A, B, R]);
  assertEquals(rows(plan.peers.get(R)!), [["peer", known, known, { addr: R, port: 40000 }]]);
  plan = planRedirects([conn(Q)], B, A, [A, B]);
  assertEquals(rows(plan.answers), [
    ["answer", known, known, { addr: Q, port: 40000 }],
    ["forward", known, known, { addr: Q, port: 40000 }],
  ]);
});
