/**
 * Runs in a guest: damages a valid image in `cases` ways and restores each
 * in this process. Every case must end in a PpmError (a message for the
 * user), never another exception, and leave no process behind. Some
 * mutations keep the checksums valid (the records are re-encoded) so the
 * damage reaches the schema, compatibility and module checks; one of them
 * adds a hostile NETWORK record (a checkpoint's sockets).
 *
 *   deno run -A image_fuzz.ts IMAGE CASES SEED  -> prints a JSON summary
 *
 * Also: `make_plan.ts` writes a restore plan for plan_fuzz.c.
 *
 * @module
 */
import { PpmError } from "../../../core/errors.ts";
import { RECORD } from "../../../core/image/format.ts";
import { pathSource } from "../../../core/host/bytes.ts";
import { readImage } from "../../../core/image/reader.ts";
import { ImageWriter } from "../../../core/image/writer.ts";
import { restore } from "../../../core/restore/restore.ts";
import { SOCKET_OPTIONS } from "../../support/socket_entries.ts";

const [path, casesArg, seedArg] = Deno.args;
const cases = Number(casesArg ?? 1000);
let rng = Number(seedArg ?? 1) >>> 0 || 1;
const rnd = (n: number) => {
  rng ^= rng << 13;
  rng >>>= 0;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  rng >>>= 0;
  return rng % n;
};

const original = await Deno.readFile(path);
type Rec = { type: number; value?: unknown; start?: bigint; data?: Uint8Array };
const records: Rec[] = [];
for await (const r of readImage(pathSource(path))) {
  if (r.kind === "record") records.push({ type: r.type, value: r.value });
  else if (r.kind === "pages") {
    records.push({ type: RECORD.PAGES, start: r.start, data: r.data.slice() });
  }
}

async function encodeImage(recs: Rec[]): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const w = new ImageWriter((c) => {
    chunks.push(c.slice());
    return Promise.resolve();
  });
  for (const r of recs) {
    if (r.type === RECORD.PAGES) await w.writePages(r.start!, r.data!);
    else await w.writeAnyRecord(r.type, r.value);
  }
  await w.end();
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

const NASTY = [0n, 1n, 0xfffn, 1n << 47n, (1n << 64n) - 1n, 0x7ffffffff000n, 1n << 40n];
const nasty = () => NASTY[rnd(NASTY.length)];

/**
 * A NETWORK record (`ppm checkpoint --tcp-established`) as it could come,
 * then one value of it made wrong: a port, an address, a sequence number, a
 * queue, a window, a descriptor, a drop that is no socket's flow. Its
 * connection's address is not this node's, so even a record that checks is
 * refused before anything is made.
 */
function hostileNetwork(): Record<string, unknown> {
  const port = 20000 + rnd(20000);
  const opts = { ...SOCKET_OPTIONS };
  const tcp: Record<string, unknown> = {
    sendSeq: 1000,
    sendQueue: new Uint8Array(3),
    notSent: 1,
    recvSeq: 5000,
    recvQueue: new Uint8Array(2),
    mss: 1448,
    sndWscale: 7,
    rcvWscale: 7,
    sack: true,
    timestamps: true,
    tsval: 1,
    window: { sndWl1: 5000, sndWnd: 64240, maxWindow: 64240, rcvWnd: 65535, rcvWup: 5000 },
  };
  const listener: Record<string, unknown> = {
    fd: 900,
    flags: 2,
    kind: "tcp-listen",
    local: { addr: "0.0.0.0", port },
    backlog: 16,
    options: opts,
  };
  const conn: Record<string, unknown> = {
    fd: 901,
    flags: 2,
    kind: "tcp",
    local: { addr: "10.255.0.1", port },
    remote: { addr: "10.255.0.9", port: 5000 },
    options: opts,
    tcp,
  };
  const drop: Record<string, unknown> = {
    proto: "tcp",
    action: "drop",
    old: { addr: "10.255.0.1", port },
    peer: { addr: "10.255.0.9", port: 5000 },
    idleTimeout: 86400,
  };
  const net = { bootId: "", sockets: [listener, conn], drops: [drop] };
  const bad = [0, -1, 65536, 2 ** 32, 2 ** 53, 1.5, "7", null];
  const any = () => bad[rnd(bad.length)];
  switch (rnd(12)) {
    case 0:
      (rnd(2) ? listener : conn).local = { addr: "0.0.0.0", port: any() };
      break;
    case 1:
      conn.remote = { addr: ["0.0.0.0", "256.1.1.1", "::1", "", "1.2.3"][rnd(5)], port: 5000 };
      break;
    case 2:
      tcp[["sendSeq", "recvSeq", "tsval", "mss", "notSent"][rnd(5)]] = any();
      break;
    case 3: // a queue that is no bytes, or fewer bytes than it says were never sent
      if (rnd(2)) tcp[rnd(2) ? "sendQueue" : "recvQueue"] = rnd(2) ? "bytes" : [1, 2, 3];
      else tcp.notSent = 4;
      break;
    case 4:
      (tcp.window as Record<string, unknown>)[
        ["sndWl1", "sndWnd", "maxWindow", "rcvWnd", "rcvWup"][rnd(5)]
      ] = rnd(2) ? any() : 2 ** 31;
      break;
    case 5: // a descriptor twice, or one that is also a file or a standard stream
      conn.fd = [900, 0, 1, 2, -1, 2 ** 21][rnd(6)];
      break;
    case 6: { // a drop of another flow, malformed, or twice
      const k = rnd(3);
      if (k === 0) drop.peer = { addr: "10.255.0.8", port: rnd(2) ? 5000 : 0 };
      else if (k === 1) drop.idleTimeout = any();
      else net.drops.push({ ...drop });
      break;
    }
    case 7:
      net.sockets = Array(4097).fill(listener);
      break;
    case 8:
      conn.kind = ["tcp-pending", "sctp", "udp", "tcp-listen"][rnd(4)];
      break;
    case 9:
      tcp.sndWscale = [-1, 15, -2][rnd(3)];
      break;
    case 10:
      net.bootId = rnd(2) ? "../../x" : 42 as unknown as string;
      break;
    default: // well formed: refused at the restore (the connection's address is not this node's)
  }
  return net;
}

/** A copy of the records with one value changed so that it is wrong but well-formed. */
function semantic(): Rec[] {
  const recs = structuredClone(records) as Rec[];
  const pick = (t: number) => recs.find((r) => r.type === t)!;
  switch (rnd(9)) {
    case 8: { // a checkpoint's sockets (NETWORK), hostile
      const at = recs.findIndex((r) => r.type === RECORD.NETWORK);
      const rec = { type: RECORD.NETWORK, value: hostileNetwork() };
      if (at >= 0) recs[at] = rec;
      else recs.splice(1 + rnd(recs.length - 1), 0, rec);
      break;
    }
    case 0: { // a mapping's range
      const vmas = pick(RECORD.VMAS).value as Record<string, unknown>[];
      const v = vmas[rnd(vmas.length)];
      v[rnd(2) ? "start" : "end"] = nasty();
      break;
    }
    case 1: { // pages outside every mapping
      const p = recs.find((r) => r.type === RECORD.PAGES);
      if (p) p.start = nasty() & ~0xfffn;
      break;
    }
    case 2: { // a mapped file that differs
      const files = pick(RECORD.FILES).value as { mapped: Record<string, unknown>[] };
      if (files.mapped.length) files.mapped[rnd(files.mapped.length)].sha256 = "0".repeat(64);
      break;
    }
    case 3: { // mm fields
      const mm = pick(RECORD.MM).value as Record<string, unknown>;
      const keys = Object.keys(mm).filter((k) => k !== "auxv");
      mm[keys[rnd(keys.length)]] = nasty();
      break;
    }
    case 4: { // registers of the wrong size
      const cpu = pick(RECORD.CPU).value as Record<string, unknown>;
      cpu[rnd(2) ? "regs" : "xstate"] = new Uint8Array(rnd(20000));
      break;
    }
    case 5: { // a record missing or duplicated
      const i = rnd(recs.length);
      if (rnd(2)) recs.splice(i, 1);
      else recs.splice(i, 0, recs[i]);
      break;
    }
    case 6: { // wrong types
      const r = recs[rnd(recs.length)];
      if (r.type !== RECORD.PAGES) r.value = rnd(2) ? "nonsense" : [1, 2, 3];
      break;
    }
    default: { // the kernel, CPU flags or PID
      const task = pick(RECORD.TASK).value as Record<string, unknown>;
      const k = rnd(3);
      if (k === 0) task.kernel = "5.10.0-99-amd64";
      else if (k === 1) task.cpuFlags = ["avx512f", "amx_tile"];
      else task.pid = [1, 0, -5, 4194305][rnd(4)];
    }
  }
  return recs;
}

function raw(): Uint8Array {
  const b = original.slice();
  switch (rnd(4)) {
    case 0:
      return b.slice(0, rnd(b.length));
    case 1:
      for (let i = 1 + rnd(6); i > 0; i--) b[rnd(b.length)] ^= 1 + rnd(255);
      return b;
    case 2: { // absurd length in some record header
      const off = 16 + rnd(Math.max(1, b.length - 32));
      new DataView(b.buffer).setUint32(off, 0xfffffff0, true);
      return b;
    }
    default:
      return new Uint8Array([...b, ...new Uint8Array(1 + rnd(64)).map(() => rnd(256))]);
  }
}

const tally: Record<string, number> = {};
let restored = 0, other = 0;
const file = await Deno.makeTempFile({ prefix: "ppm-fuzz-" });
for (let c = 0; c < cases; c++) {
  const img = c % 3 === 0 ? await encodeImage(semantic()) : raw();
  await Deno.writeFile(file, img);
  try {
    const r = await restore(file, { stdout: "/dev/null", stderr: "/dev/null" });
    restored++;
    try {
      Deno.kill(r.pid, "SIGKILL");
    } catch { /* gone */ }
  } catch (e) {
    if (e instanceof PpmError) {
      const key = e.what.replace(/\d+/g, "N").slice(0, 60);
      tally[key] = (tally[key] ?? 0) + 1;
    } else {
      other++;
      console.error(`case ${c}: not a PpmError: ${(e as Error)?.stack ?? e}`);
    }
  }
}
await Deno.remove(file);
console.log(JSON.stringify({ cases, restored, other, errors: tally }));
