/**
 * A real process made its own deputy, on the host (no module): the
 * multi-threaded tests/programs/deputy_target.c runs as a child of this
 * test, which is so its parent and sees its real wait status; it is frozen
 * as ppm freezes (core/ptrace/group.ts) and turned into its deputy
 * (core/deputy/become.ts), which talks to a link (core/deputy/link.ts).
 *
 * - as uid 65534: the same PID, parent, process group and session; its
 *   name; one thread; 0-2 and the kept descriptors (one of them
 *   close-on-exec before) open, the rest closed; the SIGSTOP this process
 *   sent while it was frozen (as the commit does) dropped; SIGUSR1,
 *   SIGTERM, SIGINT (which the process ignored) and SIGCONT arrive at the
 *   link in order, SIGCHLD does not; `exit 7` is the parent's exit code 7,
 *   and its stdout ends only then;
 * - `killed 11` is the parent's SIGSEGV (though the process ignored it),
 *   and no core file is written though its RLIMIT_CORE was unlimited;
 * - SIGKILL on the deputy is reported gone;
 * - the link closes (an agent restart): the deputy keeps its signals (a
 *   standard one once, real-time ones each) and gives them to the next
 *   link on the same path, in order;
 * - a process under seccomp filters (suspended for the calls: this test
 *   runs as root) becomes its deputy, and keeps its filters;
 * - a deputy that cannot be made (a program the process may not run, a
 *   file that is no program) leaves the process as it was: its threads,
 *   its descriptors and their close-on-exec flags, running on once let go.
 */
import { join } from "node:path";
import { ensureDeputy } from "../../core/deputy/binary.ts";
import { becomeDeputy, rangesAround } from "../../core/deputy/become.ts";
import { DeputyLink } from "../../core/deputy/link.ts";
import { PpmError } from "../../core/errors.ts";
import { listThreads, ThreadGroup } from "../../core/ptrace/group.ts";
import { kill } from "../../ffi/libc.ts";
import { PROGRAMS_OUT, waitUntil } from "../support/fd_kinds.ts";
import { buildProgram } from "../support/programs.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

const opts = { sanitizeResources: false, sanitizeOps: false, ignore: Deno.uid() !== 0 };
const NOBODY = 65534;

/** A started deputy_target, a child of this process. */
interface Target {
  pid: number;
  child: Deno.ChildProcess;
  /** Its stdout so far, and whether it ended. */
  out(): string;
  eof(): boolean;
  end(): Promise<void>;
}

async function startTarget(
  o: { uid?: number; cwd?: string; program?: string; args?: string[] } = {},
): Promise<Target> {
  const bin = await buildProgram(o.program ?? "deputy_target", PROGRAMS_OUT);
  const child = new Deno.Command(bin, {
    args: o.args ?? [],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
    cwd: o.cwd ?? "/",
    ...(o.uid === undefined ? {} : { uid: o.uid, gid: o.uid }),
  }).spawn();
  let out = "", eof = false;
  (async () => {
    for await (const c of child.stdout) out += new TextDecoder().decode(c);
    eof = true;
  })();
  const t: Target = {
    pid: child.pid,
    child,
    out: () => out,
    eof: () => eof,
    end: async () => {
      try {
        child.kill("SIGKILL");
      } catch { /* ended */ }
      await child.status;
    },
  };
  try {
    await waitUntil("the target to start", () => out.includes("ready "));
  } catch (e) {
    await t.end();
    throw e;
  }
  return t;
}

/** A place for the deputy and its link, the link, and what it heard. */
async function setUp() {
  const dir = await Deno.makeTempDir({ prefix: "ppm-deputy-" });
  await Deno.chmod(dir, 0o755);
  const signals: number[] = [];
  const gone: number[] = [];
  const events = {
    onSignal: (_pid: number, sig: number) => signals.push(sig),
    onGone: (pid: number) => gone.push(pid),
  };
  const path = join(dir, "run", "link.sock");
  return {
    dir,
    path,
    signals,
    gone,
    events,
    link: DeputyLink.listen(path, events),
    binary: await ensureDeputy(join(dir, "bin")),
  };
}

/** ppid, pgrp, session of /proc/PID/stat. */
function family(pid: number): string[] {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ").slice(1, 4);
}

/** What each descriptor of `pid` is (readlink of /proc/PID/fd/N). */
function fds(pid: number): Map<number, string> {
  const m = new Map<number, string>();
  for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
    m.set(Number(e.name), Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`));
  }
  return m;
}

/** /proc/PID/fdinfo flags of each of `list`, or "closed". */
function fdFlags(pid: number, list: number[]): string[] {
  return list.map((fd) => {
    try {
      return /^flags:\s*(\d+)/m.exec(Deno.readTextFileSync(`/proc/${pid}/fdinfo/${fd}`))![1];
    } catch {
      return "closed";
    }
  });
}

/** Shared pending signals of `pid`. */
function sharedPending(pid: number): bigint {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return BigInt(`0x${/^ShdPnd:\s*([0-9a-f]+)$/m.exec(status)![1]}`);
}

/** Freezes `t` and makes it its deputy, keeping 4 and 5; waits for its hello. */
async function makeDeputy(
  t: Target,
  s: Awaited<ReturnType<typeof setUp>>,
  opts: { stopFirst?: boolean; reconnectS?: number; threads?: number } = {},
): Promise<void> {
  s.link.expect(t.pid);
  const group = ThreadGroup.freeze(t.pid);
  try {
    assertEquals(group.size, opts.threads ?? 4);
    if (opts.stopFirst) kill(t.pid, 19); // as the commit does, while it is frozen
    await becomeDeputy(group, {
      binary: s.binary,
      socket: s.path,
      keep: [4, 5],
      reconnectS: opts.reconnectS ?? 30,
    });
  } catch (e) {
    group.kill();
    throw e;
  }
  await s.link.waitConnected(t.pid, 10_000);
}

Deno.test({
  name: "deputy: same PID, parent, group, session, name; one thread; kept descriptors; " +
    "signals in order; exit 7 is the parent's status",
  ...opts,
  fn: async () => {
    const s = await setUp();
    const t = await startTarget({ uid: NOBODY });
    try {
      const before = { family: family(t.pid), fds: fds(t.pid) };
      await makeDeputy(t, s, { stopFirst: true });
      assertEquals(family(t.pid), before.family);
      assertEquals(Deno.readTextFileSync(`/proc/${t.pid}/comm`), "dep-target\n");
      assertEquals(listThreads(t.pid), [t.pid]);
      assertEquals(Deno.readLinkSync(`/proc/${t.pid}/exe`), s.binary);
      assertMatch(Deno.readTextFileSync(`/proc/${t.pid}/status`), /^Uid:\s+65534\s/m);
      // Asleep in its loop (a loaded machine may show it runnable a moment longer).
      await waitUntil(
        "the deputy to wait in its loop",
        () => /^State:\s+S/m.test(Deno.readTextFileSync(`/proc/${t.pid}/status`)),
      );
      // 0-2 and the kept ones as they were; the others closed, their numbers maybe the deputy's own.
      const now = fds(t.pid);
      for (const fd of [0, 1, 2, 4, 5]) assertEquals(now.get(fd), before.fds.get(fd), `fd ${fd}`);
      const own = [...now].filter(([fd]) => ![0, 1, 2, 4, 5].includes(fd)).map(([, w]) => w);
      assertEquals(own.length, 2, JSON.stringify([...now]));
      assert(own.some((w) => w === "anon_inode:[signalfd]"), own.join(" "));
      assert(own.some((w) => w.startsWith("socket:")), own.join(" "));
      for (const fd of [3, 6, 9]) assert(now.get(fd) !== before.fds.get(fd), `fd ${fd} open`);

      const order: [Deno.Signal, number][] = [
        ["SIGUSR1", 10],
        ["SIGTERM", 15],
        ["SIGINT", 2],
        ["SIGCONT", 18],
      ];
      for (const [name, n] of order) {
        Deno.kill(t.pid, name);
        await waitUntil(`signal ${n} at the link`, () => s.signals.at(-1) === n);
      }
      Deno.kill(t.pid, "SIGCHLD");
      Deno.kill(t.pid, "SIGUSR2");
      await waitUntil("SIGUSR2 at the link", () => s.signals.at(-1) === 12);
      assertEquals(s.signals, [10, 15, 2, 18, 12]);

      assert(!t.eof(), "its stdout ended while the deputy runs");
      await s.link.exit(t.pid, 7);
      const status = await t.child.status;
      assertEquals([status.code, status.signal], [7, null]);
      await waitUntil("its stdout to end", () => t.eof());
      assertEquals(s.gone, []);
    } finally {
      await t.end();
      await s.link.close();
      await Deno.remove(s.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "deputy: killed 11 is the parent's SIGSEGV, without a core file",
  ...opts,
  fn: async () => {
    const s = await setUp();
    const cwd = join(s.dir, "cwd");
    await Deno.mkdir(cwd);
    const rootCore = await Deno.lstat("/core").then(() => true, () => false);
    const t = await startTarget({ cwd });
    try {
      await makeDeputy(t, s);
      await s.link.killed(t.pid, 11);
      const status = await t.child.status;
      assertEquals(status.signal, "SIGSEGV");
      assertEquals([...Deno.readDirSync(cwd)].map((e) => e.name), []);
      assertEquals(await Deno.lstat("/core").then(() => true, () => false), rootCore);
      assertEquals(s.gone, []);
    } finally {
      await t.end();
      await s.link.close();
      await Deno.remove(s.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "deputy: SIGKILL on the deputy is reported gone",
  ...opts,
  fn: async () => {
    const s = await setUp();
    const t = await startTarget();
    try {
      await makeDeputy(t, s);
      Deno.kill(t.pid, "SIGKILL");
      await waitUntil("the deputy reported gone", () => s.gone.includes(t.pid));
      assertEquals((await t.child.status).signal, "SIGKILL");
    } finally {
      await t.end();
      await s.link.close();
      await Deno.remove(s.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "deputy: across an agent restart it keeps its signals and gives them to the next link",
  ...opts,
  fn: async () => {
    const s = await setUp();
    const t = await startTarget({ uid: NOBODY });
    let next: DeputyLink | undefined;
    try {
      await makeDeputy(t, s);
      await s.link.close();
      // Each sent once the deputy took the last (the kernel would merge a pending one).
      for (const sig of [10, 15, 10, 40, 40]) {
        kill(t.pid, sig);
        await waitUntil(`the deputy to take ${sig}`, () => sharedPending(t.pid) === 0n);
      }
      next = DeputyLink.listen(s.path, s.events);
      next.expect(t.pid);
      await next.waitConnected(t.pid, 5000);
      await waitUntil("the kept signals", () => s.signals.length >= 4);
      // A standard signal kept once (as the kernel keeps one pending); real-time ones each.
      assertEquals(s.signals, [10, 15, 40, 40]);
      await next.exit(t.pid, 0);
      assertEquals((await t.child.status).code, 0);
    } finally {
      await t.end();
      await next?.close();
      await s.link.close();
      await Deno.remove(s.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "deputy: one that cannot be made leaves the process as it was, and it runs on",
  ...opts,
  fn: async () => {
    const s = await setUp();
    const bad = join(s.dir, "bin", "not-a-program");
    await Deno.writeTextFile(bad, "\x7fELF but not really\n", { mode: 0o755 });
    await Deno.chmod(bad, 0o755);
    const locked = join(s.dir, "bin", "locked");
    await Deno.copyFile(s.binary, locked);
    await Deno.chmod(locked, 0o700);
    const t = await startTarget({ uid: NOBODY });
    try {
      const before = { fds: fds(t.pid), flags: fdFlags(t.pid, [3, 4, 5, 6, 9]) };
      s.link.expect(t.pid);
      const group = ThreadGroup.freeze(t.pid);
      const cases: [string, RegExp][] = [[locked, /may not run .*locked \(EACCES\)/], [
        bad,
        /ENOEXEC/,
      ]];
      for (const [binary, why] of cases) {
        try {
          await becomeDeputy(group, { binary, socket: s.path, keep: [4, 5] });
          throw new Error(`a deputy was made of ${binary}`);
        } catch (e) {
          assert(e instanceof PpmError, String(e));
          assertMatch(e.message, why);
        }
        assertEquals(listThreads(t.pid).length, 4);
        assertEquals(group.size, 4);
        assertEquals(fds(t.pid), before.fds);
        assertEquals(fdFlags(t.pid, [3, 4, 5, 6, 9]), before.flags);
      }
      group.resume();
      Deno.kill(t.pid, "SIGUSR1");
      const status = await t.child.status;
      assertEquals(status.code, 0);
      await waitUntil("its report", () => t.eof());
      assertMatch(t.out(), /^alive threads=4 fds=ococo$/m);
      assertEquals(s.signals, []);
    } finally {
      await t.end();
      await s.link.close();
      await Deno.remove(s.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "deputy: a process under seccomp filters becomes its deputy and keeps its filters",
  ...opts,
  fn: async () => {
    const s = await setUp();
    const file = join(s.dir, "confined.txt");
    await Deno.writeTextFile(file, "");
    await Deno.chmod(file, 0o666);
    const t = await startTarget({
      uid: NOBODY,
      program: "confined",
      args: ["100000", "sandboxed", file, "seccomp"],
    });
    try {
      assertMatch(Deno.readTextFileSync(`/proc/${t.pid}/status`), /^Seccomp:\s+2$/m);
      await makeDeputy(t, s, { threads: 1 });
      assertEquals(Deno.readTextFileSync(`/proc/${t.pid}/comm`), "sandboxed\n");
      assertMatch(Deno.readTextFileSync(`/proc/${t.pid}/status`), /^Seccomp:\s+2$/m);
      Deno.kill(t.pid, "SIGUSR1");
      await waitUntil("SIGUSR1 at the link", () => s.signals.includes(10));
      await s.link.exit(t.pid, 3);
      assertEquals((await t.child.status).code, 3);
    } finally {
      await t.end();
      await s.link.close();
      await Deno.remove(s.dir, { recursive: true });
    }
  },
});

Deno.test("deputy: the ranges closed around a keep-list", () => {
  const max = 0xffffffffn;
  assertEquals(rangesAround([]), [[3n, max]]);
  assertEquals(rangesAround([3]), [[4n, max]]);
  assertEquals(rangesAround([4, 5, 9]), [[3n, 3n], [6n, 8n], [10n, max]]);
});
