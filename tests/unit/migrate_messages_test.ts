/**
 * The one union of messages between agents (core/migrate/messages.ts): a
 * valid message of each kind goes through msgpack and the check unchanged;
 * what the senders send (undefined fields become nil on the wire) is taken;
 * hostile values of every message are refused with an error naming where
 * (wrong op, missing fields, wrong types, negative, NaN and huge numbers,
 * over-long strings and lists, prototype keys), never a crash; a site that
 * waits for one kind says what it expected and what came.
 */
import type { BalanceMode } from "../../core/balance/types.ts";
import {
  asMessage,
  expectMessage,
  type Handover,
  type Message,
  MessageError,
  OPS,
  parseMessage,
  receiveMessage,
} from "../../core/migrate/messages.ts";
import { checkOffer } from "../../core/migrate/offer_check.ts";
import { buildOffer } from "../../core/migrate/source.ts";
import { decodeMessage, encodeMessage } from "../../core/transport/codec.ts";
import { newRelayToken } from "../../core/relay/record.ts";
import { PpmError } from "../../core/errors.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

// The wire's balance modes are the balancer's (a compile-time check).
type WireMode = Extract<Handover["why"], { kind: "balance" }>["mode"];
const _modesAgree: [BalanceMode] extends [WireMode]
  ? ([WireMode] extends [BalanceMode] ? true : never)
  : never = true;

const TOKEN = "0123456789abcdef0123456789abcdef";
const SHA = "ab".repeat(32);
const ep = (addr: string, port: number) => ({ addr, port });

const offer = {
  op: "offer",
  pid: 4242,
  comm: "sleep",
  tids: [4243, 4244],
  kernel: "6.12.0-1-amd64",
  cpuFlags: ["fpu", "sse2"],
  abi: 7,
  files: [{ path: "/usr/bin/sleep", size: 43_000, sha256: SHA }],
  estimatedBytes: 1 << 20,
  from: "node1",
  origin: { node: "node1", pid: 4242 },
  moves: 0,
  stdin: "relay",
  fromAddr: "10.77.0.1",
  sockets: [
    { kind: "tcp", local: ep("10.77.0.1", 7000), remote: ep("10.77.0.3", 40000) },
    { kind: "tcp-listen", local: ep("0.0.0.0", 7000) },
  ],
  cwd: "/srv/job",
  expected: [
    {
      path: "/srv/job",
      id: { mode: 0o40755, uid: 0, gid: 0, size: 4096, mtimeMs: 1.7e12, dev: 2049n, ino: 12n },
      role: "the working directory",
    },
    { path: "/srv/job/log", flags: 0o102001, role: "fd 3" },
    { path: "/usr/bin/sleep", role: "a mapped file", hashChecked: true },
  ],
};

const record = { node: "node1", at: 1000, mode: "load", why: "busy" };

/** A valid message of every kind (both answers of those that say yes or no). */
const VALID: Record<string, unknown>[] = [
  offer,
  { op: "offer-reply", ok: true },
  { op: "offer-reply", ok: false, reason: "kernel 6.1 differs from 6.12" },
  {
    op: "restored",
    ok: true,
    pid: 4242,
    stats: { pages: 300, timesUs: { load: 10, total: 2000 } },
    addr: "10.77.0.2",
  },
  { op: "restored", ok: false, reason: "restore: the stub failed" },
  { op: "commit", relay: TOKEN },
  { op: "committed", ok: true },
  { op: "abort" },
  { op: "outcome?", pid: 4242, comm: "sleep" },
  { op: "outcome", state: "running" },
  { op: "relay-resume", token: TOKEN, pid: 4242, has: { 4: 12 } },
  { op: "relay-resumed", ok: true, has: { 2: 5, 3: 0 } },
  { op: "relay-resumed", ok: false, reason: "no such relay here" },
  {
    op: "handover",
    pid: 4242,
    managed: true,
    name: "job",
    startedAt: 1000.5,
    why: { kind: "manual", by: "ppm migrate" },
  },
  {
    op: "handover",
    pid: 4242,
    managed: false,
    name: "job",
    startedAt: 990,
    why: { kind: "balance", mode: "load", record },
  },
  { op: "exited", pid: 4242, node: "node2", code: 3 },
  { op: "exited", pid: 4242, node: "node2", signal: 9 },
  {
    op: "redirect-add",
    entries: [{
      proto: "tcp",
      action: "peer",
      old: ep("10.77.0.1", 7000),
      new: ep("10.77.0.2", 7000),
      peer: ep("10.77.0.3", 40000),
      idleTimeout: 120,
    }],
  },
  { op: "redirect-del", ids: [1, 2] },
  { op: "redirect-added", ok: true, ids: [1, 2] },
  { op: "redirect-removed", ok: true },
  { op: "redirect-failed", ok: false, reason: "cannot add a peer redirect: no module" },
  { op: "signal", pid: 4242, sig: 15 },
  { op: "moved", pid: 4242, node: "node3" },
  {
    op: "offer-reply",
    ok: true,
    pages: { port: 40000, key: "ab".repeat(16), session: "0f".repeat(16) },
  },
  {
    op: "redirect-release",
    entries: [{
      proto: "tcp",
      action: "drop",
      old: ep("10.77.0.2", 7000),
      peer: ep("10.77.0.3", 40000),
      idleTimeout: 300,
    }],
  },
  { op: "redirect-removed", ok: true, count: 1 },
];

/** Through msgpack, as a message travels. */
function wire(m: unknown): unknown {
  return decodeMessage(encodeMessage(m));
}

/** The refusal of `raw`, as `what: why`. */
function refusal(raw: unknown): string {
  try {
    parseMessage(raw);
  } catch (e) {
    assert(e instanceof MessageError, `not a MessageError: ${e}`);
    return `${e.what}: ${e.why}`;
  }
  throw new Error(`accepted: ${Deno.inspect(raw).slice(0, 200)}`);
}

/** `base` with `path` (dotted) set to `value` (deleted when `value` is DELETE). */
const DELETE = Symbol("delete");
function mutated(base: Record<string, unknown>, path: string, value: unknown): unknown {
  const copy = structuredClone(base);
  const keys = path.split(".");
  let at = copy as Record<string, unknown>;
  for (const k of keys.slice(0, -1)) at = at[k] as Record<string, unknown>;
  if (value === DELETE) delete at[keys.at(-1)!];
  else at[keys.at(-1)!] = value;
  return copy;
}

Deno.test("messages: a valid one of each kind goes through msgpack and the check unchanged", () => {
  const ops = new Set<string>();
  for (const m of VALID) {
    ops.add(m.op as string);
    assertEquals(parseMessage(wire(m)) as unknown, m, String(m.op));
    assertEquals(parseMessage(m) as unknown, m, String(m.op));
  }
  assertEquals([...ops].sort(), [...OPS].sort(), "every op has a valid example");
});

Deno.test("messages: what the senders send is taken, undefined fields and all", async () => {
  // msgpack sends undefined as nil: absent-or-nil fields read as absent.
  const sent: [unknown, unknown][] = [
    [
      { op: "restored", ok: true, pid: 7, stats: { pages: 1, timesUs: {} }, addr: undefined },
      { op: "restored", ok: true, pid: 7, stats: { pages: 1, timesUs: {} }, addr: undefined },
    ],
    [{ op: "offer-reply", ok: false, reason: undefined }, {
      op: "offer-reply",
      ok: false,
      reason: undefined,
    }],
    [{ op: "exited", pid: 7, node: "n", code: undefined, signal: 9 }, {
      op: "exited",
      pid: 7,
      node: "n",
      code: undefined,
      signal: 9,
    }],
    [{ op: "redirect-del", ids: undefined }, { op: "redirect-del", ids: [] }],
    [{ op: "redirect-add" }, { op: "redirect-add", entries: [] }],
    [{ ...offer, sockets: null }, { ...offer, sockets: [] }],
    [{ ...offer, sockets: [{ kind: "udp", local: ep("0.0.0.0", 53), remote: undefined }] }, {
      ...offer,
      sockets: [{ kind: "udp", local: ep("0.0.0.0", 53), remote: undefined }],
    }],
    [mutated(offer, "fromAddr", DELETE), { ...offer, fromAddr: "" }],
    [{ op: "commit" }, { op: "commit" }],
  ];
  for (const [m, want] of sent) {
    assertEquals(parseMessage(wire(m)) as unknown, want, Deno.inspect(m).slice(0, 100));
  }
  // A real offer, as buildOffer makes it, through msgpack.
  const child = new Deno.Command("sleep", { args: ["30"], stdin: "null", stdout: "null" }).spawn();
  try {
    await new Promise((r) => setTimeout(r, 200));
    const o = await buildOffer(child.pid, "nodeA");
    assertEquals(checkOffer(wire(o)).pid, child.pid);
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
});

Deno.test("messages: what is not a message is refused with why", () => {
  const cases: [unknown, RegExp][] = [
    [null, /^a malformed message: message: expected a map, got null$/],
    [undefined, /message: expected a map, got undefined/],
    ["offer", /message: expected a map, got string/],
    [[{ op: "abort" }], /message: expected a map, got a list/],
    [5, /message: expected a map, got number/],
    [{}, /message\.op: missing/],
    [{ op: 5 }, /message\.op: expected a known op, got number/],
    [{ op: "bogus" }, /message\.op: expected a known op, got "bogus"/],
    [{ op: "__proto__" }, /message\.op: expected a known op, got "__proto__"/],
    [{ op: "x".repeat(70_000) }, /got "x{40}"$/],
    [{ op: "Offer" }, /expected a known op, got "Offer"/],
    [
      JSON.parse('{"op":"abort","__proto__":{"pid":1}}'),
      /^a malformed message: abort: .*__proto__/,
    ],
    [Object.create({ op: "abort" }), /abort: expected plain data/],
    [{ op: "abort", extra: new Map() }, /abort\.extra: expected plain data/],
    [
      JSON.parse(`{"op":"abort","deep":${"[".repeat(40)}${"]".repeat(40)}}`),
      /abort\.deep(\.0)+: nested deeper than 32/,
    ],
  ];
  for (const [raw, why] of cases) assertMatch(refusal(raw), why, Deno.inspect(raw).slice(0, 80));
});

/** Hostile values per message: [message, field path, value, what the refusal must name]. */
const HOSTILE: [Record<string, unknown>, string, unknown, RegExp][] = [
  // offer
  [offer, "pid", DELETE, /offer\.pid: missing/],
  [offer, "pid", 0, /offer\.pid: expected a value >=1, got 0/],
  [offer, "pid", -1, /offer\.pid/],
  [offer, "pid", 4_194_305, /offer\.pid: expected a value <=4194304/],
  [offer, "pid", 1.5, /offer\.pid: expected an integer, got 1\.5/],
  [offer, "pid", NaN, /offer\.pid: expected number, got NaN/],
  [offer, "pid", Infinity, /offer\.pid/],
  [offer, "pid", "42", /offer\.pid: expected number, got "42"/],
  [offer, "pid", 42n, /offer\.pid/],
  [offer, "comm", "x".repeat(65), /offer\.comm: expected a length <=64, got 65/],
  [offer, "tids", [0], /offer\.tids\.0: expected a value >=1, got 0/],
  [offer, "tids", [2 ** 40], /offer\.tids\.0/],
  [offer, "tids", "101", /offer\.tids/],
  [offer, "tids", Array(5000).fill(101), /offer\.tids/],
  [offer, "comm", ["sleep"], /offer\.comm/],
  [offer, "kernel", "k".repeat(257), /offer\.kernel/],
  [
    offer,
    "cpuFlags",
    new Array(1025).fill("fpu"),
    /offer\.cpuFlags: expected a list of at most 1024/,
  ],
  [offer, "cpuFlags", "fpu sse2", /offer\.cpuFlags/],
  [offer, "cpuFlags.0", "f".repeat(65), /offer\.cpuFlags\.0/],
  [offer, "abi", 2 ** 20 + 1, /offer\.abi/],
  [offer, "files", new Array(65537).fill(0), /offer\.files: expected a list of at most 65536/],
  [offer, "files.0.sha256", "AB".repeat(32), /offer\.files\.0\.sha256: expected a SHA-256/],
  [offer, "files.0.sha256", SHA + "00", /offer\.files\.0\.sha256/],
  [offer, "files.0.path", "usr/bin/sleep", /offer\.files\.0\.path: expected an absolute path/],
  [offer, "files.0.path", "/usr/bin\0/sleep", /offer\.files\.0\.path/],
  [offer, "files.0.path", "/" + "é".repeat(2100), /offer\.files\.0\.path/],
  [offer, "files.0.size", -1, /offer\.files\.0\.size/],
  [offer, "files.0.size", 2 ** 53, /offer\.files\.0\.size/],
  [offer, "estimatedBytes", 2 ** 60, /offer\.estimatedBytes/],
  [offer, "from", "n".repeat(257), /offer\.from/],
  [offer, "origin", null, /offer\.origin/],
  [offer, "origin.pid", 0, /offer\.origin\.pid/],
  [offer, "moves", -1, /offer\.moves/],
  [offer, "stdin", "tty", /offer\.stdin/],
  [offer, "fromAddr", null, /offer\.fromAddr/],
  [offer, "fromAddr", "a".repeat(65), /offer\.fromAddr/],
  [offer, "sockets", new Array(65537).fill(0), /offer\.sockets/],
  [offer, "sockets.0.kind", "raw", /offer\.sockets\.0\.kind/],
  [offer, "sockets.0.local.addr", "300.1.1.1", /offer\.sockets\.0\.local\.addr: expected an IPv4/],
  [offer, "sockets.0.local.addr", "1.2.3.4 ", /offer\.sockets\.0\.local\.addr/],
  [offer, "sockets.0.local.port", 70000, /offer\.sockets\.0\.local\.port/],
  [offer, "sockets.0.remote", "10.0.0.1:80", /offer\.sockets\.0\.remote/],
  [offer, "cwd", "relative", /offer\.cwd: expected an absolute path/],
  [offer, "cwd", DELETE, /offer\.cwd: missing/],
  [offer, "expected", null, /offer\.expected/],
  [offer, "expected", new Array(65537).fill(0), /offer\.expected/],
  [offer, "expected.0.id", null, /offer\.expected\.0\.id/],
  [offer, "expected.0.id.mode", -1, /offer\.expected\.0\.id\.mode/],
  [offer, "expected.0.id.uid", 2 ** 32, /offer\.expected\.0\.id\.uid/],
  [offer, "expected.0.id.dev", 2n ** 64n, /offer\.expected\.0\.id\.dev/],
  [offer, "expected.0.id.ino", -1n, /offer\.expected\.0\.id\.ino/],
  [offer, "expected.0.id.ino", 1.5, /offer\.expected\.0\.id\.ino/],
  [offer, "expected.1.flags", -1, /offer\.expected\.1\.flags/],
  [offer, "expected.1.role", "r".repeat(65), /offer\.expected\.1\.role/],
  [offer, "expected.2.hashChecked", "yes", /offer\.expected\.2\.hashChecked/],
  [offer, "origin.__proto__", { pid: 1 }, /offer.origin: expected no key __proto__/],
  // offer-reply
  [{ op: "offer-reply", ok: true }, "ok", "yes", /offer-reply\.ok: expected \(true \| false\)/],
  [{ op: "offer-reply", ok: true }, "ok", DELETE, /offer-reply\.ok/],
  [{ op: "offer-reply", ok: false }, "reason", 7, /offer-reply\.reason/],
  // the page stream's ticket, and the offer's ask for it
  ...([
    ["pages.port", 0],
    ["pages.port", 65536],
    ["pages.key", "AB".repeat(16)],
    ["pages.key", "ab".repeat(17)],
    ["pages.session", "../../etc"],
    ["pages", "yes"],
  ] as const).map(([path, value]) =>
    [
      {
        op: "offer-reply",
        ok: true,
        pages: { port: 1, key: "00".repeat(16), session: "11".repeat(16) },
      },
      path,
      value,
      new RegExp(`offer-reply\\.${path.replace(".", "\\.")}`),
    ] as [Record<string, unknown>, string, unknown, RegExp]
  ),
  [offer, "pagestream", 2, /offer\.pagestream/],
  [{ op: "offer-reply", ok: false }, "reason", "r".repeat(65537), /offer-reply\.reason/],
  // restored
  [VALID[3], "pid", DELETE, /restored\.pid: missing/],
  [VALID[3], "pid", 2 ** 40, /restored\.pid/],
  [VALID[3], "pid", -7, /restored\.pid/],
  [VALID[3], "addr", "a".repeat(65), /restored\.addr/],
  [VALID[3], "stats", 5, /restored\.stats/],
  [VALID[3], "stats.pages", -1, /restored\.stats\.pages/],
  [VALID[3], "stats.ahead", -1, /restored\.stats\.ahead/],
  [VALID[3], "stats.ahead", 2 ** 60, /restored\.stats\.ahead/],
  [VALID[3], "stats.ahead", "all", /restored\.stats\.ahead/],
  [VALID[3], "stats.timesUs.load", NaN, /restored\.stats\.timesUs\.load/],
  [VALID[3], "stats.timesUs.load", 10n, /restored\.stats\.timesUs\.load/],
  [
    VALID[3],
    "stats.timesUs",
    Object.fromEntries([...Array(33).keys()].map((k) => [`t${k}`, 1])),
    /restored\.stats\.timesUs: expected at most 32 times/,
  ],
  [VALID[3], "ok", 1, /restored\.ok/],
  [VALID[4], "reason", { why: "x" }, /restored\.reason/],
  // commit, committed, abort
  [{ op: "commit" }, "relay", "AB".repeat(16), /commit\.relay: expected a relay token/],
  [{ op: "commit" }, "relay", TOKEN + "0", /commit\.relay/],
  [{ op: "commit" }, "relay", `${TOKEN}\n`, /commit\.relay/],
  [{ op: "commit" }, "relay", 5, /commit\.relay/],
  [{ op: "committed", ok: true }, "ok", DELETE, /committed\.ok: missing/],
  [{ op: "committed", ok: true }, "ok", "true", /committed\.ok/],
  [{ op: "abort" }, "__proto__", {}, /abort: expected no key __proto__/],
  // outcome? and outcome
  [VALID[8], "pid", 2 ** 40, /outcome\?\.pid/],
  [VALID[8], "comm", "c".repeat(65), /outcome\?\.comm/],
  [VALID[8], "comm", 7, /outcome\?\.comm/],
  [{ op: "outcome", state: "running" }, "state", "maybe", /outcome\.state/],
  [{ op: "outcome", state: "running" }, "state", DELETE, /outcome\.state/],
  // relay-resume, relay-resumed
  [VALID[10], "token", "../../etc", /relay-resume\.token/],
  [VALID[10], "pid", 0, /relay-resume\.pid/],
  [VALID[10], "has", { 4: NaN }, /relay-resume\.has/],
  [VALID[10], "has", { 4: -1 }, /relay-resume\.has/],
  [VALID[10], "has", { 2: 5 }, /relay-resume\.has/],
  [VALID[10], "has", JSON.parse('{"__proto__":1}'), /relay-resume\.has/],
  [VALID[10], "has", DELETE, /relay-resume\.has/],
  [VALID[11], "has", { 2: 2 ** 60 }, /relay-resumed\.has/],
  [VALID[11], "has", null, /relay-resumed\.has/],
  [VALID[12], "reason", 7, /relay-resumed\.reason/],
  [VALID[12], "ok", DELETE, /relay-resumed\.ok/],
  // handover
  [VALID[13], "pid", 1.5, /handover\.pid/],
  [VALID[13], "managed", "yes", /handover\.managed/],
  [VALID[13], "name", "n".repeat(256), /handover\.name/],
  [VALID[13], "startedAt", NaN, /handover\.startedAt/],
  [VALID[13], "startedAt", -1, /handover\.startedAt/],
  [VALID[13], "startedAt", Infinity, /handover\.startedAt/],
  [VALID[13], "why", DELETE, /handover\.why/],
  [VALID[13], "why.kind", "whim", /handover\.why\.kind/],
  [VALID[13], "why.by", "b".repeat(256), /handover\.why\.by/],
  [VALID[14], "why.mode", "panic", /handover\.why\.mode/],
  [VALID[14], "why.record", [1, 2], /handover\.why\.record: expected a map/],
  [VALID[14], "why.record", null, /handover\.why\.record/],
  // exited
  [VALID[15], "pid", 0, /exited\.pid/],
  [VALID[15], "code", 256, /exited\.code/],
  [VALID[15], "code", -1, /exited\.code/],
  [VALID[15], "code", 1.5, /exited\.code/],
  [VALID[16], "signal", 0, /exited\.signal/],
  [VALID[16], "signal", 128, /exited\.signal/],
  [VALID[15], "node", "n".repeat(257), /exited\.node/],
  [VALID[15], "node", DELETE, /exited\.node: missing/],
  // redirect requests and answers
  [VALID[17], "entries", new Array(65537).fill(0), /redirect-add\.entries/],
  [VALID[17], "entries", "x".repeat(70_000), /redirect-add\.entries/],
  [VALID[17], "entries.0.proto", "sctp", /redirect-add\.entries\.0\.proto/],
  [VALID[17], "entries.0.action", "reject", /redirect-add\.entries\.0\.action/],
  [VALID[17], "entries.0.old.addr", "1.2.3", /redirect-add\.entries\.0\.old\.addr/],
  [VALID[17], "entries.0.peer.port", -1, /redirect-add\.entries\.0\.peer\.port/],
  [VALID[17], "entries.0.new", 5, /redirect-add\.entries\.0\.new/],
  [VALID[17], "entries.0.idleTimeout", 2 ** 32, /redirect-add\.entries\.0\.idleTimeout/],
  [VALID[18], "ids", [-1], /redirect-del\.ids\.0/],
  [VALID[18], "ids", [1.5], /redirect-del\.ids\.0/],
  [VALID[18], "ids", new Array(65537).fill(1), /redirect-del\.ids/],
  [VALID[19], "ok", false, /redirect-added\.ok/],
  [VALID[19], "ids", DELETE, /redirect-added\.ids/],
  [VALID[20], "ok", false, /redirect-removed\.ok/],
  [VALID[21], "ok", true, /redirect-failed\.ok/],
  [VALID[21], "reason", 5, /redirect-failed\.reason/],
  // signal (a deputy's, passed on): a PID and a signal number of 1..64
  [VALID[22], "pid", 0, /signal\.pid/],
  [VALID[22], "pid", -1, /signal\.pid/],
  [VALID[22], "pid", 2 ** 40, /signal\.pid/],
  [VALID[22], "pid", "4242", /signal\.pid/],
  [VALID[22], "pid", DELETE, /signal\.pid: missing/],
  [VALID[22], "sig", 0, /signal\.sig/],
  [VALID[22], "sig", 65, /signal\.sig/],
  [VALID[22], "sig", -9, /signal\.sig/],
  [VALID[22], "sig", 9.5, /signal\.sig/],
  [VALID[22], "sig", NaN, /signal\.sig/],
  [VALID[22], "sig", Infinity, /signal\.sig/],
  [VALID[22], "sig", "SIGKILL", /signal\.sig/],
  [VALID[22], "sig", "9", /signal\.sig/],
  [VALID[22], "sig", null, /signal\.sig/],
  [VALID[22], "sig", [9], /signal\.sig/],
  [VALID[22], "sig", 2n ** 70n, /signal\.sig/],
  [VALID[22], "sig", DELETE, /signal\.sig: missing/],
  // moved
  [VALID[23], "pid", 1.5, /moved\.pid/],
  [VALID[23], "node", "n".repeat(257), /moved\.node/],
  [VALID[23], "node", 3, /moved\.node/],
  [VALID[23], "node", DELETE, /moved\.node: missing/],
  // a release of locks: entries as a redirect-add's, a count within bounds
  [VALID[25], "entries", new Array(65537).fill(0), /redirect-release\.entries/],
  [VALID[25], "entries.0.action", "reject", /redirect-release\.entries\.0\.action/],
  [VALID[25], "entries.0.old.addr", "10.77.0.2; rm -rf /", /redirect-release\.entries\.0\.old/],
  [VALID[25], "entries.0.peer.port", 65536, /redirect-release\.entries\.0\.peer\.port/],
  [VALID[26], "count", -1, /redirect-removed\.count/],
  [VALID[26], "count", 65537, /redirect-removed\.count/],
  [VALID[26], "count", "1", /redirect-removed\.count/],
];

Deno.test("messages: hostile values of every message are refused, naming where", () => {
  const ops = new Set<string>();
  for (const [base, path, value, why] of HOSTILE) {
    ops.add(base.op as string);
    const raw = path === "origin.__proto__" || path === "__proto__"
      ? JSON.parse(
        JSON.stringify(base, (_k, x) => typeof x === "bigint" ? Number(x) : x).replace(
          path === "__proto__" ? /^\{/ : /"origin":\{/,
          (m) => `${m}"__proto__":${JSON.stringify(value)},`,
        ),
      )
      : mutated(base, path, value);
    const label = `${base.op} ${path} = ${Deno.inspect(value).slice(0, 40)}`;
    const text = refusal(raw);
    assertMatch(text, /^a malformed message: /, label);
    assertMatch(text, why, label);
    assert(text.length < 400, `${label}: ${text.length} characters`);
  }
  assertEquals([...ops].sort(), [...OPS].sort(), "every op has hostile cases");
});

Deno.test("messages: wrong types anywhere never crash the check", () => {
  const values = [
    undefined,
    null,
    true,
    -1,
    1.5,
    NaN,
    2 ** 53,
    -(2 ** 31),
    2n ** 70n,
    "",
    "a\0b",
    "x".repeat(70_000),
    [],
    new Array(70_000).fill(0),
    {},
    new Uint8Array(8),
  ];
  for (const base of VALID) {
    for (const key of Object.keys(base)) {
      for (const value of values) {
        const raw = { ...base, [key]: value };
        try {
          const m = parseMessage(raw);
          // Taken: only where the value is a valid one (an absent optional field, say).
          assertEquals(m.op, base.op);
        } catch (e) {
          assert(e instanceof MessageError, `${base.op}.${key}: ${e}`);
          assert(e.why.length < 400, `${base.op}.${key}: ${e.why.length} characters`);
        }
      }
    }
  }
});

Deno.test("messages: a site that waits for one kind says what it expected and what came", async () => {
  const e1 = (() => {
    try {
      expectMessage({ op: "abort" }, "commit");
    } catch (e) {
      return e as MessageError;
    }
  })()!;
  assert(e1 instanceof MessageError && e1 instanceof PpmError);
  assertEquals([e1.what, e1.why, e1.claimed], [
    "an unexpected message",
    "expected commit, got abort",
    "abort",
  ]);
  const e2 = (() => {
    try {
      expectMessage({ op: "restored", ok: true }, "committed", "commit");
    } catch (e) {
      return e as MessageError;
    }
  })()!;
  assertEquals(
    e2.why,
    "expected committed or commit, got a malformed restored (restored.pid: missing)",
  );
  const e3 = (() => {
    try {
      expectMessage({ op: "restored", ok: true }, "restored");
    } catch (e) {
      return e as MessageError;
    }
  })()!;
  assertEquals([e3.what, e3.why], ["a malformed message", "restored.pid: missing"]);
  const e4 = (() => {
    try {
      expectMessage("garbage", "restored");
    } catch (e) {
      return e as MessageError;
    }
  })()!;
  assertEquals(e4.why, "expected restored, got message: expected a map, got string");

  assertEquals(asMessage({ op: "abort" }, "commit"), undefined);
  assertEquals(asMessage({ op: "commit", relay: TOKEN }, "commit"), { op: "commit", relay: TOKEN });
  const m = await receiveMessage({ recv: () => Promise.resolve({ op: "abort" }) }, 10, "abort");
  assertEquals(m, { op: "abort" });
  let err: unknown;
  try {
    await receiveMessage({ recv: () => Promise.resolve(null) }, 10, "abort");
  } catch (e) {
    err = e;
  }
  assert(err instanceof MessageError, String(err));
});

Deno.test("checkOffer: a malformed offer is refused naming the field; the cause is the message error", () => {
  let err: unknown;
  try {
    checkOffer({ ...offer, pid: "7; rm -rf /" });
  } catch (e) {
    err = e;
  }
  assert(err instanceof PpmError && err.what === "refused", String(err));
  assertMatch(err.why, /^a malformed offer: offer\.pid: expected number, got "7; rm -rf \/"$/);
  assert(err.cause instanceof MessageError);
  assertEquals(checkOffer(offer) as unknown, offer);
  const tokenOk: Message = { op: "commit", relay: newRelayToken() };
  assertEquals(parseMessage(tokenOk), tokenOk);
});
