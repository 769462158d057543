/**
 * The dump of a process's kernel objects on the host, with
 * tests/programs/fd_kinds.c: what `readFds` finds before a freeze, what
 * `dumpObjects` reads while frozen, and that the process, resumed, finds
 * everything as it left it (its report equals an untouched run's). Also
 * what is refused, and why.
 */
import { readFds } from "../../core/dump/files.ts";
import { checkReasons } from "../../core/dump/check.ts";
import { dumpObjects } from "../../core/dump/fds/dump.ts";
import { probeSemaphore } from "../../core/dump/fds/eventfd.ts";
import { parseEventfdInfo } from "../../core/dump/fdinfo.ts";
import { copyFds } from "../../core/dump/sockets.ts";
import { close, mkfifo } from "../../ffi/libc.ts";
import { readSome } from "../../ffi/fds.ts";
import { ThreadGroup } from "../../core/ptrace/group.ts";
import type { FdEntry } from "../../core/image/schema.ts";
import { buildFdKinds, reportLines, startProgram, waitUntil } from "../support/fd_kinds.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const opts = { sanitizeResources: false, sanitizeOps: false };

/** The report of an fd_kinds run that nobody touched. */
async function baseline(bin: string): Promise<string[]> {
  const r = await startProgram(bin, ["2"]);
  try {
    assertEquals((await r.done()).code, 0);
    return reportLines(r.out());
  } finally {
    r.end();
  }
}

Deno.test({
  name: "fd dump: every kind read from a frozen process, which then finds all as it left it",
  ...opts,
  fn: async () => {
    const bin = await buildFdKinds();
    const want = await baseline(bin);
    assertEquals(want.length, 16, want.join("\n"));
    const r = await startProgram(bin, ["20"]);
    let entries: FdEntry[] = [];
    try {
      await waitUntil("a tick", () => r.out().includes("tick 0 "));
      const g = ThreadGroup.freeze(r.pid);
      try {
        const open = await readFds(r.pid);
        assertEquals(open.reasons, []);
        assertEquals(open.sockets, []);
        const d = dumpObjects(r.pid, open.objects, { pid: r.pid, uid: 0, gid: 0 });
        assertEquals(d.reasons, []);
        entries = d.entries;
        // The semaphore probe, too, leaves counters and flags as they were.
        const copies = copyFds(r.pid, [10, 11]);
        try {
          const info = (fd: number) =>
            parseEventfdInfo(Deno.readTextFileSync(`/proc/${r.pid}/fdinfo/${fd}`))!;
          const flags = (fd: number) => Deno.readTextFileSync(`/proc/${r.pid}/fdinfo/${fd}`);
          for (const fd of [10, 11]) {
            const before = info(fd), fl = /flags:\s*(\d+)/.exec(flags(fd))![1];
            assertEquals(
              probeSemaphore(copies.get(fd)!, before.count),
              before.semaphore,
              `fd ${fd}`,
            );
            assertEquals(info(fd).count, before.count);
            assertEquals(/flags:\s*(\d+)/.exec(flags(fd))![1], fl);
          }
        } finally {
          for (const c of copies.values()) close(c);
        }
      } finally {
        g.resume();
      }
      assertEquals((await r.done()).code, 0, r.out());
      assertEquals(reportLines(r.out()), want);
    } finally {
      r.end();
    }

    const at = (fd: number) => entries.find((e) => e.fd === fd)!;
    assertEquals(entries.map((e) => `${e.fd}:${e.kind}`), [
      "10:eventfd",
      "11:eventfd",
      "12:eventfd",
      "13:timerfd",
      "14:timerfd",
      "15:timerfd",
      "16:signalfd",
      "17:pipe",
      "18:pipe",
      "19:pipe",
      "20:pipe",
      "21:unix",
      "22:unix",
      "23:unix",
      "24:unix",
      "25:unix",
      "26:unix",
      "27:memfd",
      "28:epoll",
      "29:memfd",
    ]);
    assertEquals(at(10).eventfd, { count: 5n, semaphore: false });
    assertEquals(at(11).eventfd, { count: 3n, semaphore: true });
    assertEquals(at(12).dupOf, 10);
    assertEquals(at(12).eventfd, undefined);
    const t13 = at(13).timerfd!, t14 = at(14).timerfd!, t15 = at(15).timerfd!;
    assertEquals([t13.clock, t13.ticks, t13.interval.sec], [1, 0n, 0n]);
    assert(t13.value.sec > 900n && t13.value.sec <= 1000n, `time left ${t13.value.sec}`);
    assertEquals([t14.ticks, t14.value.sec, t14.value.nsec], [1n, 0n, 0]);
    assertEquals([t15.clock, t15.interval.sec], [0, 3600n]);
    assertEquals(at(16).signalfd, { mask: (1n << 9n) | (1n << 11n) });
    assertEquals(at(17).pipe?.data.map(text), ["pipe-data-123\n"]);
    assertEquals(at(18).pipe, undefined);
    assertEquals(at(17).object, at(18).object);
    assertEquals(at(19).pipe?.data.map(text), ["p1", "packet-2"]);
    assertEquals(at(20).flags & 0o40000, 0o40000);
    const u = (fd: number) => at(fd).unix!;
    assertEquals(u(21).queue.map(text).join(""), "to-a-1to-a-2");
    assertEquals(u(22).queue.map(text), ["to-b"]);
    assertEquals([u(21).shutdown, u(22).shutdown], [1, 2]);
    assertEquals(u(24).queue.map(text), ["m1", "", "m333"]);
    assertEquals(u(25).queue.map(text), ["d1", "dd22"]);
    assertEquals([u(25).options.passcred, u(26).options.passcred], [true, false]);
    assertEquals([u(21).type, u(23).type, u(25).type], [1, 5, 2]);
    assertEquals(u(21).end + u(22).end, 1);
    assertEquals(u(25).options.peekOff, -1);
    const m = at(27).memfd!;
    assertEquals([m.name, m.size, m.seals, m.data.length, at(27).pos], [
      "fd_kinds memfd",
      1 << 20,
      6,
      10000,
      123n,
    ]);
    assertEquals(text(m.data.subarray(0, 4)), "abcd");
    assertEquals([at(29).memfd!.name, at(29).memfd!.seals, at(29).memfd!.size], ["", 1, 0]);
    assertEquals(
      at(28).epoll!.items.map((i) => [i.fd, (i.events & 0x80000001) >>> 0, i.data]).sort((a, b) =>
        Number(a[0]) - Number(b[0])
      ),
      [[10, 1, 0x1122334455667788n], [16, 1, 16n], [17, 0x80000001, 17n], [21, 1, 21n]],
    );
  },
});

Deno.test({
  name:
    "fd dump: what cannot move is refused with the descriptor and why; a queued descriptor stays",
  ...opts,
  fn: async () => {
    const bin = await buildFdKinds();
    const r = await startProgram(bin, ["10", "refused"]);
    try {
      const open = await readFds(r.pid);
      const all = open.reasons.join("\n");
      assertMatch(all, /fd 10: a pipe \(pipe:\[\d+\]\) whose other end the process does not hold/);
      assertMatch(all, /fd 11: an inotify instance \(anon_inode:inotify\) cannot be carried/);
      assertMatch(
        all,
        /fd 12: an epoll instance watching descriptor 13, which the process has closed/,
      );
      assertMatch(all, /fd 15: an eventfd \(anon_inode:\[eventfd\]\) that process \d+ holds too/);
      assertMatch(all, /fd 19: \/memfd:twice \(deleted\) opened a second time \(as fd 18 too/);
      assert(!/^fd 1[4678]:/m.test(all), all);
      // What `ppm checkpoint --check` says, before any freeze.
      const check = await checkReasons(r.pid);
      for (const fd of [10, 11, 12, 15]) {
        assert(check.some((x) => x.startsWith(`fd ${fd}: `)), check.join("\n"));
      }
      // The queued descriptor shows only when the queue is read, frozen.
      const g = ThreadGroup.freeze(r.pid);
      try {
        const pair = open.objects.filter((o) => o.fd === 16 || o.fd === 17);
        assertEquals(pair.length, 2);
        const d = dumpObjects(r.pid, pair, { pid: r.pid, uid: 0, gid: 0 });
        assertEquals(d.reasons, [
          "fd 16: a unix socketpair: a message queued on it carries descriptors (SCM_RIGHTS)",
        ]);
      } finally {
        g.resume();
      }
      assertEquals((await r.done()).code, 0, r.out());
      assertEquals(reportLines(r.out()), ["fd 16 rights=1 [x]"]);
    } finally {
      r.end();
    }
  },
});

Deno.test({
  name: "fd dump: a /dev/shm file's contents and a FIFO open at both ends with its bytes",
  ...opts,
  fn: async () => {
    const shm = `/dev/shm/ppm-test-${crypto.randomUUID()}`;
    const dir = await Deno.makeTempDir({ prefix: "ppm-fifo-" });
    const fifo = `${dir}/f`;
    mkfifo(fifo, 0o640);
    Deno.writeFileSync(shm, new TextEncoder().encode("shared\0\0"));
    const child = new Deno.Command("sh", {
      args: ["-c", 'exec 5<>"$0" 6<>"$1"; echo hi >&6; exec sleep 20', shm, fifo],
      stdin: "null",
      stdout: "null",
    }).spawn();
    try {
      await waitUntil("sleep with its descriptors", () => {
        try {
          return Deno.readLinkSync(`/proc/${child.pid}/exe`).endsWith("sleep") &&
            Deno.readLinkSync(`/proc/${child.pid}/fd/6`) === fifo;
        } catch {
          return false;
        }
      });
      const g = ThreadGroup.freeze(child.pid);
      try {
        const open = await readFds(child.pid);
        const mine = open.objects.filter((o) => o.fd === 5 || o.fd === 6);
        assertEquals(mine.map((o) => o.kind), ["shm", "fifo"]);
        const d = dumpObjects(child.pid, mine, { pid: child.pid, uid: 0, gid: 0 });
        assertEquals(d.reasons, []);
        const [s, f] = d.entries;
        assertEquals([s.path, s.shm?.size, text(s.shm!.data)], [shm, 8, "shared"]);
        assertEquals(s.id?.ino, BigInt(Deno.statSync(shm).ino!));
        assertEquals([f.path, f.flags & 3, f.pipe?.data.map(text)], [fifo, 2, ["hi\n"]]);
        assertEquals((f.id?.mode ?? 0) & 0o170777, 0o010640);
      } finally {
        g.resume();
      }
      // Still there for the process: tee took nothing.
      const copies = copyFds(child.pid, [6]);
      try {
        const buf = new Uint8Array(16);
        assertEquals(text(buf.subarray(0, readSome(copies.get(6)!, buf)!)), "hi\n");
      } finally {
        for (const c of copies.values()) close(c);
      }
    } finally {
      child.kill("SIGKILL");
      await child.status;
      await Deno.remove(shm).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});
