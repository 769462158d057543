/**
 * The descriptors of the FILES record: a valid list of every kind comes
 * back whole; hostile values of every new field, and lists that do not
 * hang together (a pipe without an end, a copy of nothing, a socketpair of
 * three ends, an epoll watching what is not there), are refused naming
 * the descriptor and the field.
 */
import { checkEpollTargets, checkFds, type FdEntry } from "../../core/image/fds.ts";
import { checkId } from "../../core/image/schema.ts";
import { ImageError } from "../../core/image/errors.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

const id = { mode: 0o100644, uid: 0, gid: 0, size: 5, mtimeMs: 1, dev: 1n, ino: 2n };
const opts = {
  sndbuf: 212992,
  rcvbuf: 212992,
  passcred: false,
  peekOff: -1,
  rcvlowat: 1,
  rcvtimeoUs: 0,
  sndtimeoUs: 0,
};
const bytes = (s: string) => new TextEncoder().encode(s);
const time = (sec: bigint, nsec = 0) => ({ sec, nsec });

/** One descriptor of every kind, with state. */
function valid(): Record<string, unknown>[] {
  return [
    { fd: 3, kind: "regular", path: "/tmp/a", flags: 0, pos: 0n, id },
    {
      fd: 4,
      kind: "eventfd",
      path: "anon_inode:[eventfd]",
      flags: 2,
      pos: 0n,
      eventfd: { count: 5n, semaphore: false },
    },
    { fd: 5, kind: "eventfd", path: "anon_inode:[eventfd]", flags: 2, pos: 0n, dupOf: 4 },
    {
      fd: 6,
      kind: "timerfd",
      path: "anon_inode:[timerfd]",
      flags: 2,
      pos: 0n,
      timerfd: { clock: 1, ticks: 2n, settimeFlags: 0, value: time(3n, 4), interval: time(0n) },
    },
    {
      fd: 7,
      kind: "signalfd",
      path: "anon_inode:[signalfd]",
      flags: 2,
      pos: 0n,
      signalfd: { mask: 0xa00n },
    },
    {
      fd: 8,
      kind: "pipe",
      path: "pipe:[9]",
      flags: 0,
      pos: 0n,
      object: 0,
      pipe: { size: 65536, data: [bytes("x")] },
    },
    { fd: 9, kind: "pipe", path: "pipe:[9]", flags: 1, pos: 0n, object: 0 },
    {
      fd: 10,
      kind: "unix",
      path: "socket:[1]",
      flags: 2,
      pos: 0n,
      object: 1,
      unix: {
        type: 5,
        end: 0,
        shutdown: 0,
        queue: [bytes("m"), bytes("")],
        uncredited: [1],
        options: opts,
      },
    },
    {
      fd: 11,
      kind: "unix",
      path: "socket:[2]",
      flags: 2,
      pos: 0n,
      object: 1,
      unix: { type: 5, end: 1, shutdown: 2, queue: [], uncredited: [], options: opts },
    },
    {
      fd: 12,
      kind: "memfd",
      path: "/memfd:m (deleted)",
      flags: 2,
      pos: 1n,
      memfd: { name: "m", size: 10, data: bytes("abc"), seals: 7, mode: 0o777 },
    },
    {
      fd: 13,
      kind: "shm",
      path: "/dev/shm/seg",
      flags: 2,
      pos: 0n,
      id,
      shm: { size: 5, data: bytes("hello") },
    },
    { fd: 14, kind: "shm", path: "/dev/shm/seg", flags: 0, pos: 0n, id },
    {
      fd: 15,
      kind: "epoll",
      path: "anon_inode:[eventpoll]",
      flags: 2,
      pos: 0n,
      epoll: { items: [{ fd: 4, events: 0x80000019, data: 0x1122334455667788n }] },
    },
    {
      fd: 16,
      kind: "fifo",
      path: "/tmp/f",
      flags: 2,
      pos: 0n,
      object: 2,
      pipe: { size: 4096, data: [] },
    },
  ];
}

function refused(list: unknown, pattern: RegExp): void {
  try {
    checkFds(list, checkId);
  } catch (e) {
    assert(e instanceof ImageError, `not an ImageError: ${e}`);
    assertMatch(`${e.message}`, pattern);
    return;
  }
  throw new Error(`accepted: ${pattern}`);
}

/** The valid list with descriptor `fd` changed by `change`. */
function with1(
  fd: number,
  change: (o: Record<string, unknown>) => void,
): Record<string, unknown>[] {
  const list = structuredClone(valid());
  change(list.find((o) => o.fd === fd)!);
  return list;
}

/** The valid list with state field `path` (dotted) of descriptor `fd` set to `v`. */
function field(fd: number, path: string, v: unknown): Record<string, unknown>[] {
  return with1(fd, (o) => {
    const keys = path.split(".");
    let at = o as Record<string, unknown>;
    for (const k of keys.slice(0, -1)) at = at[k] as Record<string, unknown>;
    if (v === undefined) delete at[keys.at(-1)!];
    else at[keys.at(-1)!] = v;
  });
}

Deno.test("FILES fds: a valid list of every kind is returned whole", () => {
  const fds = checkFds(valid(), checkId);
  assertEquals(fds.length, 14);
  const at = (n: number) => fds.find((f) => f.fd === n)!;
  assertEquals(at(4).eventfd, { count: 5n, semaphore: false });
  assertEquals(at(5).dupOf, 4);
  assertEquals(at(6).timerfd?.value, time(3n, 4));
  assertEquals(at(8).pipe?.data.length, 1);
  assertEquals(at(10).unix?.uncredited, [1]);
  assertEquals(at(12).memfd?.seals, 7);
  assertEquals(at(13).shm?.size, 5);
  assertEquals(at(15).epoll?.items[0].data, 0x1122334455667788n);
  checkEpollTargets(fds, new Set(fds.map((f) => f.fd)));
});

Deno.test("FILES fds: hostile values of each kind's state are refused naming the field", () => {
  const cases: [Record<string, unknown>[], RegExp][] = [
    [field(4, "kind", "gpu"), /unknown kind gpu/],
    [field(4, "fd", -1), /FILES.fds\[1\]: fd is -1/],
    [field(4, "fd", 1 << 20), /fd is 1048576/],
    [field(4, "eventfd.count", (1n << 64n) - 1n), /fd 4 eventfd: count .* out of range/],
    [field(4, "eventfd.count", -1n), /count .* out of range/],
    [field(4, "eventfd.semaphore", 1), /semaphore is not true or false/],
    [field(4, "eventfd", undefined), /a eventfd without its state/],
    [field(4, "timerfd", { clock: 1 }), /timerfd state on a eventfd/],
    [field(5, "eventfd", { count: 1n, semaphore: true }), /eventfd state on a copy/],
    [field(6, "timerfd.clock", 2), /clock 2 is not a timerfd clock/],
    [field(6, "timerfd.clock", 10), /clock is 10/],
    [field(6, "timerfd.settimeFlags", 4), /settimeFlags is 4/],
    [field(6, "timerfd.settimeFlags", 2), /cancel-on-set without an absolute time/],
    [field(6, "timerfd.settimeFlags", 3), /cancel-on-set without an absolute time/], // clock 1
    [field(6, "timerfd.value.nsec", 1_000_000_000), /nsec is 1000000000/],
    [field(6, "timerfd.value.sec", 1n << 63n), /sec .* out of range/],
    [field(6, "timerfd.interval", "soon"), /interval.*not a map/],
    [field(6, "timerfd.ticks", -5n), /ticks .* out of range/],
    [field(7, "signalfd.mask", 1n << 64n), /mask .* out of range/],
    [field(7, "signalfd", [1]), /signalfd.*not a map/],
    [field(8, "pipe.size", 1000), /size is 1000/],
    [field(8, "pipe.size", 12288), /not a power of two/],
    [field(8, "pipe.size", 2 ** 31), /fd 8 pipe: size is 2147483648/],
    [field(8, "pipe.data", [bytes("")]), /data\[0\]/],
    [field(8, "pipe.data", "x"), /data.*not a list/],
    [
      with1(8, (o) => {
        o.pipe = { size: 4096, data: [new Uint8Array(4096), bytes("y")] };
      }),
      /holds more than its size/,
    ],
    [field(10, "unix.type", 3), /type 3 is not a socketpair's/],
    [field(10, "unix.end", 2), /end is 2/],
    [field(10, "unix.shutdown", 4), /shutdown is 4/],
    [
      with1(11, (o) => {
        const u = o.unix as Record<string, unknown>;
        u.type = 1;
        u.queue = [bytes("")];
      }),
      /queue\[0\]/,
    ],
    [field(10, "unix.uncredited", [2]), /uncredited\[0\]/],
    [field(10, "unix.uncredited", [1, 1]), /not ascending/],
    [field(10, "unix.options.passcred", "yes"), /passcred is not true or false/],
    [field(10, "unix.options.peekOff", -2), /peekOff is -2/],
    [field(10, "unix.options.sndbuf", 2 ** 31), /sndbuf is/],
    [field(10, "unix.options.rcvtimeoUs", -1), /rcvtimeoUs is -1/],
    [field(10, "unix.options", undefined), /options.*not a map/],
    [field(12, "memfd.name", "a\0b"), /name is not at most 249 bytes without NUL/],
    [field(12, "memfd.name", "é".repeat(125)), /name is not at most 249 bytes/],
    [field(12, "memfd.size", 2), /data is not 0..2 bytes/],
    [field(12, "memfd.seals", 0x40), /seals is 64/],
    [field(12, "memfd.mode", 0o10000), /mode is 4096/],
    [field(12, "memfd.data", "abc"), /data is not/],
    [field(13, "path", "/dev/shm/a/b"), /not directly in \/dev\/shm/],
    [field(13, "path", "/dev/shm/.."), /not directly in \/dev\/shm/],
    [field(13, "path", "/tmp/x"), /not directly in \/dev\/shm/],
    [field(13, "id", undefined), /without its identity/],
    [field(13, "shm.size", -1), /size is -1/],
    [field(14, "shm", { size: 5, data: bytes("hello") }), /on 2 descriptors, not one/],
    [field(13, "shm", undefined), /on 0 descriptors, not one/],
    [
      field(15, "epoll.items", [{ fd: 4, events: 1, data: 0n }, { fd: 4, events: 1, data: 0n }]),
      /watched twice/,
    ],
    [field(15, "epoll.items", [{ fd: -1, events: 1, data: 0n }]), /fd is -1/],
    [field(15, "epoll.items", [{ fd: 4, events: 2 ** 32, data: 0n }]), /events is/],
    [field(15, "epoll.items", [{ fd: 4, events: 1, data: -1n }]), /data .* out of range/],
    [field(16, "path", "fifo"), /not an absolute path/],
    [field(4, "path", "x".repeat(5000)), /path is not a string/],
  ];
  for (const [list, pattern] of cases) refused(list, pattern);
});

Deno.test("FILES fds: lists that do not hang together are refused", () => {
  refused([...valid(), {
    fd: 4,
    kind: "eventfd",
    path: "",
    flags: 0,
    pos: 0n,
    eventfd: { count: 0n, semaphore: false },
  }], /fd 4: appears twice/);
  refused(field(5, "dupOf", 99), /a copy of descriptor 99/);
  refused(field(5, "dupOf", 5), /a copy of descriptor 5/);
  refused(field(5, "dupOf", 3), /a copy of descriptor 3, which is not a eventfd/);
  refused(
    with1(5, (o) => {
      o.kind = "timerfd";
    }),
    /a copy of descriptor 4/,
  );
  // A copy of a copy.
  refused(
    [...valid(), { fd: 20, kind: "eventfd", path: "", flags: 0, pos: 0n, dupOf: 5 }],
    /a copy of descriptor 5/,
  );
  refused(field(9, "flags", 0), /a pipe without both its ends/);
  refused(field(9, "object", 7), /without both its ends|contents are not on one end/);
  refused(field(9, "object", undefined), /without its object number/);
  refused(field(9, "flags", 3), /a pipe without both its ends/);
  refused(field(9, "pipe", { size: 65536, data: [] }), /contents are not on one end/);
  refused(field(11, "object", 5), /a socketpair that is not two ends of one type/);
  refused(field(11, "unix.end", 0), /a socketpair that is not two ends of one type/);
  refused(field(11, "unix.type", 1), /a socketpair that is not two ends of one type/);
  refused(field(11, "object", 0), /descriptors of different kinds/);
  refused(field(4, "object", 3), /an object number on a eventfd/);
  refused(
    [...valid(), { fd: 17, kind: "fifo", path: "/tmp/g", flags: 0, pos: 0n, object: 2 }],
    /a FIFO opened under different paths|without both/,
  );
  // An epoll watching a descriptor the image does not hold.
  const fds = checkFds(field(15, "epoll.items", [{ fd: 40, events: 1, data: 0n }]), checkId);
  let msg = "";
  try {
    checkEpollTargets(fds, new Set(fds.map((f: FdEntry) => f.fd)));
  } catch (e) {
    msg = (e as Error).message;
  }
  assertMatch(msg, /fd 15 epoll.*watches descriptor 40, which the image does not hold/);
});
