/** The balancing policy's parts: filters, /proc parsers, settings, random numbers, decide(). */
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertThrows } from "../support/assert.ts";
import { EXIT, PpmError } from "../../core/errors.ts";
import { admit } from "../../core/balance/admission.ts";
import { estimateMove } from "../../core/balance/cost.ts";
import {
  cpuRate,
  decaySlowly,
  ExportedLoadFilter,
  instantLoad,
  LocalLoadFilter,
  riseSlowly,
} from "../../core/balance/load.ts";
import {
  parseCpuinfo,
  parseLoadavg,
  parseMeminfo,
  parseNproc,
  parsePressure,
  parseProcStat,
  runnableThreads,
  sampleFromProc,
} from "../../core/balance/measure.ts";
import { decide, type DecideInput } from "../../core/balance/policy.ts";
import {
  LoadReader,
  OwnProcesses,
  readLoadSample,
  readTaskTimes,
} from "../../core/balance/read.ts";
import { DemandRates, parseSchedstat, RunqueueMeter } from "../../core/balance/runqueue.ts";
import { mulberry32, roundRng, seedFrom, shuffle } from "../../core/balance/rng.ts";
import {
  type BalanceSettings,
  DEFAULT_BALANCE_SETTINGS,
  resolveBalanceSettings,
} from "../../core/balance/settings.ts";
import { LoadTracker } from "../../core/balance/tracker.ts";
import type {
  LoadSample,
  LocalView,
  PeerView,
  ProcessView,
  RoundResult,
} from "../../core/balance/types.ts";

const GiB = 2 ** 30;
const MiB = 2 ** 20;
const near = (a: number, b: number, eps = 1e-9) => Math.abs(a - b) <= eps;

// ---------------------------------------------------------------- filters

Deno.test("balance filters: the local load rises slowly (5:3) and falls at once", () => {
  const f = new LocalLoadFilter(DEFAULT_BALANCE_SETTINGS.localRiseGain);
  assertEquals(f.update(8), 3); // 0 + 3/8 × 8
  assertEquals(f.update(8), 4.875); // 3 + 3/8 × 5
  let v = f.value;
  for (let i = 0; i < 20; i++) v = f.update(8);
  assert(v < 8 && v > 7.99, `approaches 8 from below, got ${v}`);
  assertEquals(f.update(1), 1); // falls at once
  assertEquals(f.update(0), 0);
});

Deno.test("balance filters: the exported load rises at once and decays slowly (7:1)", () => {
  const f = new ExportedLoadFilter(DEFAULT_BALANCE_SETTINGS.exportDecayGain);
  assertEquals(f.update(8), 8); // rises at once
  assertEquals(f.update(0), 7); // 8 − 1/8 × 8
  assertEquals(f.update(0), 6.125);
  assertEquals(f.update(10), 10);
  let v = 10;
  for (let i = 0; i < 10; i++) v = f.update(2);
  assert(near(v, 2 + 8 * (7 / 8) ** 10), `decays geometrically, got ${v}`);
});

Deno.test("balance filters: riseSlowly and decaySlowly are mirror images", () => {
  assertEquals(riseSlowly(2, 6, 0.25), 3);
  assertEquals(riseSlowly(6, 2, 0.25), 2);
  assertEquals(decaySlowly(6, 2, 0.25), 5);
  assertEquals(decaySlowly(2, 6, 0.25), 6);
});

function sample(over: Partial<LoadSample> = {}): LoadSample {
  return {
    at: 0,
    runnable: 0,
    cpus: 1,
    speed: 1,
    loadavg: [0, 0, 0],
    memTotal: 16 * GiB,
    memAvailable: 8 * GiB,
    ...over,
  };
}

Deno.test("balance load: normalised by CPUs and speed; PSI raises a snapshot that missed waiting", () => {
  assertEquals(instantLoad(sample({ runnable: 6, cpus: 4, speed: 1.5 })), 1);
  assertEquals(instantLoad(sample({ runnable: 3, cpus: 1, speed: 1 })), 3);
  // 2 runnable on 4 CPUs, yet tasks waited 50 % of the time: at least 4.5 tasks on average.
  assertEquals(instantLoad(sample({ runnable: 2, cpus: 4, cpuPressure: 50 })), 4.5 / 4);
  assertEquals(instantLoad(sample({ runnable: 8, cpus: 4, cpuPressure: 50 })), 2);
  assertEquals(instantLoad(sample({ runnable: 2, cpus: 4, cpuPressure: 0 })), 0.5);
  assertEquals(cpuRate(1, 4, 1), 0.25);
  assertEquals(cpuRate(1, 0.5, 2), 2);
});

Deno.test("balance tracker: announces incoming work at once, keeps its own view conservative", () => {
  const t = new LoadTracker("a", DEFAULT_BALANCE_SETTINGS);
  t.observe(sample({ runnable: 4 }), { load: 2, memory: GiB });
  assertEquals(t.localLoad, 1.5); // 3/8 of 4
  assertEquals(t.exportedLoad, 6); // 4 running + 2 on the way
  assertEquals(t.announcement(false).memAvailable, 7 * GiB);
  t.accepted({ load: 1, memory: GiB });
  assertEquals(t.announcement(false).load, 7);
  assertEquals(t.announcement(false).memAvailable, 6 * GiB);
  t.observe(sample({ runnable: 0, at: 1 }));
  assertEquals(t.localLoad, 0);
  assertEquals(t.exportedLoad, 7 * 7 / 8);
  assertEquals(t.localView(true).drain, true);
});

// ---------------------------------------------------------------- /proc parsers

const STAT = `cpu  10132153 290696 3084719 46828483 16683 0 25195 0 0 0
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 0 0
cpu1 1335802 31548 522318 13426412 5462 0 3240 0 0 0
intr 1462898 0 0
ctxt 115315
btime 1700000000
processes 5236
procs_running 5
procs_blocked 1
softirq 1 2 3
`;

const MEMINFO = `MemTotal:       16303520 kB
MemFree:         1201304 kB
MemAvailable:    9824736 kB
Buffers:          512000 kB
Cached:          8000000 kB
Active(anon):    1234 kB
HugePages_Total:       0
`;

const PRESSURE = `some avg10=12.50 avg60=3.00 avg300=1.00 total=123456
full avg10=0.00 avg60=0.00 avg300=0.00 total=0
`;

const CPUINFO_X86 = `processor\t: 0
model name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz
cpu MHz\t\t: 2400.000
bogomips\t: 4800.00

processor\t: 1
model name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz
cpu MHz\t\t: 2600.000
bogomips\t: 4800.00
`;

const CPUINFO_ARM = `processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd

processor\t: 1
BogoMIPS\t: 50.00
`;

Deno.test("balance measure: /proc/loadavg, /proc/stat, PSI, meminfo, cpuinfo, nproc", () => {
  assertEquals(parseLoadavg("0.52 0.58 0.59 3/812 12345\n"), {
    avg: [0.52, 0.58, 0.59],
    running: 3,
    total: 812,
  });
  assertEquals(parseProcStat(STAT), { procsRunning: 5, procsBlocked: 1, cpus: 2 });
  const psi = parsePressure(PRESSURE);
  assertEquals(psi.some.avg10, 12.5);
  assertEquals(psi.full?.total, 0);
  assertEquals(parsePressure("some avg10=1.00 avg60=2.00 avg300=3.00 total=4\n").full, undefined);
  assertEquals(parseMeminfo(MEMINFO), {
    memTotal: 16303520 * 1024,
    memFree: 1201304 * 1024,
    memAvailable: 9824736 * 1024,
  });
  // Kernels before 3.14 have no MemAvailable: free + buffers + cached.
  const old = MEMINFO.replace(/^MemAvailable:.*\n/m, "");
  assertEquals(parseMeminfo(old).memAvailable, (1201304 + 512000 + 8000000) * 1024);
  assertEquals(parseCpuinfo(CPUINFO_X86), {
    cpus: 2,
    mhz: 2500,
    bogomips: 4800,
    model: "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz",
  });
  assertEquals(parseCpuinfo(CPUINFO_ARM), { cpus: 2, bogomips: 50 });
  assertEquals(parseNproc("8\n"), 8);
});

Deno.test("balance measure: a sample from the texts, without the reader itself", () => {
  const s = sampleFromProc(
    { loadavg: "1.00 0.50 0.25 6/300 42", stat: STAT, meminfo: MEMINFO, pressureCpu: PRESSURE },
    { at: 12, speed: 1.5 },
  );
  assertEquals(s, {
    at: 12,
    runnable: 4,
    cpus: 2,
    speed: 1.5,
    loadavg: [1, 0.5, 0.25],
    memTotal: 16303520 * 1024,
    memAvailable: 9824736 * 1024,
    cpuPressure: 12.5,
  });
  const n = sampleFromProc(
    { loadavg: "0 0 0 1/1 1", stat: STAT, meminfo: MEMINFO, nproc: "4", cpuinfo: CPUINFO_ARM },
    { at: 0, self: 0 },
  );
  assertEquals([n.cpus, n.runnable, n.speed, n.cpuPressure], [4, 5, 1, undefined]);
  assertEquals(
    sampleFromProc({ loadavg: "0 0 0 1/1 1", stat: STAT, meminfo: MEMINFO, cpuinfo: CPUINFO_X86 }, {
      at: 0,
    }).cpus,
    2,
  );
});

Deno.test("balance measure: malformed texts are PpmErrors naming the file", () => {
  const cases: [() => unknown, RegExp][] = [
    [() => parseLoadavg("garbage"), /loadavg/],
    [() => parseLoadavg("a b c 1/2 3"), /avg1/],
    [() => parseProcStat("cpu 1 2 3\n"), /procs_running/],
    [() => parsePressure("full avg10=0 avg60=0 avg300=0 total=0"), /some/],
    [() => parsePressure("some avg10=x avg60=0 avg300=0 total=0"), /avg10/],
    [() => parseMeminfo("MemFree: 1 kB\n"), /MemTotal/],
    [() => parseCpuinfo(""), /processor/],
    [() => parseNproc("zero"), /nproc/],
    [() => parseNproc("0"), /not a CPU count/],
  ];
  for (const [fn, re] of cases) {
    assertThrows(fn, (e) => e instanceof PpmError && re.test(e.message));
  }
});

// ---------------------------------------------------------------- settings

Deno.test("balance settings: defaults, overrides and numeric strings", () => {
  assertEquals(resolveBalanceSettings(), { ...DEFAULT_BALANCE_SETTINGS });
  assertEquals(resolveBalanceSettings({}), { ...DEFAULT_BALANCE_SETTINGS });
  const s = resolveBalanceSettings({ margin: 1.5, maxMigrationsPerInterval: "4", tieTolerance: 0 });
  assertEquals([s.margin, s.maxMigrationsPerInterval, s.tieTolerance], [1.5, 4, 0]);
  assert(Object.isFrozen(DEFAULT_BALANCE_SETTINGS));
});

Deno.test("balance settings: bad values are usage errors", () => {
  const bad: unknown[] = [
    "margin=2",
    [1],
    { margni: 1.3 },
    { margin: 0.9 },
    { margin: "lots" },
    { margin: "" },
    { margin: Number.NaN },
    { margin: Infinity },
    { interval: 0 },
    { busyLoad: -1 },
    { maxMigrationsPerInterval: 2.5 },
    { maxMigrationsPerInterval: 0 },
    { memoryLow: 1.5 },
    { localRiseGain: 0 },
    { exportDecayGain: 2 },
    { calmLoad: 2, busyLoad: 1 },
    { memoryLow: 0.3, memoryComfort: 0.2 },
    { staleAfter: 1, interval: 2 },
    { recordLimit: -1 },
  ];
  for (const b of bad) {
    assertThrows(
      () => resolveBalanceSettings(b),
      (e) => e instanceof PpmError && e.exitCode === EXIT.USAGE && e.fix !== "",
      `accepted ${JSON.stringify(b)}`,
    );
  }
});

Deno.test("balance settings: docs/balancing.md documents every setting with its default", async () => {
  const doc = await Deno.readTextFile(new URL("../../docs/balancing.md", import.meta.url));
  for (const [key, value] of Object.entries(DEFAULT_BALANCE_SETTINGS)) {
    const row = doc.split("\n").find((l) => l.startsWith(`| \`${key}\``));
    assert(row, `docs/balancing.md has no table row for ${key}`);
    assertMatch(row.replaceAll("_", ""), new RegExp(`\\|\\s*${value}\\s*\\|`), `${key} default`);
  }
});

// ---------------------------------------------------------------- random numbers

Deno.test("balance rng: seeded, in [0, 1), and shuffles are permutations", () => {
  const a = mulberry32(42);
  const b = mulberry32(42);
  const xs = Array.from({ length: 1000 }, () => a());
  assertEquals(xs, Array.from({ length: 1000 }, () => b()));
  assert(xs.every((x) => x >= 0 && x < 1));
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert(mean > 0.45 && mean < 0.55, `mean ${mean}`);
  assert(seedFrom("n1", 2) !== seedFrom("n12"), "parts are separated");
  assert(roundRng("n1", 1)() !== roundRng("n1", 2)());
  const items = Array.from({ length: 50 }, (_, i) => i);
  const shuffled = shuffle(mulberry32(7), [...items]);
  assertEquals([...shuffled].sort((x, y) => x - y), items);
  assert(shuffled.some((x, i) => x !== i));
});

// ---------------------------------------------------------------- the policy

const NOW = 1000;
const S: BalanceSettings = resolveBalanceSettings();

function local(over: Partial<LocalView> = {}): LocalView {
  return {
    id: "me",
    load: 4,
    cpus: 1,
    speed: 1,
    memTotal: 64 * GiB,
    memAvailable: 48 * GiB,
    drain: false,
    ...over,
  };
}

function peer(id: string, load: number, over: Partial<PeerView> = {}): PeerView {
  return {
    id,
    load,
    cpus: 1,
    speed: 1,
    memTotal: 64 * GiB,
    memAvailable: 48 * GiB,
    drain: false,
    at: NOW - 1,
    bandwidth: 1.25e9,
    ...over,
  };
}

function procs(n: number, over: Partial<ProcessView> = {}, first = 1): ProcessView[] {
  return Array.from({ length: n }, (_, i) => ({
    pid: first + i,
    managed: true,
    demand: 1,
    memory: 64 * MiB,
    startedAt: NOW - 100,
    arrivedAt: NOW - 100,
    moves: 0,
    ...over,
  }));
}

function run(over: Partial<DecideInput> = {}): RoundResult {
  return decide({
    local: local(),
    peers: [peer("idle", 0)],
    processes: procs(4),
    settings: S,
    now: NOW,
    rng: roundRng("me", NOW),
    ...over,
  });
}

Deno.test("balance policy: an overloaded node sends a process to a sufficiently less loaded peer", () => {
  const r = run({ peers: [peer("idle", 0), peer("busy", 3.5)] });
  assertEquals(r.decisions.length, 1, "one process per 1-CPU peer until it confirms");
  const d = r.decisions[0];
  assertEquals([d.from, d.to, d.mode], ["me", "idle", "load"]);
  const rec = d.record;
  assertEquals(rec.margin.holds, true);
  assertEquals(rec.margin.text, "0.00 + 1.3 × 1.00 = 1.30 < 4.00");
  assertEquals([rec.local.load, rec.local.loadAfter, rec.target.loadAfter], [4, 3, 1]);
  assert(rec.benefit.cpuSeconds > rec.cost.cpuSeconds * S.benefitCostRatio);
  assertEquals(rec.targets[0].verdict, "chosen");
  assertEquals(rec.processes[0].verdict, "chosen");
  assertEquals(r.round.peerCounts, {
    "awaiting confirmation": 1,
    "not sufficiently less loaded": 1,
  });
  assertEquals(r.state.sent.map((s) => [s.pid, s.to, s.at]), [[d.pid, "idle", NOW]]);
  // The record is plain JSON.
  assertEquals(JSON.parse(JSON.stringify(r)), r);
});

Deno.test("balance policy: the margin rule, both sides of it", () => {
  // 1 + 1.3 × 1 = 2.3: not below 2.2, below 2.4.
  assertEquals(run({ local: local({ load: 2.2 }), peers: [peer("p", 1)] }).decisions.length, 0);
  assertEquals(run({ local: local({ load: 2.4 }), peers: [peer("p", 1)] }).decisions.length, 1);
  // A 4-CPU peer takes a process for a quarter of its load.
  const r = run({ local: local({ load: 3.2 }), peers: [peer("big", 1, { cpus: 4 })] });
  assertEquals(r.decisions.map((d) => d.record.margin.text), [
    "1.00 + 1.3 × 0.25 = 1.32 < 3.20",
    "1.25 + 1.3 × 0.25 = 1.57 < 2.20",
  ]);
});

Deno.test("balance policy: not overloaded, nothing moves; hysteresis between busyLoad and calmLoad", () => {
  const calm = run({ local: local({ load: 0.9 }) });
  assertEquals([calm.round.mode, calm.decisions.length], [null, 0]);
  assertMatch(calm.round.why, /nothing to move/);
  assertEquals(calm.state.overloaded, false);
  const still = run({
    local: local({ load: 0.9 }),
    state: { overloaded: true, ushering: false, sent: [] },
  });
  assertEquals([still.round.mode, still.state.overloaded], ["load", true]);
  const done = run({
    local: local({ load: 0.7 }),
    state: { overloaded: true, ushering: false, sent: [] },
  });
  assertEquals(done.round.mode, null);
});

Deno.test("balance policy: stale, draining and full peers get nothing", () => {
  const r = run({
    peers: [
      peer("stale", 0, { at: NOW - 6 }),
      peer("draining", 0, { drain: true }),
      peer("full", 0, { memAvailable: 4 * GiB }),
      peer("me", 0),
    ],
  });
  assertEquals(r.decisions.length, 0);
  assertEquals(r.round.peerCounts, { stale: 1, draining: 1, "low memory": 1 });
  assertMatch(r.round.stop, /no peer takes a process/);
});

Deno.test("balance policy: only managed processes move; young and resident ones wait", () => {
  const unmanaged = run({ processes: procs(4, { managed: false }) });
  assertEquals(unmanaged.decisions.length, 0);
  assertEquals(unmanaged.round.skipped, { unmanaged: 4 });
  const young = run({ processes: procs(2, { startedAt: NOW - 0.5, arrivedAt: NOW - 0.5 }) });
  assertEquals([young.decisions.length, young.round.skipped.young], [0, 2]);
  const resident = run({ processes: procs(2, { arrivedAt: NOW - 19, moves: 1, cameFrom: "x" }) });
  assertEquals([resident.decisions.length, resident.round.skipped.residency], [0, 2]);
  const settled = run({ processes: procs(2, { arrivedAt: NOW - 21, moves: 1, cameFrom: "x" }) });
  assertEquals(settled.decisions.length, 1);
  const mixed = run({
    peers: [peer("a", 0), peer("b", 0), peer("c", 0)],
    processes: [...procs(3, { managed: false }), ...procs(1, {}, 10)],
  });
  assertEquals(mixed.decisions.map((d) => d.pid), [10]);
});

Deno.test("balance policy: the choice weighs benefit against cost", () => {
  // Same age: the smaller image costs less.
  const small = run({
    processes: [...procs(1, { memory: 2 * GiB }), ...procs(1, { memory: 16 * MiB }, 2)],
  });
  assertEquals(small.decisions[0].pid, 2);
  // Same memory: the older process is expected to run longer, so it gains more.
  const old = run({
    processes: [...procs(1, { startedAt: NOW - 5 }), ...procs(1, { startedAt: NOW - 500 }, 2)],
  });
  assertEquals(old.decisions[0].pid, 2);
  // 8 GiB over a slow link for a 2 s old process: not worth it.
  const slow = run({
    peers: [peer("far", 0, { bandwidth: 12.5e6 })],
    processes: procs(1, { memory: 8 * GiB, startedAt: NOW - 2 }),
  });
  assertEquals(slow.decisions.length, 0);
  assertMatch(slow.round.peers[0].verdict, /no process fits \(1 cost\)/);
  const e = estimateMove({
    demand: 1,
    memory: 125e6,
    horizon: 10,
    localLoad: 4,
    localCpus: 1,
    localSpeed: 1,
    targetLoad: 0,
    targetCpus: 1,
    targetSpeed: 1,
    bandwidth: 125e6,
    backlog: 0.5,
    overhead: 0.5,
  });
  assertEquals([e.rateHere, e.rateThere, e.transferSeconds], [0.25, 1, 2]);
  assertEquals([e.benefit, e.cost, e.net], [7.5, 2, 5.5]);
});

Deno.test("balance policy: the per-interval limit", () => {
  const peers = Array.from({ length: 30 }, (_, i) => peer(`p${i}`, 0));
  const r = run({ local: local({ load: 40 }), peers, processes: procs(40) });
  assertEquals(r.decisions.length, S.maxMigrationsPerInterval);
  assertEquals(new Set(r.decisions.map((d) => d.to)).size, r.decisions.length);
  assertMatch(r.round.stop, /budget spent/);
  const next = run({
    local: local({ load: 24 }),
    peers,
    processes: procs(24),
    state: { ...r.state, sent: r.state.sent.map((s) => ({ ...s, at: NOW - 0.5 })) },
  });
  assertEquals([next.round.budget, next.decisions.length], [0, 0]);
});

Deno.test("balance policy: sends a peer has not announced yet count in its expected load", () => {
  const first = run();
  assertEquals(first.decisions.length, 1);
  const at = (t: number) =>
    run({
      now: NOW + 1,
      peers: [peer("idle", 0, { at: t })],
      state: first.state,
      processes: procs(3, {}, 2),
    });
  // The peer's announcement predates the send: it still looks idle, but the send counts.
  const before = at(NOW);
  assertEquals(before.decisions.length, 0);
  assertEquals(before.round.peers[0].expected, 1);
  assertMatch(before.round.peers[0].verdict, /awaiting confirmation/);
  // A newer announcement (showing the process) confirms it.
  assertEquals(at(NOW + 0.5).decisions.length, 1);
});

Deno.test("balance policy: near-equal targets are picked at random, seeded by node and round", () => {
  const peers = [peer("a", 0), peer("b", 0.1), peer("c", 0.2), peer("far", 1)];
  const pick = (round: number) =>
    run({ peers, processes: procs(1), rng: roundRng("me", round) }).decisions[0].to;
  const picks = Array.from({ length: 40 }, (_, i) => pick(i));
  assertEquals(new Set(picks), new Set(["a", "b", "c"]));
  assertEquals(pick(3), pick(3));
  const input = { peers, rng: roundRng("me", 5) };
  assertEquals(run({ ...input, rng: roundRng("me", 5) }), run(input));
});

Deno.test("balance policy: a busy node expects others to send to an idle peer too", () => {
  // Ten nodes with load 10 and one idle: together they should give it about 100/11.
  const peers = [...Array.from({ length: 9 }, (_, i) => peer(`p${i}`, 10)), peer("new", 0)];
  const r = run({ local: local({ load: 10 }), peers, processes: procs(10) });
  const d = r.decisions[0]?.record.damping ?? r.round.peers[0];
  if ("probability" in d) {
    assertEquals([d.senders, d.mean, d.probability], [10, 9.0909, 0.9091]);
  } else {
    assertMatch(d.verdict, /damped: 10 senders share room 9.09 → p 0.91/);
  }
  // With thirty senders and room for three, few send in a given round.
  const many = [...Array.from({ length: 29 }, (_, i) => peer(`p${i}`, 3)), peer("new", 0)];
  const sent = Array.from(
    { length: 100 },
    (_, i) =>
      run({ local: local({ load: 3 }), peers: many, processes: procs(3), rng: roundRng("me", i) })
        .decisions.length,
  ).reduce((a, b) => a + b, 0);
  assert(sent > 0 && sent < 25, `sent in ${sent} of 100 rounds, expected about 10`);
});

Deno.test("balance policy: memory ushering sends the biggest processes to peers with room", () => {
  const r = run({
    local: local({ load: 0.5, memTotal: 16 * GiB, memAvailable: 1 * GiB }),
    peers: [peer("roomy", 0.2), peer("tight", 0, { memTotal: 16 * GiB, memAvailable: 4 * GiB })],
    processes: [
      ...procs(1, { memory: 1 * GiB }),
      ...procs(1, { memory: 3 * GiB }, 2),
      ...procs(1, { memory: 2 * GiB, startedAt: NOW - 0.1, arrivedAt: NOW - 0.1 }, 3),
    ],
  });
  assertEquals(r.round.mode, "memory");
  assertEquals(r.decisions.map((d) => [d.pid, d.to, d.mode]), [[2, "roomy", "memory"]]);
  assertMatch(r.decisions[0].record.why, /memory low: 6.25 %/);
  // 1 + 3 GiB of 16 is 25 %: above memoryComfort, so it stops.
  assertMatch(r.round.stop, /done/);
  assertEquals(r.state.ushering, true);
});

Deno.test("balance policy: a draining node sends every managed process away and accepts none", () => {
  const peers = Array.from({ length: 5 }, (_, i) => peer(`p${i}`, 2, { cpus: 8 }));
  const r = run({
    local: local({ load: 0.5, drain: true }),
    peers,
    processes: [
      ...procs(3, { startedAt: NOW - 0.1, arrivedAt: NOW - 0.1 }),
      ...procs(2, { moves: 2, arrivedAt: NOW - 1 }, 4),
      ...procs(2, { managed: false }, 6),
    ],
  });
  assertEquals(r.round.mode, "drain");
  assertEquals(r.decisions.map((d) => d.pid).sort(), [1, 2, 3, 4, 5]);
  assertMatch(r.round.stop, /no drain candidate/);
  const me = local({ drain: true });
  assertEquals(admit(me, MiB, S).accept, false);
  assertEquals(admit(local(), MiB, S).accept, true);
  assertEquals(admit(local({ memTotal: 10 * GiB, memAvailable: GiB }), MiB, S).accept, false);
});

Deno.test("balance policy: a drain spreads over near-equal peers, least loaded first each time", () => {
  // Two 2-CPU peers, near-equal (within the tie tolerance): each process goes to the one
  // that is least loaded at the time, never both to one of them (they would move on after).
  for (let round = 0; round < 20; round++) {
    const r = decide({
      local: local({ load: 1, cpus: 2, drain: true }),
      peers: [peer("a", 1.02, { cpus: 2 }), peer("b", 1.1, { cpus: 2 })],
      processes: procs(2, { demand: 1 }),
      settings: S,
      now: NOW,
      rng: roundRng("drainer", round),
    });
    assertEquals(r.decisions.map((d) => d.to), ["a", "b"], `round ${round}`);
  }
});

Deno.test("balance policy: every loop is bounded, even with odd input", () => {
  const r = run({
    local: local({ load: 1e6, cpus: 0, speed: 0 }),
    peers: [peer("z", 0, { cpus: 0, speed: 0, bandwidth: 0 }), peer("z", 0, { at: NOW - 3 })],
    processes: procs(2, { demand: 0 }),
  });
  assert(r.decisions.length <= 2);
  assertEquals(r.round.peers.length, 1, "duplicate announcements: the newest counts");
});

Deno.test("runnableThreads counts the threads in state R, whatever the command holds", () => {
  const stats = [
    "812 (deno) R 1 812 812 0 -1 4194560 9 0 0 0",
    "813 (tokio-runtime-w) S 1 812 812 0 -1",
    "814 (a) R) S 1 812 812",
    "815 (v8 worker) R 1",
    "",
    "garbage",
  ];
  assertEquals(runnableThreads(stats), 2);
});

Deno.test("readLoadSample leaves out the reader's own runnable threads", () => {
  const s = readLoadSample(1);
  assert(s.runnable >= 0 && s.cpus >= 1 && s.memTotal > 0, JSON.stringify(s));
});

Deno.test("parseSchedstat: run plus wait ns, null when malformed", () => {
  assertEquals(parseSchedstat("1500 250 7\n"), 1750);
  assertEquals(parseSchedstat("12"), null);
  assertEquals(parseSchedstat("a b c"), null);
  assertEquals(parseSchedstat("-1 2 3"), null);
});

Deno.test("RunqueueMeter: the mean run-queue length between looks", () => {
  const m = new RunqueueMeter(0);
  assertEquals(m.update(new Map([["1/1", 5e9], ["2/2", 1e9]]), 10), undefined);
  // Over 2 s: task 1 always runnable, task 2 half the time, task 3 new with 0.5 s.
  const mean = m.update(new Map([["1/1", 7e9], ["2/2", 2e9], ["3/3", 0.5e9]]), 12);
  assertEquals(mean, (2 + 1 + 0.5) / 2);
  assertEquals([...m.shares], [["1/1", 1], ["2/2", 0.5], ["3/3", 0.25]]);
  // A new task counts at most the interval; a clock that did not advance gives nothing.
  assertEquals(m.update(new Map([["9/9", 100e9]]), 13), 1);
  assertEquals(m.update(new Map([["9/9", 100e9]]), 13), undefined);
  // A reused key whose time went down is a new task.
  assertEquals(m.update(new Map([["9/9", 0.25e9]]), 14), 0.25);
});

Deno.test("RunqueueMeter: each mean spans the window once the meter has looked that long", () => {
  const m = new RunqueueMeter(5);
  const look = (at: number, ns: number) => m.update(new Map([["1/1", ns]]), at);
  assertEquals(look(0, 0), undefined);
  // Before 5 s of looks: from the first one.
  assertEquals(look(1, 0.2e9), 0.2);
  assertEquals(look(2, 2e9), 1);
  // From 5 s on: from the newest look at least 5 s old, so a late wait evens out.
  for (let t = 3; t <= 6; t++) look(t, t * 1e9);
  assertEquals(look(7, 7e9), (7e9 - 2e9) / 5e9);
  assertEquals(look(8, 7.5e9), (7.5e9 - 3e9) / 5e9);
});

Deno.test("DemandRates: run plus wait time per second of each process over the window", () => {
  const d = new DemandRates(10);
  const look = (at: number, times: [string, number][]) => d.update(new Map(times), at);
  look(0, [["5/5", 0], ["7/7", 0], ["7/8", 0]]);
  // Seen once: no demand yet.
  assertEquals(d.demand(5), undefined);
  assertEquals(d.runWait(7), 0);
  // A CPU-bound thread that got a third of a CPU but never slept; two threads half asleep.
  look(1, [["5/5", 1e9], ["7/7", 0.5e9], ["7/8", 0.5e9], ["9/9", 3e9]]);
  assertEquals(d.demand(5), { demand: 1, span: 1 });
  assertEquals(d.demand(7), { demand: 1, span: 1 });
  assertEquals(d.runWait(7), 1e9);
  // A process first seen in this look (it may have run for long elsewhere): none yet.
  assertEquals(d.demand(9), undefined);
  // Over the window: a second whose wait has not shown yet does not pull it down.
  for (let t = 2; t <= 10; t++) look(t, [["5/5", t * 1e9], ["9/9", 3e9 + (t - 1) * 1e9]]);
  look(11, [["5/5", 10.2e9], ["9/9", 12.5e9]]);
  assertEquals(d.demand(5)?.span, 10);
  assertEquals(Math.round(d.demand(5)!.demand * 100) / 100, 0.92);
  // A process seen since the look at 1 s counts from there, over its own span.
  assertEquals(d.demand(9)?.span, 10);
  // Gone: no demand; a reused thread key (time went back) counts from where it is seen anew.
  look(12, [["9/9", 0.5e9]]);
  assertEquals(d.demand(5), undefined);
  assertEquals(d.demand(9), undefined);
  look(13, [["9/9", 1.5e9]]);
  assertEquals(d.demand(9), { demand: 1, span: 1 });
});

Deno.test("cpuDemand: an averaged runnable count is taken as it is, PSI not added", () => {
  assertEquals(
    instantLoad(sample({ runnable: 1.5, cpus: 2, cpuPressure: 90, averaged: true })),
    0.75,
  );
  assertEquals(instantLoad(sample({ runnable: 1.5, cpus: 2, cpuPressure: 90 })), 2.9 / 2);
});

Deno.test("LoadReader: the second sample averages the run queue of user tasks", async () => {
  const times = readTaskTimes();
  if (!times) return; // a kernel without schedstat: the reader counts at one instant
  assert(!times.has(`${Deno.pid}/${Deno.pid}`), "the reader's own tasks are left out");
  const r = new LoadReader();
  assertEquals(r.sample(1).averaged, undefined);
  // A busy child for the interval: it is runnable all along.
  const child = new Deno.Command("sh", { args: ["-c", "while :; do :; done"] }).spawn();
  try {
    await new Promise((res) => setTimeout(res, 300));
    r.sample(1);
    await new Promise((res) => setTimeout(res, 500));
    const s = r.sample(1);
    assertEquals(s.averaged, true);
    assert(s.runnable >= 0.8, `a busy child was ${s.runnable} runnable tasks on average`);
    assert(s.runqueue?.some((x) => x.pid === child.pid), JSON.stringify(s.runqueue));
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
});

Deno.test("OwnProcesses: ppm's own processes by executable and script, relative or not", async () => {
  const dir = await Deno.makeTempDir();
  const script = join(dir, "main.ts");
  await Deno.writeTextFile(script, "await new Promise((r) => setTimeout(r, 20000));\n");
  const spawn = (arg: string) =>
    new Deno.Command(Deno.execPath(), { args: ["run", arg], cwd: dir }).spawn();
  const kids = [spawn(script), spawn("./main.ts")];
  const other = new Deno.Command("sleep", { args: ["20"] }).spawn();
  try {
    const own = new OwnProcesses(Deno.execPath(), script);
    for (let i = 0; i < 100 && !kids.every((k) => own.has(String(k.pid))); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert(kids.every((k) => own.has(String(k.pid))), "deno run of the same script is ppm");
    assert(!own.has(String(other.pid)), "another program is not ppm");
    assert(!new OwnProcesses(Deno.execPath(), join(dir, "x.ts")).has(String(kids[0].pid)));
    // A compiled ppm is its own executable: every process of it is ppm.
    assert(new OwnProcesses("/usr/bin/sleep").has(String(other.pid)));
  } finally {
    for (const k of [...kids, other]) {
      k.kill("SIGKILL");
      await k.status;
    }
    await Deno.remove(dir, { recursive: true });
  }
});
