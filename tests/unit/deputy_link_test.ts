/**
 * The agent's deputy link (core/deputy/link.ts) against hand-made clients:
 * this test process is the expected "deputy" (SO_PEERCRED names it), or a
 * process that is not expected; what they send is hostile input.
 *
 * - a connection from a process no deputy is expected in is closed, and
 *   nothing it says is heard;
 * - a first line that is not a hello closes the connection;
 * - after the hello, `signal N` lines are heard in order; lines too long,
 *   with a NUL, unknown, a second hello, signal numbers out of 1..64 are
 *   ignored and the connection stays; past MAX_BAD of them it is closed;
 * - what the deputy was told (`exit`, `killed`) goes to each new
 *   connection, which replaces the last one; the promise resolves when
 *   the process ends, and a deputy that ends untold is reported gone;
 * - closing the link rejects its waiters and removes its socket, and a new
 *   link listens on the same path.
 */
import { join } from "node:path";
import { DeputyLink, MAX_BAD } from "../../core/deputy/link.ts";
import { PpmError } from "../../core/errors.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { waitUntil } from "../support/fd_kinds.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

/** A link in a fresh directory, recording what it tells. */
async function startLink() {
  const dir = await Deno.makeTempDir({ prefix: "ppm-deputy-link-" });
  await Deno.chmod(dir, 0o755);
  const signals: [number, number][] = [];
  const gone: number[] = [];
  const logs: string[] = [];
  const path = join(dir, "run", "link.sock");
  const events = {
    onSignal: (pid: number, sig: number) => signals.push([pid, sig]),
    onGone: (pid: number) => gone.push(pid),
    log: (m: string) => logs.push(m),
  };
  const link = DeputyLink.listen(path, events);
  return {
    link,
    path,
    signals,
    gone,
    logs,
    events,
    done: async () => {
      await link.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** A client connection with line reads that give up after `ms`. */
async function client(path: string) {
  const conn = await Deno.connect({ transport: "unix", path });
  const enc = new TextEncoder();
  let got = "";
  let eof = false;
  const pump = (async () => {
    const buf = new Uint8Array(4096);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        got += new TextDecoder().decode(buf.subarray(0, n));
      }
    } catch { /* reset */ }
    eof = true;
  })();
  return {
    /** Writes `s`; false when the link closed the connection first. */
    send: async (s: string | Uint8Array): Promise<boolean> => {
      try {
        await conn.write(typeof s === "string" ? enc.encode(s) : s);
        return true;
      } catch (e) {
        if (e instanceof Deno.errors.BrokenPipe || e instanceof Deno.errors.ConnectionReset) {
          return false;
        }
        throw e;
      }
    },
    got: () => got,
    closedByPeer: async (ms = 3000) => {
      await waitUntil("the link to close the connection", () => eof, ms);
    },
    close: async () => {
      try {
        conn.close();
      } catch { /* closed */ }
      await pump;
    },
  };
}

/** Resolves with the error `p` rejects with, which must match `re`. */
async function rejects(p: Promise<unknown>, re: RegExp): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    assertMatch((e as Error).message, re);
    return e;
  }
  throw new Error(`resolved, where it should have failed with ${re}`);
}

function sleeper(): Deno.ChildProcess {
  return new Deno.Command("sleep", { args: ["30"], stdout: "null", stderr: "null" }).spawn();
}

Deno.test({
  name: "deputy link: the socket is 0666 in a 0755 directory; no such process cannot be expected",
  ...opts,
  fn: async () => {
    const t = await startLink();
    try {
      const st = await Deno.lstat(t.path);
      assert(st.isSocket);
      assertEquals((st.mode ?? 0) & 0o777, 0o666);
      assertEquals(((await Deno.lstat(join(t.path, ".."))).mode ?? 0) & 0o777, 0o755);
      // A PID that is surely free: beyond pid_max.
      const max = Number(Deno.readTextFileSync("/proc/sys/kernel/pid_max"));
      try {
        t.link.expect(max + 1);
        throw new Error("expected a process that does not exist");
      } catch (e) {
        assert(e instanceof PpmError, String(e));
        assertMatch(e.message, /no such process/);
      }
      await rejects(t.link.exit(max + 1, 0), /no deputy is expected in process/);
    } finally {
      await t.done();
    }
  },
});

Deno.test({
  name: "deputy link: a connection from a process where no deputy is expected is closed unheard",
  ...opts,
  fn: async () => {
    const t = await startLink();
    const other = sleeper();
    try {
      t.link.expect(other.pid); // someone else: this test process is not expected
      const c = await client(t.path);
      await c.send(`hello ${Deno.pid}\nsignal 10\n`);
      await c.closedByPeer();
      await c.close();
      assertEquals(t.signals, []);
      assert(
        t.logs.some((l) => l.includes(`process ${Deno.pid}`) && l.includes("no deputy")),
        t.logs.join("\n"),
      );
      assertEquals(t.link.isConnected(other.pid), false);
    } finally {
      other.kill("SIGKILL");
      await other.status;
      await t.done();
    }
  },
});

Deno.test({
  name: "deputy link: a first line that is not a hello closes the connection",
  ...opts,
  fn: async () => {
    const t = await startLink();
    try {
      t.link.expect(Deno.pid);
      for (const first of ["signal 10\n", "hello abc\n", "hello 0\n", "x".repeat(500) + "\n"]) {
        const c = await client(t.path);
        await c.send(first);
        await c.closedByPeer();
        await c.close();
      }
      assertEquals(t.signals, []);
      assertEquals(t.link.isConnected(Deno.pid), false);
    } finally {
      await t.done();
    }
  },
});

Deno.test({
  name: "deputy link: signals heard in order; hostile lines ignored, the connection kept",
  ...opts,
  fn: async () => {
    const t = await startLink();
    try {
      t.link.expect(Deno.pid);
      const c = await client(t.path);
      // A hello naming another PID (another PID namespace) is taken: SO_PEERCRED counts.
      await c.send("hello 4242\n");
      await t.link.waitConnected(Deno.pid, 3000);
      assert(t.logs.some((l) => l.includes("calls itself 4242")), t.logs.join("\n"));
      await c.send(`signal 10\nhello ${Deno.pid}\n`); // a second hello
      await c.send("x".repeat(100_000) + "\n"); // huge
      await c.send("signal 0\nsignal 65\nsignal 999\nsignal -1\nsignal 1x\nsignal 012\n");
      await c.send(new Uint8Array([...new TextEncoder().encode("signal 3"), 0, 10])); // a NUL
      await c.send("\nSIGNAL 4\n signal 5\nsignal 6 \n");
      await c.send("signal 64\nsig");
      await c.send("nal 2\n");
      await waitUntil("three signals", () => t.signals.length >= 3);
      assertEquals(t.signals, [[Deno.pid, 10], [Deno.pid, 64], [Deno.pid, 2]]);
      assert(t.logs.some((l) => l.includes("a second hello")), t.logs.join("\n"));
      assert(t.logs.some((l) => l.includes("over 64 bytes")), t.logs.join("\n"));
      assertEquals(t.logs.filter((l) => l.includes(": ignored")).length, 5, "logged: only 5");
      // Still connected: it is told what to do (and this process does not end: the wait times out).
      await rejects(t.link.exit(Deno.pid, 3, 300), /did not end within 0.3 s/);
      await waitUntil("the exit line", () => c.got() === "exit 3\n");
      await c.close();
    } finally {
      await t.done();
    }
  },
});

Deno.test({
  name: `deputy link: more than ${MAX_BAD} meaningless lines close the connection`,
  ...opts,
  fn: async () => {
    const t = await startLink();
    try {
      t.link.expect(Deno.pid);
      const c = await client(t.path);
      await c.send(`hello ${Deno.pid}\n` + "nonsense\n".repeat(MAX_BAD + 1));
      await c.closedByPeer();
      await c.close();
      assert(t.logs.some((l) => l.includes(`more than ${MAX_BAD}`)), t.logs.join("\n"));
    } finally {
      await t.done();
    }
  },
});

Deno.test({
  name: "deputy link: a new connection replaces the last one and is told again",
  ...opts,
  fn: async () => {
    const t = await startLink();
    try {
      t.link.expect(Deno.pid);
      const a = await client(t.path);
      await a.send(`hello ${Deno.pid}\n`);
      await t.link.waitConnected(Deno.pid);
      const told = t.link.killed(Deno.pid, 9, 1500).catch((e) => e);
      await waitUntil("the first connection told", () => a.got() === "killed 9\n");
      const b = await client(t.path);
      await b.send(`hello ${Deno.pid}\nsignal 15\n`);
      await a.closedByPeer();
      await waitUntil("the second connection told", () => b.got() === "killed 9\n");
      await waitUntil("its signal", () => t.signals.length === 1);
      assertEquals(t.signals, [[Deno.pid, 15]]);
      const e = await told;
      assert(e instanceof PpmError && /did not end within 1.5 s/.test(e.message), String(e));
      await a.close();
      await b.close();
      // Out-of-range commands are the caller's mistake.
      let thrown = 0;
      for (const f of [() => t.link.exit(Deno.pid, 256), () => t.link.killed(Deno.pid, 65)]) {
        try {
          await f();
        } catch (e) {
          if (e instanceof RangeError) thrown++;
        }
      }
      assertEquals(thrown, 2);
    } finally {
      await t.done();
    }
  },
});

Deno.test({
  name: "deputy link: ended untold is gone; ended after being told resolves the promise",
  ...opts,
  fn: async () => {
    const t = await startLink();
    const a = sleeper(), b = sleeper();
    try {
      t.link.expect(a.pid);
      t.link.expect(b.pid);
      const waiting = t.link.waitConnected(a.pid, 5000).catch((e) => e);
      a.kill("SIGKILL");
      await waitUntil("a reported gone", () => t.gone.includes(a.pid));
      const e = await waiting;
      assert(e instanceof PpmError && /ended/.test(e.message), String(e));
      // b never connects; told to exit, it ends (killed here): the promise resolves, no gone.
      const exit = t.link.exit(b.pid, 0, 5000);
      b.kill("SIGKILL");
      await exit;
      assertEquals(t.gone, [a.pid]);
      await rejects(t.link.exit(b.pid, 0), /no deputy is expected/);
    } finally {
      for (const p of [a, b]) {
        try {
          p.kill("SIGKILL");
        } catch { /* ended */ }
        await p.status;
      }
      await t.done();
    }
  },
});

Deno.test({
  name: "deputy link: closing rejects waiters and removes the socket; a new link takes the path",
  ...opts,
  fn: async () => {
    const t = await startLink();
    try {
      t.link.expect(Deno.pid);
      const c = await client(t.path);
      await c.send(`hello ${Deno.pid}\n`);
      await t.link.waitConnected(Deno.pid);
      const told = t.link.exit(Deno.pid, 1, 10_000).catch((e) => e);
      await t.link.close();
      const e = await told;
      assert(e instanceof PpmError && /link closed/.test(e.message), String(e));
      await c.closedByPeer();
      await c.close();
      await rejects(Deno.lstat(t.path), /No such file/);
      // The next agent: same path, expects again, hears the deputy that connects again.
      const next = DeputyLink.listen(t.path, t.events);
      try {
        next.expect(Deno.pid);
        const d = await client(t.path);
        await d.send(`hello ${Deno.pid}\nsignal 12\n`);
        await waitUntil("the signal at the new link", () => t.signals.length === 1);
        assertEquals(t.signals, [[Deno.pid, 12]]);
        await d.close();
        // A socket left behind (an agent that died) is replaced.
        const third = DeputyLink.listen(t.path, t.events);
        await third.close();
      } finally {
        await next.close();
      }
    } finally {
      await t.done();
    }
  },
});

Deno.test({
  name: "deputy link: `close FD` told now, once per descriptor, again on each connection; " +
    "out of range refused; a deputy not expected is not told",
  ...opts,
  fn: async () => {
    const t = await startLink();
    try {
      for (const bad of [0, 2, -1, 1.5, 100_000]) {
        let threw = false;
        try {
          t.link.closeKept(Deno.pid, bad);
        } catch (e) {
          threw = e instanceof RangeError;
        }
        assert(threw, `fd ${bad} accepted`);
      }
      t.link.closeKept(Deno.pid, 7); // not expected: nothing
      t.link.expect(Deno.pid);
      t.link.closeKept(Deno.pid, 5); // before it connects: told at its hello
      const c = await client(t.path);
      await c.send(`hello ${Deno.pid}\n`);
      await waitUntil("close 5", () => c.got() === "close 5\n");
      t.link.closeKept(Deno.pid, 9);
      t.link.closeKept(Deno.pid, 9);
      await waitUntil("close 9", () => c.got() === "close 5\nclose 9\n");
      await c.close();
      const again = await client(t.path);
      await again.send(`hello ${Deno.pid}\n`);
      await waitUntil("both again", () => again.got() === "close 5\nclose 9\n");
      await again.close();
    } finally {
      await t.done();
    }
  },
});
