/**
 * The balancing policy on a simulated cluster (tests/balance/simulator.ts):
 * spreading, no bouncing, no flooding of a new node, tolerance of noisy
 * readings, quiet when balanced, unmanaged processes and drain. Every run is
 * seeded and bounded; the figures are printed for docs/balancing.md.
 */
import { assert, assertEquals } from "../support/assert.ts";
import { type Figures, Simulator } from "../balance/simulator.ts";

/** The spreading scenario: 1,000 jobs on one node of 100. */
interface Spread {
  /** Rounds until the most loaded node carries at most 1.25 × the mean. */
  reached: number;
  /** Migrations until then. */
  migrationsToReach: number;
  /** The worst max/mean over the 60 rounds after. */
  worstAfter: number;
  /** Figures after those 60 more rounds. */
  figures: Figures;
  /** The simulator, for looking at single jobs. */
  sim: Simulator;
}

const SEED = 1;
const MAX_ROUNDS = 120;
const SETTLE = 60;
const spreads = new Map<string, Spread>();

function spread(noise: number, announce: "broadcast" | "gossip" = "broadcast", max = MAX_ROUNDS) {
  const key = `${announce}/${noise}`;
  const done = spreads.get(key);
  if (done) return done;
  const t0 = performance.now();
  const sim = new Simulator({ seed: SEED, nodes: 100, noise, announce });
  sim.addJobs("n000", 1000);
  const reached = sim.run(max, (s) => s.maxOverMean <= 1.25);
  const migrationsToReach = sim.migrations;
  let worstAfter = 0;
  sim.run(SETTLE, (s) => {
    worstAfter = Math.max(worstAfter, s.maxOverMean);
    return false;
  });
  const figures = sim.print(`spread 1000 jobs from 1 of 100 nodes (${announce}, noise ${noise})`, {
    reached,
    migrationsToReach,
    worstAfter: Math.round(worstAfter * 1000) / 1000,
    ms: Math.round(performance.now() - t0),
  });
  const result = { reached, migrationsToReach, worstAfter, figures, sim };
  spreads.set(key, result);
  return result;
}

Deno.test("balance sim 1: 1,000 jobs on one of 100 nodes spread to ≤ 1.25 × the mean", () => {
  const r = spread(0);
  assert(
    r.sim.maxOverMean() <= 1.25 && r.reached < MAX_ROUNDS,
    `not spread after ${MAX_ROUNDS} rounds`,
  );
  console.log(`  reached in ${r.reached} rounds with ${r.migrationsToReach} migrations`);
  // At least 1000 − 12 jobs had to leave n000; the policy should not need many more.
  assert(r.migrationsToReach >= 988 && r.migrationsToReach <= 1100, `${r.migrationsToReach}`);
  assert(r.worstAfter <= 1.25, `max/mean rose again to ${r.worstAfter}`);
  assertEquals(r.figures.jobsPerNode.mean, 10);
});

Deno.test("balance sim 2: no job moves more than 3 times, none goes A → B → A within residency", () => {
  const r = spread(0);
  assert(r.figures.maxMoves <= 3, `a job moved ${r.figures.maxMoves} times`);
  const residency = r.sim.settings.minResidency;
  for (const job of r.sim.jobs) {
    for (let i = 1; i < job.moves.length; i++) {
      const [a, b] = [job.moves[i - 1], job.moves[i]];
      assert(b.at - a.arrival >= residency, `job ${job.id} left ${b.from} before ${residency} s`);
      assert(!(b.to === a.from && b.at - a.arrival < residency), `job ${job.id} bounced`);
    }
  }
  assertEquals(r.figures.bounces.withinResidency, 0);
});

Deno.test("balance sim 3: an idle node joining gets no more than its fair share in a round", () => {
  const sim = new Simulator({ seed: SEED, nodes: 10 });
  for (const n of sim.nodes) sim.addJobs(n.id, 10);
  sim.run(30);
  assertEquals(sim.migrations, 0, "the ten nodes are balanced before the join");
  const id = sim.addNode();
  const fair = 100 / 11;
  const inflow: number[] = [];
  sim.run(60, (s) => {
    inflow.push(s.inflow.get(id) ?? 0);
    return false;
  });
  sim.print("join: 10 nodes × 10 jobs, then an idle node", {
    inflowByRound: inflow.filter((x) => x > 0),
    final: sim.jobCounts().get(id),
  });
  assert(Math.max(...inflow) <= Math.ceil(fair), `received ${Math.max(...inflow)} in one round`);
  const final = sim.jobCounts().get(id)!;
  assert(Math.abs(final - fair) <= 1, `ends with ${final} jobs, fair share ${fair.toFixed(2)}`);
  assert(sim.maxOverMean() <= 1.25);
  // Thirty nodes with 3 jobs each and room for 90/31 ≈ 2.9 on the newcomer: the senders
  // share that room (damping) instead of all sending one job each.
  const small = new Simulator({ seed: SEED, nodes: 30 });
  for (const n of small.nodes) small.addJobs(n.id, 3);
  small.run(30);
  const late = small.addNode();
  let most = 0;
  small.run(60, (s) => {
    most = Math.max(most, s.inflow.get(late) ?? 0);
    return false;
  });
  small.print("join: 30 nodes × 3 jobs, then an idle node", {
    mostInOneRound: most,
    final: small.jobCounts().get(late),
  });
  assert(most <= 4, `30 senders put ${most} jobs on the newcomer in one round`);
});

Deno.test("balance sim 4: ±20 % noise on the readings adds few migrations", () => {
  const quiet = spread(0);
  const noisy = spread(0.2);
  assert(noisy.reached < MAX_ROUNDS, "noisy run spreads in time too");
  // Bound: at most 15 % more migrations than the noise-free run over the same rounds and
  // seed. Why 15 %: ±20 % of 10 jobs is ±2 jobs, more than the margin (1.3 jobs), so a
  // misreading can trigger a real move; the asymmetric filters make the local load read
  // low and the peers' read high, which absorbs most of it. Measured over seeds 1-6:
  // +5 to +9 % to reach 1.25 × the mean, +9 to +11 % including the 60 rounds after.
  const extra = noisy.figures.migrations - quiet.figures.migrations;
  console.log(
    `  noise-free ${quiet.figures.migrations}, noisy ${noisy.figures.migrations}: ${extra} extra (${
      (100 * extra / quiet.figures.migrations).toFixed(1)
    } %)`,
  );
  assert(
    noisy.figures.migrations <= quiet.figures.migrations * 1.15,
    `${extra} extra migrations`,
  );
  assert(noisy.figures.maxMoves <= 5, `a job moved ${noisy.figures.maxMoves} times`);
  assertEquals(noisy.figures.bounces.withinResidency, 0);
});

Deno.test("balance sim 5: a balanced cluster stays still, with or without moderate noise", () => {
  for (const noise of [0, 0.1]) {
    const sim = new Simulator({ seed: SEED, nodes: 20, noise });
    for (const n of sim.nodes) sim.addJobs(n.id, 10);
    sim.run(300);
    sim.print(`steady: 20 nodes × 10 jobs for 300 rounds, noise ${noise}`);
    assertEquals(sim.migrations, 0, `noise ${noise}`);
  }
  // Noise beyond the margin moves a few jobs, and the cluster stays balanced.
  const sim = new Simulator({ seed: SEED, nodes: 20, noise: 0.2 });
  for (const n of sim.nodes) sim.addJobs(n.id, 10);
  let worst = 1;
  sim.run(300, (s) => {
    worst = Math.max(worst, s.maxOverMean);
    return false;
  });
  sim.print("steady: 20 nodes × 10 jobs for 300 rounds, noise 0.2", { worst });
  assert(sim.migrations <= 20 && worst <= 1.25, `${sim.migrations} migrations, worst ${worst}`);
});

Deno.test("balance sim 5: unmanaged jobs never move", () => {
  const sim = new Simulator({ seed: SEED, nodes: 10 });
  sim.addJobs("n000", 40, { managed: false });
  sim.addJobs("n000", 20);
  sim.run(60);
  sim.print("unmanaged: 40 unmanaged + 20 managed jobs on one of 10 nodes");
  const moved = sim.jobs.filter((j) => j.moves.length > 0);
  assert(moved.every((j) => j.managed), "an unmanaged job moved");
  assertEquals(sim.jobs.filter((j) => !j.managed && j.node !== "n000").length, 0);
  assertEquals(sim.jobs.filter((j) => j.managed && j.node === "n000").length, 0);
});

Deno.test("balance sim 5: drain empties a node and nothing lands on it", () => {
  const sim = new Simulator({ seed: SEED, nodes: 10 });
  for (const n of sim.nodes) sim.addJobs(n.id, 10);
  sim.run(10);
  sim.setDrain("n003", true);
  const drainedAt = sim.now;
  const rounds = sim.run(60, () => (sim.jobCounts().get("n003") ?? 0) === 0);
  sim.run(5);
  sim.print("drain: 10 nodes × 10 jobs, n003 drains", { drainedInRounds: rounds });
  assertEquals(sim.jobCounts().get("n003"), 0);
  assert(rounds <= 5, `drained in ${rounds} rounds`);
  const landed = sim.jobs.flatMap((j) => j.moves).filter((m) => m.to === "n003");
  assertEquals(landed.filter((m) => m.at >= drainedAt).length, 0);
  assert(sim.figures().jobsPerNode.max <= 12);
});

Deno.test("balance sim: mixed CPUs and speeds balance by capacity", () => {
  const sim = new Simulator({ seed: SEED, nodes: 0 });
  for (let i = 0; i < 40; i++) sim.addNode({ cpus: i % 2 ? 4 : 1, speed: i % 4 === 0 ? 2 : 1 });
  sim.addJobs("n001", 600);
  const reached = sim.run(MAX_ROUNDS, (s) => s.maxOverMean <= 1.25);
  sim.run(SETTLE);
  const f = sim.print("mixed: 600 jobs on 40 nodes of 1 or 4 CPUs, speed 1 or 2", { reached });
  assert(reached < MAX_ROUNDS && f.maxOverMean <= 1.25 && f.maxMoves <= 3);
});

Deno.test("balance sim: MOSIX-style gossip spreads too, with more hops", () => {
  const r = spread(0, "gossip", 300);
  assert(r.reached < 300, "gossip run spreads");
  assertEquals(r.figures.bounces.withinResidency, 0);
});
