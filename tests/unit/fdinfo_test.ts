/**
 * The fdinfo parsers (eventfd, timerfd, signalfd, epoll) on the texts
 * 6.1 and newer kernels print, and on hostile ones; the sock_diag reply
 * parser on good and damaged replies; the eventfd semaphore rule (on a
 * kernel that does not show the mode, refused only where finding it out
 * would show).
 */
import {
  parseEpollInfo,
  parseEventfdInfo,
  parseSignalfdInfo,
  parseTimerfdInfo,
} from "../../core/dump/fdinfo.ts";
import { eventfdReasons } from "../../core/dump/fds/eventfd.ts";
import { edgeWatched } from "../../core/dump/fds/epoll.ts";
import type { ObjectFd } from "../../core/dump/fds/survey.ts";
import { parseUnixDiag, unixDiagRequest } from "../../ffi/sock_diag.ts";
import { assert, assertEquals, assertThrows } from "../support/assert.ts";

const head = "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1057\n";

Deno.test("fdinfo: eventfd on 6.1 (no semaphore line) and later kernels", () => {
  assertEquals(parseEventfdInfo(head + "eventfd-count:                5\neventfd-id: 3\n"), {
    count: 5n,
  });
  assertEquals(
    parseEventfdInfo(
      head + "eventfd-count: fffffffffffffffe\neventfd-id: 3\neventfd-semaphore: 1\n",
    ),
    { count: 0xfffffffffffffffen, semaphore: true },
  );
  for (
    const bad of [
      "eventfd-count: ffffffffffffffff\n", // beyond what a counter holds
      "eventfd-count: 1ffffffffffffffff\n",
      "eventfd-count: -1\n",
      "eventfd-count: 5\neventfd-semaphore: 2\n",
      "eventfd-count:\n",
      "",
    ]
  ) assertEquals(parseEventfdInfo(head + bad), undefined, bad);
});

Deno.test("fdinfo: timerfd", () => {
  const t = "clockid: 1\nticks: 2\nsettime flags: 01\nit_value: (99, 991680062)\n" +
    "it_interval: (1, 500)\n";
  assertEquals(parseTimerfdInfo(head + t), {
    clock: 1,
    ticks: 2n,
    settimeFlags: 1,
    value: { sec: 99n, nsec: 991680062 },
    interval: { sec: 1n, nsec: 500 },
  });
  for (
    const [from, to] of [
      ["clockid: 1", "clockid: 2"],
      ["clockid: 1", "clockid: x"],
      ["settime flags: 01", "settime flags: 04"],
      ["settime flags: 01", "settime flags: 9"],
      ["(99, 991680062)", "(99, 9916800620)"],
      ["(99, 991680062)", "(9223372036854775808, 0)"],
      ["(99, 991680062)", "(99,991680062)"],
      ["ticks: 2", "ticks: 18446744073709551616"],
      ["ticks: 2", "ticks: -2"],
      ["it_interval: (1, 500)\n", ""],
    ]
  ) assertEquals(parseTimerfdInfo(head + t.replace(from, to)), undefined, to);
});

Deno.test("fdinfo: signalfd mask", () => {
  assertEquals(parseSignalfdInfo(head + "sigmask:\t0000000800000200\n"), 0x800000200n);
  for (const bad of ["sigmask:\t800000200\n", "sigmask:\tzz00000800000200\n", ""]) {
    assertEquals(parseSignalfdInfo(head + bad), undefined, bad);
  }
});

Deno.test("fdinfo: epoll watch lines", () => {
  const lines = "tfd:        3 events: 80000019 data: 1122334455667788  pos:0 ino:414 sdev:10\n" +
    "tfd:      600 events:       19 data:                7  pos:0 ino:6c648 sdev:f\n";
  assertEquals(parseEpollInfo(head + lines), [
    { fd: 3, events: 0x80000019, data: 0x1122334455667788n, ino: 0x414n, sdev: 0x10 },
    { fd: 600, events: 0x19, data: 7n, ino: 0x6c648n, sdev: 0xf },
  ]);
  assertEquals(parseEpollInfo(head), []);
  for (
    const bad of [
      "tfd: 3 events: 19\n",
      "tfd:  99999999999 events: 19 data: 7  pos:0 ino:1 sdev:1\n",
      "tfd: 3 events: 119999999 data: 7  pos:0 ino:1 sdev:1\n",
      "tfd: 3 events: 19 data: 11112222333344445 pos:0 ino:1 sdev:1\n",
      "tfd: -3 events: 19 data: 7  pos:0 ino:1 sdev:1\n",
    ]
  ) assertEquals(parseEpollInfo(head + bad), undefined, bad);
});

function obj(fd: number, kind: ObjectFd["kind"], info: string, dupOf?: number): ObjectFd {
  return { fd, kind, target: `anon_inode:[${kind}]`, flags: 2, pos: 0n, info: head + info, dupOf };
}

Deno.test("eventfd: its mode is learned where that shows nowhere, refused where it would", () => {
  const older = (count: string) => `eventfd-count: ${count}\neventfd-id: 1\n`;
  const ep = (lines: string) => obj(9, "epoll", lines);
  const line = (fd: number, events: string) =>
    `tfd: ${fd} events: ${events} data: 0  pos:0 ino:1 sdev:1\n`;
  const objs = [
    obj(3, "eventfd", older("0")), // edge-triggered for input, empty: a wake-up shows nothing
    obj(4, "eventfd", older("2")), // edge-triggered for input, counter set: it would show
    obj(5, "eventfd", older("0")), // edge-triggered for output: it would show
    obj(6, "eventfd", older("2")), // level-triggered: nothing shows
    obj(7, "eventfd", older("2") + "eventfd-semaphore: 0\n"), // the kernel says: no probe
    obj(8, "eventfd", older("2"), 4), // a copy of 4: watched as 4
    obj(10, "eventfd", older("2")), // a oneshot that fired: disabled
    ep(
      line(3, "80000019") + line(8, "80000019") + line(5, "80000004") + line(6, "19") +
        line(7, "80000019") + line(10, "c0000000"),
    ),
  ];
  assertEquals([...edgeWatched(objs).keys()].sort(), [3, 4, 5, 7]);
  const reasons = eventfdReasons(objs, edgeWatched(objs));
  assertEquals(reasons.map((r) => r.split(":")[0]), ["fd 4", "fd 5"]);
  assert(/edge-triggered/.test(reasons[0]));
  assertEquals(eventfdReasons([obj(3, "eventfd", "eventfd-count: zz\n")], new Map()), [
    "fd 3: an eventfd whose counter cannot be read",
  ]);
});

/** A sock_diag reply: header, unix_diag_msg, then attributes. */
function reply(attrs: [number, Uint8Array][], type = 20, ino = 77): Uint8Array {
  const body = attrs.map(([t, d]) => {
    const a = new Uint8Array((4 + d.length + 3) & ~3);
    new DataView(a.buffer).setUint16(0, 4 + d.length, true);
    new DataView(a.buffer).setUint16(2, t, true);
    a.set(d, 4);
    return a;
  });
  const len = 32 + body.reduce((n, a) => n + a.length, 0);
  const b = new Uint8Array(len);
  const v = new DataView(b.buffer);
  v.setUint32(0, len, true);
  v.setUint16(4, type, true);
  b[16] = 1;
  b[17] = 5;
  b[18] = 1;
  v.setUint32(20, ino, true);
  let off = 32;
  for (const a of body) {
    b.set(a, off);
    off += a.length;
  }
  return b;
}

Deno.test("sock_diag: requests and replies, damaged ones refused", () => {
  const req = unixDiagRequest(1234);
  assertEquals(req.length, 40);
  assertEquals(new DataView(req.buffer).getUint32(24, true), 1234);
  const u32 = (n: number) => new Uint8Array(new Uint32Array([n]).buffer);
  const d = parseUnixDiag(reply([
    [2, u32(78)],
    [6, new Uint8Array([2])],
    [4, new Uint8Array([5, 0, 0, 0, 0, 0, 0, 0])],
    [0, new TextEncoder().encode("\0abc")],
  ]));
  assertEquals(d, { ino: 77, type: 5, state: 1, peer: 78, shutdown: 2, rqueue: 5, name: "@abc" });
  assertEquals(parseUnixDiag(reply([[0, new TextEncoder().encode("/run/x\0")]]))?.name, "/run/x");
  // NLMSG_ERROR with ENOENT: no such unix socket here.
  const err = new Uint8Array(36);
  new DataView(err.buffer).setUint32(0, 36, true);
  new DataView(err.buffer).setUint16(4, 2, true);
  new DataView(err.buffer).setInt32(16, -2, true);
  assertEquals(parseUnixDiag(err), null);
  new DataView(err.buffer).setInt32(16, -13, true);
  assertThrows(() => parseUnixDiag(err));
  assertThrows(() => parseUnixDiag(new Uint8Array(10)));
  const long = reply([]);
  new DataView(long.buffer).setUint32(0, 999, true);
  assertThrows(() => parseUnixDiag(long));
  const attr = reply([[2, u32(78)]]);
  new DataView(attr.buffer).setUint16(32, 200, true); // an attribute running past the message
  assertThrows(() => parseUnixDiag(attr));
  assertThrows(() => parseUnixDiag(reply([], 99)));
});
