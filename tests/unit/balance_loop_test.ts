/**
 * The agent's balancing loop (core/agent/balancer.ts) with an injected clock,
 * readings, peers and move function: one node with six CPU-bound managed
 * processes and two idle peers ends at 2/2/2 and stays there; failed moves,
 * dry runs, drain and a disabled balancer.
 */
import {
  Balancer,
  type BalancerDeps,
  HOLD_BACK_MAX_SECONDS,
  HOLD_BACK_SECONDS,
  holdBack,
} from "../../core/agent/balancer.ts";
import type { MoveReason } from "../../core/agent/processes.ts";
import { resolveBalanceSettings } from "../../core/balance/settings.ts";
import type { LoadSample, PeerView, ProcessView } from "../../core/balance/types.ts";
import { EXIT, PpmError } from "../../core/errors.ts";
import { assert, assertEquals, assertRejects } from "../support/assert.ts";

const GiB = 2 ** 30;

/** A fake cluster seen from node n1: its processes, the peers' counts, the clock. */
class World {
  now = 1000;
  here: number[] = [];
  on: Record<string, number> = { n2: 0, n3: 0 };
  moves: { pid: number; to: string; why: MoveReason }[] = [];
  tried: number[] = [];
  failTo = new Set<string>();
  draining = false;
  cordoned = false;

  constructor(n: number) {
    for (let i = 0; i < n; i++) this.here.push(100 + i);
  }

  deps(enabled: boolean): BalancerDeps {
    return {
      node: "n1",
      settings: resolveBalanceSettings({ minResidency: 20 }),
      enabled,
      now: () => this.now,
      sample: () => Promise.resolve(this.sample()),
      peers: () => this.peers(),
      processes: () => Promise.resolve(this.processes()),
      move: (pid, to, why) => {
        this.tried.push(pid);
        if (this.failTo.has(to)) {
          return Promise.reject(new PpmError("the migration did not happen", "refused"));
        }
        this.here = this.here.filter((p) => p !== pid);
        this.on[to]++;
        this.moves.push({ pid, to, why });
        return Promise.resolve({ pid });
      },
      draining: () => this.draining,
      cordoned: () => this.cordoned,
      incoming: () => ({ load: 0, memory: 0 }),
      log: () => {},
    };
  }

  sample(): LoadSample {
    return {
      at: this.now,
      runnable: this.here.length,
      cpus: 1,
      speed: 1,
      loadavg: [0, 0, 0],
      memTotal: 4 * GiB,
      memAvailable: 3 * GiB,
    };
  }

  /** The peers announce every second what they run (measured a moment ago). */
  peers(): PeerView[] {
    return Object.entries(this.on).map(([id, n]) => ({
      id,
      load: n,
      cpus: 1,
      speed: 1,
      memTotal: 4 * GiB,
      memAvailable: 3 * GiB,
      drain: false,
      at: this.now - 0.5,
    }));
  }

  processes(): ProcessView[] {
    return this.here.map((pid) => ({
      pid,
      managed: true,
      demand: 1,
      memory: 8 << 20,
      startedAt: 900,
      arrivedAt: 900,
      moves: 0,
    }));
  }
}

Deno.test("balance loop: six CPU-bound processes on one of three nodes end 2/2/2 and stay", async () => {
  const w = new World(6);
  const b = new Balancer(w.deps(true));
  const perTick: number[] = [];
  for (let i = 0; i < 120; i++) {
    const before = w.moves.length;
    await b.tick();
    perTick.push(w.moves.length - before);
    w.now += 1;
  }
  assertEquals([w.here.length, w.on.n2, w.on.n3], [2, 2, 2], JSON.stringify(w.moves));
  assertEquals(w.moves.length, 4, "one move per process that had to go");
  // At most one process per peer before its announcement shows it.
  assert(perTick.every((n) => n <= 2), perTick.join(","));
  const last = perTick.findLastIndex((n) => n > 0);
  assert(last < 20, `still moving at tick ${last}`);
  for (const m of w.moves) {
    assertEquals(m.why.kind, "balance");
    if (m.why.kind === "balance") {
      assertEquals([m.why.mode, m.why.record.target.id, m.why.record.process.pid], [
        "load",
        m.to,
        m.pid,
      ]);
      assert(m.why.record.margin.holds && m.why.record.ratio >= 2, JSON.stringify(m.why.record));
    }
  }
});

Deno.test("balance loop: a failed move does not count as sent; that process is held back a while", async () => {
  const w = new World(3);
  w.failTo.add("n2");
  w.on.n3 = 5; // only n2 is a target
  const b = new Balancer(w.deps(true));
  for (let i = 0; i < 6; i++) {
    await b.tick();
    w.now += 1;
  }
  // Each process was tried once (a failed one is not chosen again every round), none moved.
  assertEquals(w.moves.length, 0);
  assertEquals([...w.tried].sort(), [100, 101, 102]);
  w.failTo.clear();
  await b.tick();
  assertEquals(w.moves.length, 0);
  const report = await b.round({ dryRun: true });
  assert(report.processes.every((p) => /move to n2 failed .*refused/.test(p.heldBack ?? "")));
  // Once the hold-back is over it is tried again, and moves.
  w.now += HOLD_BACK_SECONDS;
  await b.tick();
  assertEquals(w.moves.map((m) => m.to), ["n2"]);
});

Deno.test("balance loop: a process whose moves keep failing waits twice as long each time", async () => {
  assertEquals([1, 2, 3, 10].map(holdBack), [10, 20, 40, HOLD_BACK_MAX_SECONDS]);
  const w = new World(2);
  w.failTo.add("n2");
  w.on.n3 = 5;
  const b = new Balancer(w.deps(true));
  const triedAt: number[] = [];
  for (let i = 0; i < 80; i++) {
    const before = w.tried.filter((p) => p === 100).length;
    await b.tick();
    if (w.tried.filter((p) => p === 100).length > before) triedAt.push(w.now - 1000);
    w.now += 1;
  }
  // Process 100: tried, then again after 10, 20 and 40 s of pause.
  assertEquals(triedAt.slice(1).map((t, i) => t - triedAt[i]), [10, 20, 40]);
});

Deno.test("balance loop: a dry run moves nothing and changes nothing", async () => {
  const w = new World(6);
  const b = new Balancer(w.deps(false));
  await b.measure();
  await b.measure();
  const a = await b.round({ dryRun: true });
  const again = await b.round({ dryRun: true });
  assertEquals(a, again);
  assertEquals(w.moves.length, 0);
  assert(a.decisions.length >= 1, JSON.stringify(a.round));
  assertEquals(a.dryRun, true);
  assertEquals(a.outcomes, []);
  assertEquals(a.processes.length, 6);
  // Carried out, it moves what the dry run showed.
  const done = await b.round({ dryRun: false });
  assertEquals(done.decisions.map((d) => [d.pid, d.to]), a.decisions.map((d) => [d.pid, d.to]));
  assert(done.outcomes.every((o) => o.ok));
});

Deno.test("balance loop: off, it only measures; draining, it sends every managed process away", async () => {
  const w = new World(2);
  const b = new Balancer(w.deps(false));
  for (let i = 0; i < 5; i++) {
    assertEquals(await b.tick(), undefined);
    w.now += 1;
  }
  assertEquals(w.moves.length, 0);
  assert(b.tracker.localLoad > 1);
  w.draining = true;
  for (let i = 0; i < 5 && w.here.length; i++) {
    await b.tick();
    w.now += 1;
  }
  assertEquals(w.here, []);
  assert(w.moves.every((m) => m.why.kind === "balance" && m.why.mode === "drain"));
  // The announcement says so.
  assertEquals(b.tracker.announcement(true).drain, true);
});

Deno.test("balance loop: cordoned, an overloaded node sends nothing away and only measures", async () => {
  const w = new World(6);
  w.cordoned = true;
  const b = new Balancer(w.deps(true));
  for (let i = 0; i < 40; i++) {
    assertEquals(await b.tick(), undefined);
    w.now += 1;
  }
  assertEquals(w.moves.length, 0);
  assert(b.tracker.localLoad > 1);
  // Uncordoned, it balances again.
  w.cordoned = false;
  for (let i = 0; i < 60 && w.moves.length === 0; i++) {
    await b.tick();
    w.now += 1;
  }
  assert(w.moves.length > 0, "no move once the cordon ended");
});

Deno.test("balance loop: one round at a time", async () => {
  const w = new World(6);
  const deps = w.deps(true);
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const move = deps.move;
  deps.move = async (pid, to, why) => {
    await gate;
    return move(pid, to, why);
  };
  const b = new Balancer(deps);
  await b.measure();
  const first = b.round({ dryRun: false });
  await new Promise((r) => setTimeout(r, 10));
  assert(b.executing);
  await assertRejects(() => b.round({ dryRun: false }));
  try {
    await b.round({ dryRun: false });
  } catch (e) {
    assertEquals((e as PpmError).exitCode, EXIT.BUSY);
  }
  // A tick meanwhile only measures.
  assertEquals(await b.tick(), undefined);
  release();
  await first;
  assert(!b.executing);
});
