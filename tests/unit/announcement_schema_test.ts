/**
 * The announcement's schema against hostile bodies: huge and non-finite
 * numbers, negatives, wrong types, prototype keys and over-long strings are
 * refused naming the field; what passes is a clean copy.
 */
import { Encoder } from "@msgpack/msgpack";
import {
  checkAnnouncement,
  checkLoad,
  decodeAnnouncement,
  encodeAnnouncement,
  MalformedAnnouncement,
  type PeerAnnouncement,
} from "../../core/discovery/announcement.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

const GiB = 2 ** 30;
const T0 = 1_700_000_000_000;

function ann(): PeerAnnouncement {
  return {
    id: "00112233445566aa",
    name: "node2",
    hostname: "node2.cluster",
    addresses: ["10.88.0.2"],
    migrationPort: 7378,
    version: "0.1.0",
    abi: 1,
    kernel: "6.1.0-18-amd64",
    cpu: { hash: "0123456789abcdef", flags: ["avx", "avx2", "sse4_2"] },
    load: {
      load: 0.5,
      cpus: 4,
      speed: 1,
      memTotal: 16 * GiB,
      memAvailable: 12 * GiB,
      drain: false,
      at: T0 / 1000,
      runnable: 2,
      loadavg: [0.5, 0.4, 0.3],
      cpuPressure: 1.5,
    },
    seq: 1,
    timestamp: T0,
    startedAt: T0 - 5000,
    interval: 1000,
    leaving: false,
  };
}

/** Why `fn` refused its announcement; fails when it accepted it. */
function why(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert(e instanceof MalformedAnnouncement, `${e}`);
    return e.message;
  }
  throw new Error("accepted");
}

/** Why a peer refuses the msgpack of `value`. */
function refusal(value: unknown): string {
  return why(() => decodeAnnouncement(new Encoder({ useBigInt64: true }).encode(value)));
}

/** `ann()` with `field` (a dot path) set to `value`. */
function changed(field: string, value: unknown): Record<string, unknown> {
  const a = structuredClone(ann()) as unknown as Record<string, unknown>;
  const keys = field.split(".");
  let o = a;
  for (const k of keys.slice(0, -1)) o = o[k] as Record<string, unknown>;
  o[keys.at(-1)!] = value;
  return a;
}

Deno.test("announcement: huge, non-finite and negative numbers are refused by field", () => {
  const cases: [string, unknown, RegExp][] = [
    ["seq", 2n ** 64n - 1n, /^seq is 18446744073709551615n$/],
    ["seq", 2 ** 53, /^seq is 9007199254740992$/],
    ["seq", 1e308, /^seq is 1e\+308$/],
    ["timestamp", -1, /^timestamp is -1$/],
    ["startedAt", -(2n ** 62n), /^startedAt is -4611686018427387904n$/],
    ["migrationPort", 65536, /^migrationPort is 65536$/],
    ["abi", 2 ** 31, /^abi is 2147483648$/],
    ["interval", 49, /^interval is 49$/],
    ["interval", 3_600_001, /^interval is 3600001$/],
    ["load.load", NaN, /^load\.load is null$/],
    ["load.speed", Infinity, /^load\.speed is null$/],
    ["load.memAvailable", -Infinity, /^load\.memAvailable is null$/],
    ["load.at", -0.5, /^load\.at is -0\.5$/],
    ["load.cpus", 2 ** 20 + 1, /^load\.cpus is 1048577$/],
    ["load.cpus", 1.5, /^load\.cpus is 1\.5$/],
    ["load.runnable", -1, /^load\.runnable is -1$/],
    ["load.cpuPressure", NaN, /^load\.cpuPressure is null$/],
    ["load.loadavg", [1, 2, -3], /^load\.loadavg is -3$/],
    ["load.loadavg", [1, 2, 3, 4], /^load\.loadavg is \[1,2,3,4\]$/],
  ];
  for (const [field, value, re] of cases) assertMatch(refusal(changed(field, value)), re, field);
});

Deno.test("announcement: wrong types are refused by field", () => {
  const cases: [string, unknown, RegExp][] = [
    ["id", 42, /^id is 42$/],
    ["name", ["node2"], /^name is \["node2"\]$/],
    ["addresses", "10.0.0.1", /^addresses is "10\.0\.0\.1"$/],
    ["addresses", [10], /^addresses is 10$/],
    ["addresses", { 0: "10.0.0.1" }, /^addresses is {"0":"10\.0\.0\.1"}$/],
    ["cpu", [], /^cpu is \[\]$/],
    ["cpu.flags", "avx", /^cpu\.flags is "avx"$/],
    ["cpu.flags", [1], /^cpu\.flags is 1$/],
    ["load", null, /^load is null$/],
    ["load", [1, 2, 3], /^load is \[1,2,3\]$/],
    ["load.drain", 0, /^load\.drain is 0$/],
    ["load.loadavg", { 0: 1, 1: 2, 2: 3 }, /^load\.loadavg is {"0":1/],
    ["seq", "1", /^seq is "1"$/],
    ["seq", true, /^seq is true$/],
    ["leaving", null, /^leaving is null$/],
  ];
  for (const [field, value, re] of cases) assertMatch(refusal(changed(field, value)), re, field);
  assertMatch(refusal(null), /^the announcement is null$/);
  assertMatch(refusal("PPMA"), /^the announcement is "PPMA"$/);
  assertMatch(refusal(7), /^the announcement is 7$/);
});

Deno.test("announcement: over-long strings are refused, the value shown cut short", () => {
  const cases: [string, unknown, RegExp][] = [
    ["name", "n".repeat(65), /^name is "n{39}$/],
    ["hostname", "h".repeat(65), /^hostname is "h{39}$/],
    ["kernel", "k".repeat(65), /^kernel is "k{39}$/],
    ["version", "v".repeat(33), /^version is "v{33}"$/],
    ["cpu.hash", "0123456789abcdef0", /^cpu\.hash is "0123456789abcdef0"$/],
    ["cpu.flags", ["f".repeat(25)], /^cpu\.flags is "f{25}"$/],
    [
      "cpu.flags",
      Array.from({ length: 21 }, (_, i) => `f${i}`.padEnd(23, "x")),
      /^cpu\.flags is "21 flags"$/,
    ],
    ["addresses", Array(5).fill("10.0.0.1"), /^addresses is \["10\.0\.0\.1"/],
  ];
  for (const [field, value, re] of cases) assertMatch(refusal(changed(field, value)), re, field);
  // Longer than the decoder takes at all.
  assertMatch(refusal(changed("hostname", "h".repeat(300))), /^not msgpack/);
  assertMatch(refusal(changed("cpu.flags", Array(81).fill("a"))), /^not msgpack/);
});

Deno.test("announcement: prototype keys neither pass nor pollute; unknown keys are dropped", () => {
  // The decoder refuses a __proto__ key outright.
  const proto = new Uint8Array([0x81, 0xa9, ...new TextEncoder().encode("__proto__"), 0x01]);
  assertMatch(
    why(() => decodeAnnouncement(proto)),
    /^not msgpack: .*__proto__/,
  );
  // Checked in process, a __proto__ own key (as JSON.parse makes) is dropped like any unknown key.
  const hostile = JSON.parse(JSON.stringify(ann()).replace(/^{/, '{"__proto__":{"polluted":1},'));
  hostile.load.constructor = "x";
  hostile.cpu.toString = 5;
  const clean = checkAnnouncement(hostile);
  assertEquals(clean, ann());
  assertEquals(Object.getPrototypeOf(clean), Object.prototype);
  assertEquals(({} as Record<string, unknown>).polluted, undefined);
  // Missing fields are named; a load checked alone is named "load.…".
  const { seq: _, ...noSeq } = ann();
  assertMatch(refusal(noSeq), /^seq is undefined$/);
  assertMatch(
    why(() => checkLoad({ ...ann().load, at: "now" })),
    /^load\.at is "now"$/,
  );
});

Deno.test("announcement: what passes is a clean copy, and encodes as before", () => {
  const a = ann();
  const out = checkAnnouncement(a);
  assertEquals(out, a);
  assert(out !== a && out.load !== a.load && out.cpu.flags !== a.cpu.flags, "a copy");
  // An undefined PSI figure is left out, not sent as nil (which peers would refuse).
  const noPsi = ann();
  noPsi.load.cpuPressure = undefined;
  assert(!("cpuPressure" in checkAnnouncement(noPsi).load));
  assertEquals(decodeAnnouncement(encodeAnnouncement(noPsi)).load.cpuPressure, undefined);
  // Holes in an array are not addresses.
  const holes = ann();
  holes.addresses = new Array(1);
  assertMatch(
    why(() => checkAnnouncement(holes)),
    /^addresses is undefined$/,
  );
});
