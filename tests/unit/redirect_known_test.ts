/** The end peers know a socket of a process that arrived here by (core/redirect/known.ts). */
import type { RedirectEntry } from "../../ffi/redirect.ts";
import { KnownEnds } from "../../core/redirect/known.ts";
import { identical } from "../../core/redirect/table.ts";
import { assertEquals } from "../support/assert.ts";

const A = "10.77.0.1", B = "10.77.0.2", P = "10.77.0.3";
const ANY = { addr: "0.0.0.0", port: 0 };

function answer(
  id: number,
  old: string,
  port: number,
  peer: { addr: string; port: number },
  ageMs = 1000,
): RedirectEntry {
  return {
    id,
    proto: "tcp",
    action: "answer",
    old: { addr: old, port },
    new: { addr: B, port },
    peer,
    state: "open",
    packets: 0,
    bytes: 0,
    ageMs,
    idleMs: 0,
  };
}

Deno.test("known ends: the old end of the newest answer for the flow; none for others", () => {
  const table = [
    answer(1, A, 7000, { addr: P, port: 40000 }, 5000),
    answer(2, "10.77.0.9", 7000, { addr: P, port: 40000 }, 100), // a later move's, newer
    answer(3, A, 8000, ANY),
    { ...answer(4, A, 9000, { addr: P, port: 1 }), action: "peer" as const }, // not an answer
    { ...answer(5, A, 7000, { addr: P, port: 40000 }), proto: "udp" as const },
  ];
  const k = new KnownEnds(table.filter((e) => e.action === "answer"), new Set([B]));
  const conn = { addr: B, port: 7000 };
  assertEquals(k.of("tcp", conn, { addr: P, port: 40000 }), { addr: "10.77.0.9", port: 7000 });
  assertEquals(k.of("tcp", conn, { addr: P, port: 40001 }), undefined, "another peer");
  assertEquals(k.of("udp", conn, { addr: P, port: 40000 }), { addr: A, port: 7000 });
  // A listener: the any-peer answer, for its own address or the wildcard one.
  assertEquals(k.of("tcp", { addr: B, port: 8000 }), { addr: A, port: 8000 });
  assertEquals(k.of("tcp", { addr: "0.0.0.0", port: 8000 }), { addr: A, port: 8000 });
  assertEquals(k.of("tcp", { addr: "10.1.1.1", port: 8000 }), undefined, "not this node's");
  assertEquals(k.of("tcp", { addr: B, port: 9000 }, { addr: P, port: 1 }), undefined);
  // Home again: the answer keeps the end it has, which is then no other end.
  const home = new KnownEnds([{ ...answer(6, B, 7000, ANY) }], new Set([B]));
  assertEquals(home.of("tcp", { addr: B, port: 7000 }), undefined);
});

Deno.test("redirect table: entries identical to the module (it refuses the second) are told", () => {
  const r = {
    proto: "tcp" as const,
    action: "peer" as const,
    old: { addr: A, port: 7000 },
    new: { addr: B, port: 7000 },
    peer: { addr: P, port: 1 },
  };
  assertEquals(identical(r, { ...r, idleTimeout: 5 }), true, "the idle time does not count");
  assertEquals(identical(r, { ...r, new: { addr: P, port: 7000 } }), false, "another new end");
  assertEquals(identical(r, { ...r, action: "answer" }), false);
  const drop = { proto: "tcp" as const, action: "drop" as const, old: r.old, peer: ANY };
  assertEquals(identical(drop, { ...drop, new: { addr: B, port: 1 } }), true, "a drop has none");
  assertEquals(identical(drop, { ...drop, action: "drop-syn" }), false);
});
