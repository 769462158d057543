/**
 * The agent's control requests (core/agent/ops.ts) over a real control
 * socket, with a fake move function and fake /proc readings: manage and its
 * permission check, unmanage, migrate, wait, balance, drain; and the demand
 * estimate of the process facts.
 */
import { join } from "node:path";
import type { BalanceReport } from "../../core/agent/balancer.ts";
import { type ControlRequest, controlRequest, serveControl } from "../../core/agent/control.ts";
import { DemandMeter, processViews } from "../../core/agent/facts.ts";
import { makeHandler, type OpsDeps, type WaitAnswer } from "../../core/agent/ops.ts";
import type { MoveRequest } from "../../core/agent/outbound.ts";
import { type ProcessEntry, ProcessTable } from "../../core/agent/processes.ts";
import type { ProcFacts } from "../../core/agent/procfs.ts";
import type { DiscoveryStatus } from "../../core/discovery/service.ts";
import { EXIT, PpmError } from "../../core/errors.ts";
import { assert, assertEquals } from "../support/assert.ts";

function facts(pid: number, o: Partial<ProcFacts> = {}): ProcFacts {
  return {
    pid,
    comm: `prog${pid}`,
    state: "S",
    ppid: 1,
    kernelThread: false,
    cpuTicks: 0,
    nice: 0,
    threads: 1,
    startTicks: 500,
    rtPriority: 0,
    policy: 0,
    uids: [1000, 1000, 1000, 1000],
    gids: [100, 100, 100, 100],
    procOwner: 1000,
    memory: 1 << 20,
    ...o,
  };
}

/** An agent's handler served on a temporary socket; `ask` sends one request. */
async function withAgent(
  o: Partial<OpsDeps>,
  fn: (
    ask: (r: ControlRequest) => Promise<unknown>,
    t: ProcessTable,
    moves: MoveRequest[],
  ) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "ppm.sock");
  const table = new ProcessTable("node1");
  const moves: MoveRequest[] = [];
  let draining = false;
  let cordoned = false;
  const procs: Record<number, ProcFacts> = {
    7: facts(7),
    42: facts(42),
    43: facts(43, { uids: [0, 0, 0, 0] }),
  };
  const deps: OpsDeps = {
    node: "node1",
    agentPid: 7,
    caller: { uid: 1000, gid: 100 },
    table,
    busy: new Set(),
    move: (req) => {
      moves.push(req);
      table.left(req.pid, req.to, req.pid, req.why, "x");
      return Promise.resolve({ pid: req.pid, to: req.to, bytes: 1, timesUs: {} });
    },
    balance: (dryRun) => Promise.resolve({ node: "node1", dryRun } as BalanceReport),
    balanceStatus: () => ({
      enabled: false,
      draining,
      cordoned,
      managedHere: table.managedHere().length,
      migrating: 0,
    }),
    discovery: () => ({ self: { name: "node1" }, peers: [] }) as unknown as DiscoveryStatus,
    setDraining: (on) => draining = on,
    setCordoned: (on) => cordoned = on,
    schedulerReasons: () => Promise.resolve([]),
    facts: (pid) => Promise.resolve(procs[pid] ?? null),
    bootTime: () => Promise.resolve(1_700_000_000),
    sleep: (ms) => new Promise((r) => setTimeout(r, Math.min(ms, 5))),
    ...o,
  };
  const ac = new AbortController();
  const served = serveControl(path, makeHandler(deps), ac.signal, () => {});
  try {
    for (let i = 0; i < 100 && !(await Deno.stat(path).then(() => true, () => false)); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await fn((r) => controlRequest(path, r, 10_000), table, moves);
  } finally {
    ac.abort();
    await served;
    await Deno.remove(dir, { recursive: true });
  }
}

async function code(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (e) {
    assert(e instanceof PpmError, String(e));
    return e.exitCode;
  }
  return 0;
}

Deno.test("agent ops: manage, the permission rule, unmanage, ps", async () => {
  await withAgent({}, async (ask, table) => {
    const e = await ask({ op: "manage", pid: 42, name: "job", by: "run" }) as ProcessEntry;
    assertEquals([e.name, e.managed, e.managedBy, e.startedAt], [
      "job",
      true,
      "run",
      1_700_000_005,
    ]);
    assertEquals(table.managedHere().length, 1);
    // Someone else's process (uid 0), a missing one, a bad PID.
    assertEquals(await code(ask({ op: "manage", pid: 43 })), EXIT.PERMISSION);
    assertEquals(await code(ask({ op: "manage", pid: 44 })), EXIT.MISSING);
    assertEquals(await code(ask({ op: "manage", pid: -1 })), EXIT.USAGE);
    assertEquals(await code(ask({ op: "manage", pid: 7 })), EXIT.FAILURE); // the agent
    const ps = await ask({ op: "ps" }) as ProcessEntry[];
    assertEquals(ps.map((x) => [x.current.pid, x.name, x.direction]), [[42, "job", "local"]]);
    assertEquals(await ask({ op: "unmanage", pid: 42 }), { pid: 42, managed: false });
    assertEquals(await code(ask({ op: "unmanage", pid: 42 })), EXIT.MISSING);
    assertEquals(await code(ask({ op: "bogus" } as unknown as ControlRequest)), EXIT.USAGE);
  });
});

Deno.test("agent ops: ps lists the deputies after the table; a deputy is not made managed", async () => {
  const row = {
    origin: { node: "node1", pid: 42 },
    current: { node: "node3", pid: 42 },
    moves: 2,
    direction: "deputy",
    managed: false,
    name: "job",
    startedAt: 1,
    arrivedAt: 2,
    deputy: { pid: 42, connected: true, since: "2025-01-01T00:00:00.000Z" },
  } satisfies ProcessEntry;
  await withAgent({
    deputyRows: () => [row],
    deputyOf: (pid) => pid === 42 ? "node3" : undefined,
  }, async (ask) => {
    const ps = await ask({ op: "ps" }) as ProcessEntry[];
    assertEquals(ps, [row]);
    let err: unknown;
    await ask({ op: "manage", pid: 42 }).catch((e) => err = e);
    assert(err instanceof PpmError && err.exitCode === EXIT.USAGE, String(err));
    assert(/deputy of process 42, which runs on node3/.test(err.why), err.why);
  });
});

Deno.test("agent ops: migrate goes through the move function as a manual move", async () => {
  await withAgent({}, async (ask, table, moves) => {
    await ask({ op: "manage", pid: 42 });
    const r = await ask({ op: "migrate", pid: 42, to: "node2", timeoutMs: 5000 });
    assertEquals((r as { to: string }).to, "node2");
    assertEquals(moves.map((m) => [m.pid, m.to, m.timeoutMs, m.why]), [
      [42, "node2", 5000, { kind: "manual", by: "ppm migrate" }],
    ]);
    const left = table.departed(42)!;
    assertEquals([left.direction, left.managed, left.why?.kind], ["left", true, "manual"]);
  });
});

Deno.test("agent ops: wait tells a process that ended elsewhere from one killed here", async () => {
  await withAgent({}, async (ask, table) => {
    assertEquals(await ask({ op: "wait", pid: 42, timeoutMs: 50 }), { state: "unknown" });
    await ask({ op: "manage", pid: 42 });
    assertEquals(await ask({ op: "wait", pid: 42, timeoutMs: 50 }), { state: "here" });
    await ask({ op: "migrate", pid: 42, to: "node2" });
    const running = await ask({ op: "wait", pid: 42, timeoutMs: 50 }) as WaitAnswer;
    assertEquals(running.state, "elsewhere");
    // The exit comes back, then the relay ends: only then is it over.
    table.exitedElsewhere(42, { code: 3, node: "node2", at: new Date().toISOString() });
    assertEquals(
      (await ask({ op: "wait", pid: 42, timeoutMs: 50 }) as WaitAnswer).state,
      "elsewhere",
    );
    table.relayEnded(42);
    const done = await ask({ op: "wait", pid: 42, timeoutMs: 50 }) as WaitAnswer;
    assertEquals(done.state, "exited");
    if (done.state === "exited") assertEquals([done.exit.code, done.exit.node], [3, "node2"]);
  });
});

Deno.test("agent ops: a Slurm job's process is not managed (the balancer would move it)", async () => {
  const held = () =>
    Promise.resolve(["it belongs to Slurm job 5: moving it would end the job's step"]);
  await withAgent({ schedulerReasons: held }, async (ask, t) => {
    assertEquals(await code(ask({ op: "manage", pid: 42 })), EXIT.FAILURE);
    assertEquals(t.managedHere().length, 0);
  });
});

Deno.test("agent ops: balance passes --dry-run on; drain and undrain", async () => {
  await withAgent({}, async (ask) => {
    assertEquals((await ask({ op: "balance", dryRun: true }) as BalanceReport).dryRun, true);
    assertEquals((await ask({ op: "balance", dryRun: false }) as BalanceReport).dryRun, false);
    assertEquals((await ask({ op: "drain" }) as { draining: boolean }).draining, true);
    const st = await ask({ op: "status" }) as { balance: { draining: boolean } };
    assertEquals(st.balance.draining, true);
    assertEquals((await ask({ op: "undrain" }) as { draining: boolean }).draining, false);
    assertEquals((await ask({ op: "cordon" }) as { cordoned: boolean }).cordoned, true);
    assertEquals((await ask({ op: "uncordon" }) as { cordoned: boolean }).cordoned, false);
  });
});

Deno.test("agent facts: demand is the CPU share scaled by the load, at most the threads", () => {
  const m = new DemandMeter(0);
  // First look: the average since it started here (50 ticks in 1 s = half a CPU at load 2).
  assertEquals(m.demand(1, 50, 1, 101, 100, 2), 1);
  // 1/6 of a CPU per second at load 6: a CPU-bound process.
  assertEquals(m.demand(1, 50 + 100 / 6, 1, 102, 100, 6), 1);
  // Asleep.
  assertEquals(m.demand(1, 50 + 100 / 6, 1, 103, 100, 6), 0);
  // Two threads on an idle node.
  assertEquals(m.demand(2, 0, 2, 100, 99, 0.5), 0);
  assertEquals(m.demand(2, 200, 2, 101, 99, 0.5), 2);
  assertEquals(m.demand(2, 800, 2, 102, 99, 0.5), 2);
  m.keep([2]);
  // Forgotten: the next look starts again from its start here.
  assertEquals(m.demand(1, 100, 1, 110, 100, 1), 0.1);
});

Deno.test("agent facts: with schedstat times, demand is run plus wait time per second", () => {
  const m = new DemandMeter(0);
  // First look: 0.9 s of run+wait in the 1 s since it arrived.
  assertEquals(m.demand(1, 30, 1, 101, 100, 0.5, 0.9e9), 0.9);
  // A CPU-bound process that got a third of a CPU (TCG steal, or sharing) but was never asleep.
  assertEquals(m.demand(1, 30 + 100 / 3, 1, 102, 100, 0.5, 1.9e9), 1);
  // Asleep: neither ran nor waited.
  assertEquals(m.demand(1, 30 + 100 / 3, 1, 104, 100, 0.5, 1.9e9), 0);
  // A thread ended (the sum shrank): this look falls back to the CPU share.
  assertEquals(m.demand(1, 30 + 100 / 3 + 50, 1, 105, 100, 2, 1.0e9), 1);
});

Deno.test("agent facts: demand is measured over the window, not the last second", () => {
  const m = new DemandMeter(10);
  m.demand(1, 0, 1, 100, 90, 1, 10e9);
  // A second in which its wait had not shown yet reads low alone, but the window holds it.
  for (let t = 101; t <= 110; t++) m.demand(1, 0, 1, t, 90, 1, (10 + (t - 100)) * 1e9);
  // (Over the last second alone: 0.2.)
  assertEquals(m.demand(1, 0, 1, 111, 90, 1, 20.2e9), 0.92);
  // The wait shows once it is over; measured from 102 on (at most its one thread).
  assertEquals(m.demand(1, 0, 1, 112, 90, 1, 22.2e9), 1);
});

Deno.test("agent facts: the load reader's run and wait times give the demand where they cover a process", async () => {
  const entry = (pid: number): ProcessEntry => ({
    origin: { node: "n1", pid },
    current: { node: "n1", pid },
    moves: 0,
    direction: "local",
    managed: true,
    name: `job${pid}`,
    startedAt: 100,
    arrivedAt: 100,
  });
  const views = await processViews([entry(1), entry(2)], {
    // Both got a tenth of a CPU for 10 s (its CPU share, what the meter sees) at load 1.5.
    facts: (pid) => Promise.resolve(facts(pid, { state: "R", cpuTicks: 100 })),
    startedHere: () => 100,
    meter: new DemandMeter(),
    schedstats: {
      demand: (pid) => pid === 1 ? { demand: 0.98, span: 10.04 } : undefined,
      runWait: (pid) => pid === 1 ? 10e9 : undefined,
    },
    busy: new Set(),
    now: 110,
    load: 1.5,
  });
  // 1: the reader's window; 2 (not covered): the meter's estimate since it started.
  assertEquals(views.map((v) => [v.pid, v.demand, v.demandSpan]), [
    [1, 0.98, 10],
    [2, 0.15, undefined],
  ]);
});

Deno.test("agent ops: wait follows a process that came back and ended here", async () => {
  await withAgent({}, async (ask, table) => {
    await ask({ op: "manage", pid: 42 });
    await ask({ op: "migrate", pid: 42, to: "node2" });
    // It comes back: it runs here again, under the agent, not under `ppm run`.
    table.arrived({
      pid: 42,
      from: "node2",
      origin: { node: "node1", pid: 42 },
      moves: 2,
      at: new Date().toISOString(),
      name: "job",
    });
    assertEquals(await ask({ op: "wait", pid: 42, timeoutMs: 50 }), {
      state: "elsewhere",
      node: "node1",
    });
    // It ends here; the news goes round (node2 passes it back on the first move's connection).
    const exit = { code: 0, node: "node1", at: new Date().toISOString() };
    table.ended(42, exit);
    assertEquals(
      (await ask({ op: "wait", pid: 42, timeoutMs: 50 }) as WaitAnswer).state,
      "elsewhere",
    );
    table.exitedElsewhere(42, exit);
    table.relayEnded(42);
    assertEquals(await ask({ op: "wait", pid: 42, timeoutMs: 50 }), { state: "exited", exit });
  });
});
