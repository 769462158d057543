/**
 * deputy.c on its own, run by this test as a plain child, with this test
 * as its agent (a unix socket it listens on, not the link), so that what
 * the agent says can be anything:
 *
 * - bad arguments exit with DEPUTY_EXIT.USAGE; no agent within the
 *   reconnect window, DEPUTY_EXIT.NO_AGENT;
 * - it says hello with its PID and names itself; lines too long, with a
 *   NUL, unknown or out of range are ignored, and it goes on;
 * - `killed` with a signal whose default is to be ignored exits 128 + SIG;
 *   with a real-time signal or SIGKILL it ends by that signal;
 * - the signals it gets while no agent listens are kept, at most 256 (a
 *   real-time signal past that is lost), and given to the agent that then
 *   takes its connection; the connection cut, it connects again.
 */
import { join } from "node:path";
import { DEPUTY_EXIT, ensureDeputy } from "../../core/deputy/binary.ts";
import { kill } from "../../ffi/libc.ts";
import { waitUntil } from "../support/fd_kinds.ts";
import { assert, assertEquals } from "../support/assert.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

async function place() {
  const dir = await Deno.makeTempDir({ prefix: "ppm-deputy-prog-" });
  await Deno.chmod(dir, 0o755);
  return { dir, bin: await ensureDeputy(join(dir, "bin")), sock: join(dir, "agent.sock") };
}

function start(bin: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(bin, { args, stdin: "null", stdout: "null", stderr: "null" }).spawn();
}

/** Its status, or it is killed after `ms`. */
async function within(child: Deno.ChildProcess, ms: number): Promise<Deno.CommandStatus> {
  const timer = setTimeout(() => child.kill("SIGKILL"), ms);
  try {
    return await child.status;
  } finally {
    clearTimeout(timer);
  }
}

/** One accepted connection, its lines read as they come. */
async function acceptOne(l: Deno.UnixListener) {
  const conn = await l.accept();
  let got = "";
  let eof = false;
  (async () => {
    const buf = new Uint8Array(65536);
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
    lines: () => got.split("\n").slice(0, -1),
    eof: () => eof,
    say: (s: string | Uint8Array) =>
      conn.write(typeof s === "string" ? new TextEncoder().encode(s) : s),
    close: () => conn.close(),
  };
}

/** Whether `pid` blocks every signal but SIGKILL and SIGSTOP (the deputy, set up). */
function blocksAll(pid: number): boolean {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return /^SigBlk:\s*fffffffffffbfeff$/m.test(status);
}

function sharedPending(pid: number): bigint {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return BigInt(`0x${/^ShdPnd:\s*([0-9a-f]+)$/m.exec(status)![1]}`);
}

Deno.test({
  name: "deputy program: bad arguments, and no agent within its window",
  ...opts,
  fn: async () => {
    const p = await place();
    try {
      for (
        const args of [
          [],
          ["/x"],
          ["relative.sock", "n"],
          ["/x", "n", "abc"],
          ["/x", "n", "86401"],
          ["/" + "x".repeat(120), "n"],
          ["/x", "n", "1", "extra"],
        ]
      ) {
        assertEquals(
          (await within(start(p.bin, args), 5000)).code,
          DEPUTY_EXIT.USAGE,
          args.join(" "),
        );
      }
      const t0 = Date.now();
      const s = await within(start(p.bin, [join(p.dir, "nobody-listens"), "n", "1"]), 10_000);
      assertEquals(s.code, DEPUTY_EXIT.NO_AGENT);
      assert(Date.now() - t0 >= 900, `gave up after ${Date.now() - t0} ms`);
      // The window from the environment, when no argument gives it.
      const env = new Deno.Command(p.bin, {
        args: [join(p.dir, "nobody-listens"), "n"],
        env: { PPM_DEPUTY_RECONNECT_S: "0" },
        stderr: "null",
      }).spawn();
      assertEquals((await within(env, 5000)).code, DEPUTY_EXIT.NO_AGENT);
    } finally {
      await Deno.remove(p.dir, { recursive: true });
    }
  },
});

/**
 * Runs the deputy under perl (Debian's perl-base is essential), which
 * reports its raw wait status: Deno cannot report an end by a real-time
 * signal.
 */
function startReported(bin: string, args: string[]) {
  const child = new Deno.Command("perl", {
    args: [
      "-e",
      '$| = 1; my $p = fork() // die; if (!$p) { exec(@ARGV) or exit 127 } print "pid $p\\n"; ' +
      'waitpid($p, 0); print "status $?\\n"',
      bin,
      ...args,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let out = "";
  (async () => {
    for await (const c of child.stdout) out += new TextDecoder().decode(c);
  })();
  return {
    pid: async () => {
      await waitUntil("the deputy's PID", () => /^pid \d+$/m.test(out));
      return Number(/^pid (\d+)$/m.exec(out)![1]);
    },
    status: async () => {
      await waitUntil("the deputy's end", () => /^status \d+$/m.test(out));
      await child.status;
      return Number(/^status (\d+)$/m.exec(out)![1]);
    },
    end: async () => {
      try {
        child.kill("SIGKILL");
      } catch { /* ended */ }
      await child.status;
    },
  };
}

Deno.test({
  name: "deputy program: hello and its name; what the agent says wrong is ignored; killed by " +
    "an ignored-by-default signal exits 128 + SIG, by a real-time one or SIGKILL ends by it",
  ...opts,
  fn: async () => {
    const p = await place();
    const l = Deno.listen({ transport: "unix", path: p.sock });
    try {
      // Raw wait statuses: exit 146 (128 + SIGCONT), ended by signal 40, by SIGKILL.
      for (const [sig, raw] of [[18, 146 << 8], [40, 40], [9, 9]]) {
        const run = startReported(p.bin, [p.sock, "deputy-name", "30"]);
        try {
          const pid = await run.pid();
          const c = await acceptOne(l);
          await waitUntil("its hello", () => c.lines().length >= 1);
          assertEquals(c.lines(), [`hello ${pid}`]);
          assertEquals(Deno.readTextFileSync(`/proc/${pid}/comm`), "deputy-name\n");
          await c.say("x".repeat(1000) + "\nexit 7\0\nexit 300\nexit -1\nexit 07x\nkilled 0\n");
          await c.say("killed 65\nkilled\nbogus\n\nEXIT 1\n exit 1\nexit 1 \n");
          // Still there, still passing signals on.
          Deno.kill(pid, "SIGUSR1");
          await waitUntil("SIGUSR1", () => c.lines().includes("signal 10"));
          await c.say(`killed ${sig}\n`);
          assertEquals(await run.status(), raw, `killed ${sig}`);
          c.close();
        } finally {
          await run.end();
        }
      }
    } finally {
      l.close();
      await Deno.remove(p.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "deputy program: signals kept while no agent listens, at most 256; it connects again",
  ...opts,
  fn: async () => {
    const p = await place();
    const child = start(p.bin, [p.sock, "n", "30"]);
    let l: Deno.UnixListener | undefined;
    try {
      // Nobody listens yet: it tries every second, and keeps what it gets.
      await waitUntil("it blocks every signal", () => blocksAll(child.pid));
      Deno.kill(child.pid, "SIGTERM");
      Deno.kill(child.pid, "SIGCHLD"); // not passed on
      await waitUntil("the deputy to take SIGTERM", () => sharedPending(child.pid) === 0n);
      for (let i = 0; i < 300; i++) kill(child.pid, 40);
      await waitUntil("the deputy to take them all", () => sharedPending(child.pid) === 0n);
      l = Deno.listen({ transport: "unix", path: p.sock });
      const c = await acceptOne(l);
      await waitUntil("its lines", () => c.lines().length >= 257, 5000);
      await new Promise((r) => setTimeout(r, 200)); // nothing more comes
      const lines = c.lines();
      assertEquals(lines[0], `hello ${child.pid}`);
      assertEquals(lines[1], "signal 15");
      assertEquals(lines.slice(2), Array(255).fill("signal 40"));
      // Cut: it comes back (at once, then every second) and says hello again.
      c.close();
      const again = await acceptOne(l);
      Deno.kill(child.pid, "SIGHUP");
      await waitUntil("hello and SIGHUP", () => again.lines().length >= 2);
      assertEquals(again.lines(), [`hello ${child.pid}`, "signal 1"]);
      await again.say("exit 0\n");
      assertEquals((await within(child, 5000)).code, 0);
      again.close();
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* ended */ }
      await child.status;
      l?.close();
      await Deno.remove(p.dir, { recursive: true });
    }
  },
});

/** The deputy's descriptors: number → what /proc says it opens. */
function fdsOf(pid: number): Map<number, string> {
  const out = new Map<number, string>();
  for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      out.set(Number(e.name), Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`));
    } catch { /* closed meanwhile */ }
  }
  return out;
}

Deno.test({
  name: "deputy program: `close FD` closes only a descriptor it was given from 3 up, once; " +
    "hostile lines (0-2, its own signalfd and socket, out of range, malformed) are ignored",
  ...opts,
  fn: async () => {
    const p = await place();
    const l = Deno.listen({ transport: "unix", path: p.sock });
    // Given 3, 4 and 9 (as become.ts keeps relayed descriptors), it opens its own after them.
    const child = new Deno.Command("bash", {
      args: [
        "-c",
        'exec 3</dev/null 4</dev/null 9</dev/null; exec "$0" "$@"',
        p.bin,
        p.sock,
        "n",
        "30",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      let c = await acceptOne(l);
      await waitUntil("its hello", () => c.lines().length >= 1);
      const pid = child.pid;
      const before = fdsOf(pid);
      const own = [...before].filter(([, t]) => /signalfd|^socket:/.test(t)).map(([fd]) => fd);
      assertEquals(own.length, 2, JSON.stringify([...before]));
      assert(own.every((fd) => fd > 4 && fd !== 9), `its own descriptors ${own}`);
      await c.say("close 0\nclose 1\nclose 2\nclose -3\nclose 3x\nclose 3 \n close 3\nclose\n");
      await c.say("close 100000\nclose 99999\nclose 03\0\nCLOSE 3\n");
      await c.say("x".repeat(70) + "close 3\n" + own.map((fd) => `close ${fd}\n`).join(""));
      Deno.kill(pid, "SIGUSR1");
      await waitUntil("SIGUSR1", () => c.lines().includes("signal 10"));
      assertEquals(fdsOf(pid), before, "a hostile line closed something");
      // Its own: closed, and again (nothing more happens).
      await c.say("close 4\nclose 4\n");
      await waitUntil("fd 4 closed", () => !fdsOf(pid).has(4));
      await c.say("close 3\n");
      await waitUntil("fd 3 closed", () => !fdsOf(pid).has(3));
      assert(fdsOf(pid).has(9), "fd 9 stays");
      // Cut: it connects again, its new socket at the lowest free number, 3; `close 3` now
      // names its socket, not a descriptor it was given: ignored.
      c.close();
      c = await acceptOne(l);
      await waitUntil("hello again", () => c.lines().length >= 1);
      assert(/^socket:/.test(fdsOf(pid).get(3) ?? ""), JSON.stringify([...fdsOf(pid)]));
      await c.say("close 3\n");
      Deno.kill(pid, "SIGUSR2");
      await waitUntil("SIGUSR2 on the same connection", () => c.lines().includes("signal 12"));
      assert(/^socket:/.test(fdsOf(pid).get(3) ?? ""), "its socket was closed");
      await c.say("close 9\nexit 5\n");
      assertEquals((await within(child, 5000)).code, 5);
      c.close();
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* ended */ }
      await child.status;
      l.close();
      await Deno.remove(p.dir, { recursive: true });
    }
  },
});
