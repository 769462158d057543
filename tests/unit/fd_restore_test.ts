/**
 * Kernel objects made again by injected system calls, on the host (no
 * module needed): the descriptors dumped from a frozen fd_kinds are made in
 * a second process (fd_kinds in `target` mode, stopped), checked through
 * /proc/PID/fdinfo, and the process, continued, reads from each exactly
 * what the original read. Then hand-made entries for what fd_kinds does
 * not have: numbers that collide with the new descriptors, a pipe end
 * opened a second time, a read-only memfd, a FIFO, a cancel-on-set timer.
 */
import { recvWithin } from "../support/recv.ts";
import { readFds } from "../../core/dump/files.ts";
import { dumpObjects } from "../../core/dump/fds/dump.ts";
import { ThreadGroup } from "../../core/ptrace/group.ts";
import { restoreFds } from "../../core/restore/fds.ts";
import { acceptFrom } from "../../core/restore/fd_relayed.ts";
import type { FdEntry } from "../../core/image/schema.ts";
import { checkFds } from "../../core/image/fds.ts";
import { checkId } from "../../core/image/schema.ts";
import { copyFds } from "../../core/dump/sockets.ts";
import { close, mkfifo } from "../../ffi/libc.ts";
import { F, fcntl, readSome } from "../../ffi/fds.ts";
import { PpmError } from "../../core/errors.ts";
import { buildFdKinds, reportLines, startProgram } from "../support/fd_kinds.ts";
import { startTarget } from "../support/inject_target.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import {
  AF,
  bind4,
  closeSocket,
  connect4,
  getsockoptInt,
  IPPROTO,
  listenSocket,
  peerName,
  sendAll,
  SO,
  SOCK,
  socket,
  sockName,
  SOL_SOCKET,
} from "../../ffi/socket.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

const info = (pid: number, fd: number) => Deno.readTextFileSync(`/proc/${pid}/fdinfo/${fd}`);
const flagsOf = (pid: number, fd: number) => parseInt(/flags:\s*(\d+)/.exec(info(pid, fd))![1], 8);

/** Dumps fd_kinds's objects while it is frozen; it runs on to its end and reports. */
async function dumpFdKinds(): Promise<{ entries: FdEntry[]; report: string[] }> {
  const r = await startProgram(await buildFdKinds(), ["3"]);
  try {
    const g = ThreadGroup.freeze(r.pid);
    let entries: FdEntry[];
    try {
      const open = await readFds(r.pid);
      assertEquals(open.reasons, []);
      const d = dumpObjects(r.pid, open.objects, { pid: r.pid, uid: 0, gid: 0 });
      assertEquals(d.reasons, []);
      entries = d.entries;
    } finally {
      g.resume();
    }
    assertEquals((await r.done()).code, 0, r.out());
    return { entries, report: reportLines(r.out()) };
  } finally {
    r.end();
  }
}

Deno.test({
  name: "fd restore: what fd_kinds held, made again in another process, reads the same",
  ...opts,
  fn: async () => {
    const { entries, report } = await dumpFdKinds();
    // Through the image's checks, as a restore gets them.
    const checked = checkFds(structuredClone(entries), checkId);
    const tg = await startTarget();
    try {
      await restoreFds(tg.inj, tg.run.pid, checked);
      const pid = tg.run.pid;
      for (const e of checked) {
        const want = e.flags & (0o4000 | 0o2000000 | 3);
        assertEquals(flagsOf(pid, e.fd) & (0o4000 | 0o2000000 | 3), want, `flags of fd ${e.fd}`);
      }
      assertMatch(info(pid, 10), /eventfd-count:\s+5\n/);
      assertMatch(info(pid, 11), /eventfd-count:\s+3\n/);
      if (/eventfd-semaphore/.test(info(pid, 11))) {
        assertMatch(info(pid, 11), /eventfd-semaphore: 1/);
      }
      assertMatch(info(pid, 13), /clockid: 1\nticks: 0\n/);
      assertMatch(info(pid, 14), /ticks: 1\n/);
      assertMatch(info(pid, 15), /clockid: 0\n[^]*it_interval: \(3600, 0\)/);
      assertMatch(info(pid, 16), /sigmask:\s+0000000000000a00/);
      assertMatch(info(pid, 28), /tfd:\s+17 events: 80000019 data:\s+11 /);
      assertMatch(info(pid, 28), /tfd:\s+10 events:\s+19 data: 1122334455667788 /);
      assertEquals(Deno.readLinkSync(`/proc/${pid}/fd/27`), "/memfd:fd_kinds memfd (deleted)");
      const out = await tg.report(["SIGUSR1"]);
      assertEquals(reportLines(out), report);
    } finally {
      tg.run.end();
    }
  },
});

const base = { path: "", pos: 0n };

Deno.test({
  name:
    "fd restore: numbers on the new descriptors, a second open of a pipe end, read-only memfd, FIFO",
  ...opts,
  fn: async () => {
    const fifo = `${await Deno.makeTempDir({ prefix: "ppm-fifo-" })}/f`;
    mkfifo(fifo, 0o600);
    const hello = new TextEncoder().encode("hello");
    const entries = checkFds([
      // pipe2 gives 3 and 4 here: the read end goes to 4, the write end to 3.
      {
        ...base,
        fd: 4,
        kind: "pipe",
        path: "pipe:[1]",
        flags: 0,
        object: 0,
        pipe: { size: 65536, data: [hello] },
      },
      { ...base, fd: 3, kind: "pipe", path: "pipe:[1]", flags: 1 | 0o4000, object: 0 },
      { ...base, fd: 5, kind: "pipe", path: "pipe:[1]", flags: 2, object: 0 },
      { ...base, fd: 6, kind: "pipe", path: "pipe:[1]", flags: 0o2000000, dupOf: 4 },
      {
        ...base,
        fd: 7,
        kind: "memfd",
        path: "/memfd:ro (deleted)",
        flags: 0,
        pos: 2n,
        memfd: { name: "ro", size: 8192, data: hello, seals: 8 | 1, mode: 0o640 },
      },
      {
        ...base,
        fd: 8,
        kind: "fifo",
        path: fifo,
        flags: 0o4000,
        object: 1,
        pipe: { size: 4096 * 4, data: [hello, hello] },
      },
      { ...base, fd: 9, kind: "fifo", path: fifo, flags: 1, object: 1 },
      {
        ...base,
        fd: 40,
        kind: "timerfd",
        path: "anon_inode:[timerfd]",
        flags: 2,
        timerfd: {
          clock: 0,
          ticks: 0n,
          settimeFlags: 3,
          value: { sec: 100n, nsec: 0 },
          interval: { sec: 0n, nsec: 0 },
        },
      },
    ], checkId);
    const tg = await startTarget();
    try {
      const pid = tg.run.pid;
      await restoreFds(tg.inj, pid, entries);
      const link = (fd: number) => Deno.readLinkSync(`/proc/${pid}/fd/${fd}`);
      assertEquals(link(3), link(4));
      assertEquals(link(5), link(4));
      assertEquals(link(6), link(4));
      assertEquals([flagsOf(pid, 3) & 0o4003, flagsOf(pid, 4) & 3, flagsOf(pid, 5) & 3], [
        0o4001,
        0,
        2,
      ]);
      assertEquals(flagsOf(pid, 6) & 0o2000000, 0o2000000);
      assertEquals(flagsOf(pid, 4) & 0o2000000, 0);
      assertEquals(
        [...Deno.readDirSync(`/proc/${pid}/fd`)].map((e) => Number(e.name)).sort((a, b) => a - b),
        [
          0,
          1,
          2,
          3,
          4,
          5,
          6,
          7,
          8,
          9,
          40,
        ],
      );
      assertEquals(link(7), "/memfd:ro (deleted)");
      assertMatch(info(pid, 7), /pos:\s+2\n/);
      assertEquals(flagsOf(pid, 7) & 3, 0);
      const st = Deno.statSync(`/proc/${pid}/fd/7`);
      assertEquals([st.size, (st.mode ?? 0) & 0o7777], [8192, 0o640]);
      assertEquals(link(8), fifo);
      assertMatch(info(pid, 40), /settime flags: 03\n/);
      const left = Number(/it_value: \((\d+),/.exec(info(pid, 40))![1]);
      assert(left >= 95 && left <= 100, `${left} s left`);
      // What the pipes hold, read through copies of the new descriptors.
      const copies = copyFds(pid, [4, 7, 8]);
      try {
        assertEquals(fcntl(copies.get(7)!, F.GET_SEALS), 9);
        assertEquals(flagsOf(pid, 8) & 0o4003, 0o4000);
        const buf = new Uint8Array(64);
        assertEquals(
          new TextDecoder().decode(buf.subarray(0, readSome(copies.get(4)!, buf)!)),
          "hello",
        );
        assertEquals(
          new TextDecoder().decode(buf.subarray(0, readSome(copies.get(8)!, buf)!)),
          "hellohello",
        );
      } finally {
        for (const c of copies.values()) close(c);
      }
    } finally {
      tg.run.end();
      await Deno.remove(fifo.slice(0, fifo.lastIndexOf("/")), { recursive: true });
    }
  },
});

Deno.test({
  name: "fd restore: a failure names the descriptor and what failed",
  ...opts,
  fn: async () => {
    const tg = await startTarget();
    try {
      // An image's checks would refuse clock 5; the kernel refuses it too, and that is reported.
      const bad: FdEntry[] = [{
        ...base,
        fd: 12,
        kind: "timerfd",
        path: "anon_inode:[timerfd]",
        flags: 2,
        timerfd: {
          clock: 5,
          ticks: 0n,
          settimeFlags: 0,
          value: { sec: 0n, nsec: 0 },
          interval: { sec: 0n, nsec: 0 },
        },
      }];
      let err: unknown;
      try {
        await restoreFds(tg.inj, tg.run.pid, bad);
      } catch (e) {
        err = e;
      }
      assert(err instanceof PpmError, `${err}`);
      assertMatch(err.message, /fd 12: making its timerfd on clock 5: errno 22/);
    } finally {
      tg.run.end();
    }
  },
});

Deno.test({
  name: "fd restore: the target runs on unchanged with nothing to make",
  ...opts,
  fn: async () => {
    const tg = await startTarget();
    try {
      await restoreFds(tg.inj, tg.run.pid, []);
      const out = await tg.report();
      assert(reportLines(out).every((l) => / closed$/.test(l) || /not-a-dup/.test(l)), out);
    } finally {
      tg.run.end();
    }
  },
});

Deno.test({
  name:
    "fd restore: an epoll watch on a standard stream that cannot be watched any more is left out",
  ...opts,
  fn: async () => {
    const epoll = (items: { fd: number; events: number; data: bigint }[]): FdEntry => ({
      ...base,
      fd: 30,
      kind: "epoll",
      path: "anon_inode:[eventpoll]",
      flags: 2,
      epoll: { items },
    });
    const memfd: FdEntry = {
      ...base,
      fd: 3,
      kind: "memfd",
      path: "/memfd:m (deleted)",
      flags: 2,
      memfd: { name: "m", size: 0, data: new Uint8Array(), seals: 0, mode: 0o600 },
    };
    const stdin: FdEntry = { ...base, fd: 0, kind: "device", path: "/dev/null", flags: 0 };
    let tg = await startTarget();
    try {
      // Its stdin is /dev/null here, which epoll cannot watch.
      await restoreFds(tg.inj, tg.run.pid, [stdin, epoll([{ fd: 0, events: 1, data: 0n }])]);
      assert(!/tfd:/.test(info(tg.run.pid, 30)));
    } finally {
      tg.run.end();
    }
    tg = await startTarget();
    try {
      let err: unknown;
      try {
        await restoreFds(tg.inj, tg.run.pid, [memfd, epoll([{ fd: 3, events: 1, data: 0n }])]);
      } catch (e) {
        err = e;
      }
      assertMatch(`${err}`, /fd 30: watching descriptor 3: errno 1/);
    } finally {
      tg.run.end();
    }
  },
});

Deno.test("fd restore: an object whose descriptions were given other files is refused before any call", async () => {
  const inj = {
    call: () => {
      throw new Error("a system call was made");
    },
    write: () => Promise.reject(new Error("memory was written")),
    scratch: () => 0n,
  };
  const efd: FdEntry = {
    ...base,
    fd: 0,
    kind: "eventfd",
    path: "anon_inode:[eventfd]",
    flags: 2,
    eventfd: { count: 1n, semaphore: false },
  };
  const pair = (fd: number, end: number): FdEntry => ({
    ...base,
    fd,
    kind: "unix",
    path: "socket:[1]",
    flags: 2,
    object: 0,
    unix: {
      type: 1,
      end,
      shutdown: 0,
      queue: [],
      uncredited: [],
      options: {
        sndbuf: 4096,
        rcvbuf: 4096,
        passcred: false,
        peekOff: -1,
        rcvlowat: 1,
        rcvtimeoUs: 0,
        sndtimeoUs: 0,
      },
    },
  });
  const stdin: FdEntry = { ...base, fd: 0, kind: "device", path: "/dev/null", flags: 0 };
  for (
    const [fds, re] of [
      [[stdin, { ...efd, fd: 5, eventfd: undefined, dupOf: 0 }], /fd 5: eventfd is not whole here/],
      [[{ ...stdin, fd: 1 }, pair(7, 0)], /fd 7: unix is not whole here/],
    ] as [FdEntry[], RegExp][]
  ) {
    let err: unknown;
    try {
      await restoreFds(inj, 1, fds);
    } catch (e) {
      err = e;
    }
    assert(err instanceof PpmError, `${err}`);
    assertMatch(err.message, re);
  }
});

Deno.test({
  name:
    "fd restore: relayed descriptors, a TCP connection over loopback among them, made with the " +
    "agent's ends",
  ...opts,
  fn: async () => {
    const tg = await startTarget();
    const relays = new Map<number, number>();
    try {
      const relayed = (fd: number, end: "pipe-read" | "unix-stream" | "tcp-stream"): FdEntry => ({
        ...base,
        fd,
        kind: "relayed",
        path: "socket:[1]",
        flags: 2, // O_RDWR
        relayed: { end, shutdown: 0, passcred: false },
      });
      await restoreFds(tg.inj, tg.run.pid, [
        relayed(20, "tcp-stream"),
        relayed(21, "unix-stream"),
        { ...relayed(22, "pipe-read"), flags: 0 },
      ], relays);
      assertEquals([...relays.keys()].sort(), [20, 21, 22]);
      const copies = copyFds(tg.run.pid, [20, 21]);
      try {
        // The process's end is a TCP socket connected to the agent's, over loopback.
        const mine = copies.get(20)!;
        const agent = relays.get(20)!;
        assertEquals(getsockoptInt(mine, SOL_SOCKET, SO.DOMAIN), AF.INET);
        assertEquals(peerName(mine), sockName(agent));
        assertEquals((sockName(mine) as { addr: string }).addr, "127.0.0.1");
        assertEquals(flagsOf(tg.run.pid, 20) & 0o4003, 2, "O_RDWR, blocking as it was");
        sendAll(agent, new TextEncoder().encode("to the process"));
        assertEquals(await recvWithin(mine, 14), "to the process");
        sendAll(mine, new TextEncoder().encode("back"));
        assertEquals(await recvWithin(agent, 4), "back");
        assertEquals(getsockoptInt(copies.get(21)!, SOL_SOCKET, SO.DOMAIN), AF.UNIX);
      } finally {
        for (const c of copies.values()) close(c);
      }
    } finally {
      for (const a of relays.values()) close(a);
      tg.run.end();
    }
  },
});

Deno.test("fd restore: the agent's listener for a relayed TCP connection keeps only the process's, not a stranger's that came first", async () => {
  const listener = socket(AF.INET, SOCK.STREAM, IPPROTO.TCP);
  const fds: number[] = [];
  try {
    bind4(listener, { addr: "127.0.0.1", port: 0 });
    listenSocket(listener, 8);
    const at = sockName(listener) as { addr: string; port: number };
    const stranger = socket(AF.INET, SOCK.STREAM, IPPROTO.TCP);
    const mine = socket(AF.INET, SOCK.STREAM, IPPROTO.TCP);
    fds.push(stranger, mine);
    connect4(stranger, at);
    connect4(mine, at);
    const got = await acceptFrom(listener, sockName(mine) as { addr: string; port: number }, 2000);
    assert(got >= 0, "the process's connection was not accepted");
    fds.push(got);
    assertEquals(peerName(got), sockName(mine));
    // The stranger's was closed: it reads an end of file.
    assertEquals(await recvWithin(stranger, 1), "");
    // Nobody else: none within the bound.
    assertEquals(await acceptFrom(listener, { addr: "127.0.0.1", port: 1 }, 50), -1);
  } finally {
    for (const fd of fds) closeSocket(fd);
    closeSocket(listener);
  }
});
