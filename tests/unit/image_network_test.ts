/**
 * The NETWORK record (`ppm checkpoint --tcp-established`): a valid one comes
 * back whole, through msgpack and through a whole image; an image without it
 * still loads; hostile values of every field (ports, addresses, sequence
 * numbers, queue sizes, windows, counts, drops that are no socket's flow)
 * are refused naming the record and the field.
 */
import { checkNetwork, dropOfSocket } from "../../core/image/network.ts";
import { ImageError } from "../../core/image/errors.ts";
import { decodeValue, encodeValue } from "../../core/image/codec.ts";
import { RECORD } from "../../core/image/format.ts";
import { loadImage, mmRecord } from "../../core/image/schema.ts";
import { ImageWriter } from "../../core/image/writer.ts";
import { SOCKET_OPTIONS } from "../support/socket_entries.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

const options = SOCKET_OPTIONS;

function tcp(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    sendSeq: 1000,
    sendQueue: new Uint8Array([1, 2, 3]),
    notSent: 1,
    recvSeq: 4_000_000_000,
    recvQueue: new Uint8Array([9]),
    mss: 1448,
    sndWscale: 7,
    rcvWscale: 7,
    sack: true,
    timestamps: true,
    tsval: 123456,
    window: { sndWl1: 1, sndWnd: 64240, maxWindow: 64240, rcvWnd: 65535, rcvWup: 5 },
    ...over,
  };
}

const ANY = { addr: "0.0.0.0", port: 0 };
const LOCAL = "10.0.0.1";

function listener(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    fd: 3,
    flags: 2,
    kind: "tcp-listen",
    local: { addr: "0.0.0.0", port: 7000 },
    backlog: 16,
    options,
    ...over,
  };
}

function conn(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    fd: 4,
    flags: 2,
    kind: "tcp",
    local: { addr: LOCAL, port: 7000 },
    remote: { addr: "10.0.0.9", port: 5000 },
    options,
    tcp: tcp(),
    ...over,
  };
}

function drop(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    proto: "tcp",
    action: "drop",
    old: { addr: LOCAL, port: 7000 },
    peer: { addr: "10.0.0.9", port: 5000 },
    idleTimeout: 86400,
    ...over,
  };
}

function valid(): Record<string, unknown> {
  return {
    bootId: "0f6e3bd1-4c52-4a4e-9a3c-3d5e1b2a7f10",
    sockets: [
      listener(),
      conn(),
      conn({
        kind: "tcp-pending",
        fd: 3,
        remote: { addr: "10.0.0.8", port: 5001 },
        tcp: tcp({ sendQueue: new Uint8Array(0), notSent: 0 }),
      }),
      {
        fd: 5,
        flags: 0,
        kind: "udp",
        local: { addr: "0.0.0.0", port: 9999 },
        options: { ...options, nodelay: false, keepidle: 0, keepintvl: 0, keepcnt: 0 },
      },
    ],
    drops: [
      drop({ action: "drop-syn", old: { addr: LOCAL, port: 7000 }, peer: ANY }),
      drop({ action: "drop-syn", old: { addr: "127.0.0.1", port: 7000 }, peer: ANY }),
      drop({ old: { addr: LOCAL, port: 7000 }, peer: ANY }),
      drop(),
      drop({ peer: { addr: "10.0.0.8", port: 5001 } }),
      drop({ proto: "udp", old: { addr: LOCAL, port: 9999 }, peer: ANY }),
    ],
  };
}

function refused(v: unknown, pattern: RegExp): void {
  try {
    checkNetwork(v);
  } catch (e) {
    assert(e instanceof ImageError, `not an ImageError: ${e}`);
    assertMatch(`${e.what}: ${e.why}`, pattern);
    return;
  }
  throw new Error(`accepted: ${pattern}`);
}

/** `valid()` with socket `i` changed by `over`. */
function withSocket(i: number, over: Record<string, unknown>): Record<string, unknown> {
  const v = valid();
  const list = v.sockets as Record<string, unknown>[];
  list[i] = { ...list[i], ...over };
  return v;
}

/** `valid()` with connection 1's TCP state changed by `over`. */
function withTcp(over: Record<string, unknown>): Record<string, unknown> {
  return withSocket(1, { tcp: tcp(over) });
}

Deno.test("NETWORK: a valid record comes back whole, through msgpack too", () => {
  const r = checkNetwork(decodeValue(encodeValue(valid()).slice()));
  assertEquals(r.bootId, "0f6e3bd1-4c52-4a4e-9a3c-3d5e1b2a7f10");
  assertEquals(r.sockets.map((s) => s.kind), ["tcp-listen", "tcp", "tcp-pending", "udp"]);
  assertEquals(r.sockets[1].tcp!.recvSeq, 4_000_000_000);
  assertEquals([...r.sockets[1].tcp!.recvQueue], [9]);
  assertEquals(r.drops.length, 6);
  assertEquals(r.drops[0], {
    proto: "tcp",
    action: "drop-syn",
    old: { addr: LOCAL, port: 7000 },
    peer: ANY,
    idleTimeout: 86400,
  });
  // Every drop is the flow of one of the sockets.
  for (const d of r.drops) assert(r.sockets.some((s) => dropOfSocket(d, s)), JSON.stringify(d));
  // A process that ran on (--leave-running) left no drops.
  assertEquals(checkNetwork({ ...valid(), drops: [] }).drops, []);
  assertEquals(checkNetwork({ bootId: "", sockets: [], drops: [] }).sockets, []);
});

Deno.test("NETWORK: hostile record, socket and TCP values are refused with the field named", () => {
  refused(null, /NETWORK.*not a map/);
  refused([], /NETWORK.*not a map/);
  refused({ ...valid(), bootId: 7 }, /NETWORK.*bootId/);
  refused({ ...valid(), bootId: "x".repeat(65) }, /NETWORK.*bootId/);
  refused({ ...valid(), bootId: "../../etc" }, /NETWORK.*bootId/);
  refused({ ...valid(), sockets: {} }, /SOCKETS.*not a list/);
  refused({ ...valid(), sockets: Array(4097).fill(listener()) }, /SOCKETS.*4096/);
  // Ports and addresses.
  refused(withSocket(1, { local: { addr: LOCAL, port: 0 } }), /socket 1 local end.*port/);
  refused(withSocket(1, { local: { addr: LOCAL, port: 65536 } }), /socket 1 local end.*port/);
  refused(withSocket(1, { local: { addr: LOCAL, port: -1 } }), /port/);
  refused(withSocket(1, { local: { addr: LOCAL, port: 1.5 } }), /port/);
  refused(withSocket(1, { local: { addr: "10.0.0.256", port: 1 } }), /not an IPv4 address/);
  refused(withSocket(1, { local: { addr: "010.0.0.1", port: 1 } }), /not an IPv4 address/);
  refused(withSocket(1, { local: { addr: "10.0.0", port: 1 } }), /not an IPv4 address/);
  refused(withSocket(1, { local: { addr: "::1", port: 1 } }), /not an IPv4 address/);
  refused(withSocket(1, { local: { addr: "x".repeat(100), port: 1 } }), /addr is not a string/);
  refused(withSocket(1, { local: { addr: "0.0.0.0", port: 7000 } }), /without a local address/);
  refused(withSocket(1, { remote: { addr: "0.0.0.0", port: 5 } }), /remote end.*0\.0\.0\.0/);
  refused(withSocket(1, { remote: { addr: "10.0.0.9", port: 0 } }), /remote end.*port/);
  refused(withSocket(1, { remote: undefined }), /without a remote end/);
  refused(withSocket(0, { remote: { addr: "10.0.0.9", port: 5 } }), /listener with a remote end/);
  refused(withSocket(0, { backlog: 65536 }), /backlog/);
  refused(withSocket(1, { fd: -1 }), /socket 1.*fd/);
  refused(withSocket(1, { fd: 2 ** 21 }), /socket 1.*fd/);
  refused(withSocket(1, { fd: 3 }), /fd 3.*twice/);
  refused(withSocket(1, { kind: "tcp6" }), /unknown kind/);
  refused(withSocket(2, { fd: 9 }), /fd 9.*without its listener/);
  refused(withSocket(2, { local: { addr: LOCAL, port: 7001 } }), /pending connection on port 7001/);
  refused(withSocket(1, { options: { ...options, sndbuf: 2 ** 31 } }), /sndbuf/);
  refused(withSocket(1, { options: { ...options, keepcnt: 1000 } }), /keepcnt/);
  refused(withSocket(1, { options: { ...options, nodelay: 1 } }), /nodelay/);
  // Sequence numbers, queues, options, windows.
  refused(withTcp({ sendSeq: 2 ** 32 }), /TCP state.*sendSeq/);
  refused(withTcp({ sendSeq: -1 }), /sendSeq/);
  refused(withTcp({ recvSeq: 2n ** 64n - 1n }), /recvSeq/);
  refused(withTcp({ recvSeq: "1" }), /recvSeq/);
  refused(withTcp({ notSent: 4 }), /notSent/);
  refused(withTcp({ sendQueue: "abc" }), /sendQueue/);
  refused(withTcp({ recvQueue: [1, 2] }), /recvQueue/);
  refused(withTcp({ mss: 0 }), /mss/);
  refused(withTcp({ mss: 47 }), /mss/);
  refused(withTcp({ mss: 65536 }), /mss/);
  refused(withTcp({ sndWscale: 15 }), /sndWscale/);
  refused(withTcp({ rcvWscale: -2 }), /rcvWscale/);
  refused(withTcp({ sndWscale: -1 }), /sndWscale -1 and rcvWscale 7 disagree/);
  refused(withTcp({ tsval: 2 ** 32 }), /tsval/);
  refused(withTcp({ sack: "yes" }), /sack/);
  const win = tcp().window as Record<string, number>;
  refused(withTcp({ window: { ...win, sndWnd: 2 ** 31 } }), /window.*sndWnd/);
  refused(withTcp({ window: { ...win, rcvWnd: 65535 * 2 ** 14 + 1 } }), /window.*rcvWnd/);
  refused(withTcp({ window: { ...win, maxWindow: -1 } }), /window.*maxWindow/);
  refused(withTcp({ window: { ...win, sndWl1: 2 ** 32 } }), /window.*sndWl1/);
  refused(withTcp({ window: { ...win, rcvWup: undefined } }), /window.*rcvWup/);
  refused(withTcp({ window: null }), /window.*not a map/);
  // A prototype key is data: it neither passes as a field nor breaks the check.
  refused(withSocket(1, { tcp: JSON.parse('{"__proto__": {"sendSeq": 1}}') }), /TCP state/);
});

Deno.test("NETWORK: drops are bounded, well formed and each one of the sockets' flows", () => {
  const withDrop = (over: Record<string, unknown>) => ({ ...valid(), drops: [drop(over)] });
  refused({ ...valid(), drops: {} }, /NETWORK.drops.*not a list/);
  refused({ ...valid(), drops: Array(4097).fill(drop()) }, /NETWORK.drops.*4096/);
  refused({ ...valid(), drops: [drop(), drop()] }, /drops\[1\].*appears twice/);
  refused(withDrop({ proto: "icmp" }), /drops\[0\].*proto/);
  refused(withDrop({ action: "forward" }), /drops\[0\].*action/);
  refused(withDrop({ action: "drop-syn", proto: "udp" }), /TCP only/);
  refused(withDrop({ old: { addr: "0.0.0.0", port: 7000 } }), /drops\[0\]\.old.*0\.0\.0\.0/);
  refused(withDrop({ old: { addr: LOCAL, port: 0 } }), /drops\[0\]\.old.*port/);
  refused(withDrop({ old: { addr: "1.2.3", port: 7000 } }), /drops\[0\]\.old.*IPv4/);
  refused(withDrop({ peer: { addr: "0.0.0.0", port: 5000 } }), /drops\[0\]\.peer.*either any/);
  refused(withDrop({ peer: { addr: "10.0.0.9", port: 0 } }), /drops\[0\]\.peer.*either any/);
  refused(withDrop({ peer: { addr: "10.0.0.9", port: 70000 } }), /drops\[0\]\.peer.*port/);
  refused(withDrop({ idleTimeout: 0 }), /drops\[0\].*idleTimeout/);
  refused(withDrop({ idleTimeout: 86401 }), /drops\[0\].*idleTimeout/);
  refused(withDrop({ idleTimeout: 1.5 }), /idleTimeout/);
  // Flows that are none of the sockets': another peer, another port, another address of a
  // connection, a listener's SYN drop on a connection, a UDP drop for a TCP port.
  for (
    const over of [
      { peer: { addr: "10.0.0.7", port: 5000 } },
      { old: { addr: LOCAL, port: 22 } },
      { old: { addr: "10.0.0.2", port: 7000 } },
      { action: "drop-syn" },
      { proto: "udp" },
      { old: { addr: LOCAL, port: 9999 }, peer: { addr: "10.0.0.9", port: 5000 }, proto: "udp" },
    ]
  ) {
    refused(withDrop(over), /drops\[0\].*none of the record's sockets'/);
  }
});

const task = {
  pid: 100,
  comm: "server",
  exe: "/usr/bin/server",
  cwd: "/",
  umask: 0o22,
  uid: [0, 0, 0, 0],
  gid: [0, 0, 0, 0],
  groups: [],
  caps: {},
  rlimits: [],
  personality: 0,
  kernel: "6.1.0-57-amd64",
  cpuFlags: ["sse2"],
  xsaveSize: 576,
  abi: 3,
  createdAt: "2026-12-01T00:00:00Z",
};

/** A whole image with these extra records (type, value). */
async function image(
  extra: [number, unknown][],
  fds: unknown[] = [],
): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  const w = new ImageWriter((c) => (chunks.push(c.slice()), Promise.resolve()));
  await w.writeRecord(RECORD.TASK, task);
  await w.writeRecord(RECORD.MM, mmRecord({ brk: 0x401000n }, []));
  await w.writeRecord(RECORD.CPU, {
    regs: new Uint8Array(216),
    xstate: new Uint8Array(576),
    sigmask: 0n,
    restart: "none",
  });
  await w.writeRecord(RECORD.SIGNALS, {
    actions: [],
    altstack: { sp: 0n, size: 0n, flags: 2 },
    blocked: 0n,
    pending: 0n,
    sharedPending: 0n,
    deliverOnResume: 0,
    queue: [],
    robustList: 0n,
    robustListLen: 24n,
    clearChildTid: 0n,
    rseq: { addr: 0n, len: 0, sig: 0 },
  });
  await w.writeRecord(RECORD.VMAS, []);
  for (const [type, value] of extra) await w.writeAnyRecord(type, value);
  await w.writeAnyRecord(RECORD.FILES, { fds, mapped: [] });
  await w.end();
  return chunks;
}

async function* from(chunks: Uint8Array[]) {
  yield* chunks;
}

async function loadRefused(chunks: Uint8Array[], pattern: RegExp): Promise<void> {
  try {
    await loadImage(from(chunks));
  } catch (e) {
    assert(e instanceof ImageError, `not an ImageError: ${e}`);
    assertMatch(`${e.what}: ${e.why}`, pattern);
    return;
  }
  throw new Error(`loaded: ${pattern}`);
}

Deno.test("NETWORK: through an image; optional; its descriptors are no files; never with SOCKETS", async () => {
  const plain = await loadImage(from(await image([])));
  assertEquals(plain.network, undefined);
  assertEquals(plain.sockets, []);
  const img = await loadImage(from(await image([[RECORD.NETWORK, valid()]])));
  assertEquals(img.network?.sockets.length, 4);
  assertEquals(img.network?.drops.length, 6);
  assertEquals(img.sockets, [], "a checkpoint's sockets are not a migration's");
  // A descriptor is a socket or a file, not both.
  await loadRefused(
    await image([[RECORD.NETWORK, valid()]], [{
      fd: 5,
      kind: "regular",
      path: "/tmp/x",
      flags: 0,
      pos: 0n,
    }]),
    /socket 5.*also a file/,
  );
  // Both a migration's sockets and a checkpoint's: refused.
  await loadRefused(
    await image([[RECORD.SOCKETS, []], [RECORD.NETWORK, valid()]]),
    /NETWORK.*SOCKETS record too/,
  );
  await loadRefused(await image([[RECORD.NETWORK, { ...valid(), drops: 5 }]]), /NETWORK.drops/);
  await loadRefused(
    await image([[RECORD.NETWORK, valid()], [RECORD.NETWORK, valid()]]),
    /NETWORK.*appears twice/,
  );
});
