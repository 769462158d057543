/**
 * Relays of descriptors whose other end stays behind (core/relay/fds.ts),
 * on this host with real pipes and socketpairs between two relays (a
 * source's and a destination's) over an in-memory connection whose streams
 * hold at most a few chunks (so backpressure shows): order, bytes queued
 * before the move first, end of file both ways, shutdown of one way while
 * the other goes on, a reader that does not read, and a real child's pipe
 * copied with pidfd_getfd and relayed.
 */
import {
  FD_STREAM_BASE,
  FdRelay,
  fdStreams,
  MAX_RELAYED,
  type RelayedEnd,
  relayRole,
} from "../../core/relay/fds.ts";
import { channelPair } from "../support/mem_channel.ts";
import { close, pidfdGetfd, pidfdOpen, readFdWithin, writeFd } from "../../ffi/libc.ts";
import { fcntl, pipe2, writeSome } from "../../ffi/fds.ts";
import { shutdownSocket, SOCK, socketPair } from "../../ffi/socket.ts";
import { assert, assertEquals, assertThrows } from "../support/assert.ts";

/** A source relay on `srcFd` and a destination relay on `dstFd` for an end of kind `end`. */
function relayPair(end: RelayedEnd, srcFd: number, dstFd: number, index = 0) {
  const [a, b] = channelPair();
  const src = new FdRelay(srcFd, relayRole(end, "source"), fdStreams(index, "source"));
  const dst = new FdRelay(dstFd, relayRole(end, "destination"), fdStreams(index, "destination"));
  const done = Promise.all([src.run(a), dst.run(b)]);
  return { src, dst, done };
}

/** Everything readable on `fd` until its end of file, within `ms`. */
async function readAll(fd: number, ms = 10_000): Promise<string> {
  const buf = new Uint8Array(65536);
  const parts: Uint8Array[] = [];
  const end = Date.now() + ms;
  for (;;) {
    if (Date.now() > end) throw new Error("no end of file in time");
    const n = await readFdWithin(fd, buf, 200);
    if (n === null) continue;
    if (n === 0) break;
    parts.push(buf.slice(0, n));
  }
  return new TextDecoder().decode(concat(parts));
}

/** Exactly `len` bytes from `fd`, within `ms`. */
async function readN(fd: number, len: number, ms = 10_000): Promise<string> {
  const buf = new Uint8Array(65536);
  const parts: Uint8Array[] = [];
  let got = 0;
  const end = Date.now() + ms;
  while (got < len) {
    if (Date.now() > end) throw new Error(`only ${got} of ${len} bytes in time`);
    const n = await readFdWithin(fd, buf.subarray(0, Math.min(buf.length, len - got)), 200);
    if (n === null) continue;
    if (n === 0) throw new Error(`end of file after ${got} of ${len} bytes`);
    parts.push(buf.slice(0, n));
    got += n;
  }
  return new TextDecoder().decode(concat(parts));
}

function concat(parts: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    all.set(p, off);
    off += p.length;
  }
  return all;
}

const enc = new TextEncoder();
const lines = (from: number, to: number, tag = "line") =>
  Array.from({ length: to - from + 1 }, (_, i) => `${tag} ${from + i}\n`).join("");

Deno.test("fdStreams: distinct ids per relay and way, mirrored between the sides; bounded", () => {
  const seen = new Set<number>();
  for (let i = 0; i < MAX_RELAYED; i++) {
    const s = fdStreams(i, "source"), d = fdStreams(i, "destination");
    assertEquals(s.out, d.in);
    assertEquals(s.in, d.out);
    assert(s.out >= FD_STREAM_BASE && s.in < 65536);
    seen.add(s.out).add(s.in);
  }
  assertEquals(seen.size, 2 * MAX_RELAYED);
  for (const bad of [-1, MAX_RELAYED, 1.5, NaN, 1e9]) {
    assertThrows(() => fdStreams(bad, "source"));
  }
});

Deno.test("relayRole: a pipe is read where its bytes come from, a socket both ways", () => {
  assertEquals(relayRole("pipe-read", "source"), { read: true, write: false, socket: false });
  assertEquals(relayRole("pipe-read", "destination"), { read: false, write: true, socket: false });
  assertEquals(relayRole("pipe-write", "source"), { read: false, write: true, socket: false });
  assertEquals(relayRole("pipe-write", "destination"), { read: true, write: false, socket: false });
  assertEquals(relayRole("unix-stream", "source"), { read: true, write: true, socket: true });
  assertEquals(relayRole("tcp-stream", "destination"), { read: true, write: true, socket: true });
});

Deno.test("pipe read end: bytes queued before the move come first, in order, then the end of file", async () => {
  // The peer writes into pipe A; the process's read end of A is copied at the source.
  const [aRead, aWrite] = pipe2();
  // At the destination the process reads pipe B; the agent holds B's write end.
  const [bRead, bWrite] = pipe2();
  await writeFd(aWrite, enc.encode(lines(1, 100))); // queued before the relay runs
  const { done } = relayPair("pipe-read", aRead, bWrite);
  for (let i = 101; i <= 3000; i += 100) await writeFd(aWrite, enc.encode(lines(i, i + 99)));
  close(aWrite); // the peer ends
  assertEquals(await readAll(bRead), lines(1, 3000));
  await done;
  close(bRead);
});

Deno.test("pipe write end: what the process writes reaches the peer in order; its close is the peer's end of file", async () => {
  const [aRead, aWrite] = pipe2(); // the peer reads A; the source holds a copy of the write end
  const [bRead, bWrite] = pipe2(); // the process writes B; the destination's agent reads it
  const { done } = relayPair("pipe-write", aWrite, bRead);
  const reading = readAll(aRead);
  for (let i = 1; i <= 2000; i += 50) await writeFd(bWrite, enc.encode(lines(i, i + 49)));
  close(bWrite);
  assertEquals(await reading, lines(1, 2000));
  await done;
  close(aRead);
});

Deno.test("unix stream: both ways in order; the peer's shutdown is the process's end of file, the other way goes on", async () => {
  const [peer, procHome] = socketPair(SOCK.STREAM); // the peer, and the process's end at home
  const [agentEnd, procHere] = socketPair(SOCK.STREAM); // at the destination
  await writeFd(peer, enc.encode("queued before\n"));
  const { done } = relayPair("unix-stream", procHome, agentEnd);
  // Request and answer, 200 times, each way in turn.
  assertEquals(await readN(procHere, 14), "queued before\n");
  for (let i = 1; i <= 200; i++) {
    const q = `q ${i}\n`, a = `a ${i}\n`;
    await writeFd(peer, enc.encode(q));
    assertEquals(await readN(procHere, q.length), q);
    await writeFd(procHere, enc.encode(a));
    assertEquals(await readN(peer, a.length), a);
  }
  shutdownSocket(peer, 1); // the peer is done writing
  assertEquals(await readAll(procHere), "");
  await writeFd(procHere, enc.encode(lines(1, 500, "after")));
  close(procHere); // the process ends
  assertEquals(await readAll(peer), lines(1, 500, "after"));
  await done;
  close(peer);
});

Deno.test("backpressure: a process that does not read holds the peer back, and loses nothing", async () => {
  const [aRead, aWrite] = pipe2(0o4000); // non-blocking writes for the peer
  const [bRead, bWrite] = pipe2();
  const { src, done } = relayPair("pipe-read", aRead, bWrite);
  // The peer writes until the chain is full.
  const chunk = new Uint8Array(4096).fill(0x61);
  let written = 0;
  for (let stalls = 0; stalls < 20;) {
    const n = writeSome(aWrite, chunk);
    if (n === null) {
      stalls++;
      await new Promise((r) => setTimeout(r, 20));
    } else {
      written += n;
      stalls = 0;
    }
    assert(written < 16 << 20, "the chain never filled: no backpressure");
  }
  // Pipe A, the streams (4 chunks of at most 64 KiB), pipe B, one chunk in hand.
  assert(src.counts.sent <= 64 * 1024 * 7, `${src.counts.sent} bytes in flight`);
  close(aWrite);
  const got = await readAll(bRead, 20_000);
  assertEquals(got.length, written);
  assert(/^a*$/.test(got));
  await done;
  close(bRead);
});

Deno.test("a real child's pipe, copied with pidfd_getfd and relayed: its old output, then the new, then the end", async () => {
  const child = new Deno.Command("bash", {
    args: ["-c", 'for i in $(seq 1 50); do echo "line $i"; done; exec sleep 30'],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  const got: Uint8Array[] = [];
  const reading = (async () => {
    for (;;) {
      const r = await reader.read();
      if (r.done) return;
      got.push(r.value);
    }
  })();
  try {
    // Wait for the 50 lines, then take the child's write end as the source would.
    const until = Date.now() + 10_000;
    while (new TextDecoder().decode(concat(got)) !== lines(1, 50)) {
      assert(Date.now() < until, "the child did not write");
      await new Promise((r) => setTimeout(r, 20));
    }
    const pidfd = pidfdOpen(child.pid);
    const copy = pidfdGetfd(pidfd, 1);
    close(pidfd);
    child.kill("SIGKILL"); // its copy here ends; the relay's copy keeps the pipe open
    await child.status;
    const [bRead, bWrite] = pipe2(); // the process at the destination writes B
    const { done } = relayPair("pipe-write", copy, bRead);
    await writeFd(bWrite, enc.encode(lines(51, 400)));
    close(bWrite);
    await done;
    await reading;
    assertEquals(new TextDecoder().decode(concat(got)), lines(1, 400));
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* ended */ }
  }
});

const F_DUPFD_CLOEXEC = 1030;

/**
 * A second move, node1 → node2 → node3, chained: node2's agent holds the
 * other end of the process's pipe or socket there (its destination relay
 * from node1), and relays the process's end again to node3 (its source
 * relay), so the chain ends at the peer at home. `home` is the peer's
 * descriptor's counterpart at node1 (the process's original end, which the
 * deputy keeps: a dup here, closed when the relay says it ended);
 * `at2` is [agent end, process end] at node2, `at3` alike at node3.
 */
function chain(end: RelayedEnd, home: number, at2: [number, number], at3: [number, number]) {
  const [a1, a2] = channelPair(); // node1 ↔ node2
  const [b2, b3] = channelPair(); // node2 ↔ node3
  const deputyCopy = fcntl(home, F_DUPFD_CLOEXEC, 3);
  const ended: string[] = [];
  const n1 = new FdRelay(home, relayRole(end, "source"), fdStreams(0, "source"), undefined, () => {
    ended.push("node1");
    close(deputyCopy); // the deputy's `close FD`
  });
  const n2in = new FdRelay(at2[0], relayRole(end, "destination"), fdStreams(0, "destination"));
  const first = [n1.run(a1), n2in.run(a2)];
  /** The second move: node2's copy of the process's end (its original is gone), relayed on. */
  const move = () => {
    const n2out = new FdRelay(
      at2[1],
      relayRole(end, "source"),
      fdStreams(0, "source"),
      () => {},
      () => ended.push("node2"),
    );
    const n3 = new FdRelay(at3[0], relayRole(end, "destination"), fdStreams(0, "destination"));
    return Promise.all([...first, n2out.run(b2), n3.run(b3)]);
  };
  return { move, ended, channels: [a1, a2, b2, b3] };
}

Deno.test("a second move, chained through node2: the process's pipe write end, no loss, no repeat, in order; its close is the peer's end of file once node1's deputy closes its copy", async () => {
  const [peerRead, homeWrite] = pipe2(); // the peer at node1 reads; the process wrote
  const [r2, w2] = pipe2(); // node2: the agent reads r2, the process wrote w2
  const [r3, w3] = pipe2(); // node3 alike
  const c = chain("pipe-write", homeWrite, [r2, w2], [r3, w3]);
  const reading = readAll(peerRead, 20_000);
  // At node2, before it moves on: some reach node1, some wait in node2's pipe.
  await writeFd(w2, enc.encode(lines(1, 500)));
  const done = c.move(); // node2's copy of w2 goes to its source relay
  for (let i = 501; i <= 3000; i += 100) await writeFd(w3, enc.encode(lines(i, i + 99)));
  close(w3); // the process closes it at node3
  assertEquals(await reading, lines(1, 3000));
  await done;
  assertEquals(c.ended.sort(), ["node1", "node2"]);
  close(peerRead);
});

Deno.test("a second move, chained: the process's pipe read end gets what waited at node2 first, then the rest; the peer's close is its end of file", async () => {
  const [homeRead, peerWrite] = pipe2();
  const [r2, w2] = pipe2(); // node2: the process reads r2, the agent writes w2
  const [r3, w3] = pipe2();
  const c = chain("pipe-read", homeRead, [w2, r2], [w3, r3]);
  await writeFd(peerWrite, enc.encode(lines(1, 300)));
  // Nobody reads at node2 while it is frozen: these wait in node2's pipe.
  const done = c.move();
  for (let i = 301; i <= 2000; i += 100) await writeFd(peerWrite, enc.encode(lines(i, i + 99)));
  close(peerWrite);
  assertEquals(await readAll(r3, 20_000), lines(1, 2000));
  await done;
  assertEquals(c.ended.sort(), ["node1", "node2"]);
  close(r3);
});

Deno.test("a second move, chained: the peer at home closing its read end reaches the process at node3 as EPIPE", async () => {
  const [peerRead, homeWrite] = pipe2();
  const [r2, w2] = pipe2();
  const [r3, w3] = pipe2();
  const c = chain("pipe-write", homeWrite, [r2, w2], [r3, w3]);
  const done = c.move();
  await writeFd(w3, enc.encode("before\n"));
  assertEquals(await readN(peerRead, 7), "before\n");
  close(peerRead); // the peer is gone
  let epipe = false;
  const until = Date.now() + 15_000;
  while (!epipe && Date.now() < until) {
    try {
      await writeFd(w3, enc.encode("more\n"));
      await new Promise((r) => setTimeout(r, 20));
    } catch {
      epipe = true;
    }
  }
  assert(epipe, "the process at node3 never learned that nobody reads");
  close(w3);
  await done;
  assertEquals(c.ended.sort(), ["node1", "node2"]);
});

Deno.test("a second move, chained: a unix socket both ways, in order; shutdowns travel; node1's deputy closes its copy at the end", async () => {
  const [peer, home] = socketPair(SOCK.STREAM);
  const [agent2, proc2] = socketPair(SOCK.STREAM);
  const [agent3, proc3] = socketPair(SOCK.STREAM);
  const c = chain("unix-stream", home, [agent2, proc2], [agent3, proc3]);
  await writeFd(peer, enc.encode("queued\n"));
  const done = c.move();
  assertEquals(await readN(proc3, 7), "queued\n");
  for (let i = 1; i <= 100; i++) {
    await writeFd(peer, enc.encode(`q ${i}\n`));
    assertEquals(await readN(proc3, `q ${i}\n`.length), `q ${i}\n`);
    await writeFd(proc3, enc.encode(`a ${i}\n`));
    assertEquals(await readN(peer, `a ${i}\n`.length), `a ${i}\n`);
  }
  close(proc3); // the process ends
  assertEquals(await readAll(peer), "");
  shutdownSocket(peer, 1);
  await done;
  assertEquals(c.ended.sort(), ["node1", "node2"]);
  close(peer);
});
