/**
 * A deterministic simulator of many nodes running the real balancing policy
 * (`core/balance`), for the tests and for the figures in docs/balancing.md.
 *
 * Model:
 * - Time advances in rounds of one announcement interval (settings.interval).
 * - Jobs are CPU-bound (demand 1, so load 1 on a 1-CPU node) and never end;
 *   each has a memory size. Unmanaged jobs count in the load but never move.
 * - A round: (1) migrations whose transfer has finished land; (2) every node
 *   measures its runnable jobs (optionally with noise) and feeds its
 *   LoadTracker, the work on its way in counted in the exported load; (3)
 *   every node runs `decide` with its own view of its peers; (4) migrations
 *   start: the receiver checks with `admit`, the job leaves its node at once
 *   and lands after overhead + memory / bandwidth, the sender's link sending
 *   one image at a time; (5) every node announces its load.
 * - Announcements (choose per run): "broadcast" delivers every node's
 *   announcement to every other node (what a discovery multicast does);
 *   "gossip" is MOSIX's scheme: every node sends its own announcement plus
 *   the freshest half of its window to one random node, and keeps a window of
 *   the `gossipWindow` freshest entries. Either way, what a node sends in
 *   round r is used from round r + 1.
 * - Randomness: the policy's from `roundRng(node, round, seed)`; gossip peers
 *   and noise from their own seeded streams, so a noisy run and a quiet run on
 *   the same seed differ only in the readings.
 *
 * @module
 */
import { admit } from "../../core/balance/admission.ts";
import { capacity } from "../../core/balance/load.ts";
import { decide } from "../../core/balance/policy.ts";
import { mulberry32, roundRng, seedFrom } from "../../core/balance/rng.ts";
import { type BalanceSettings, resolveBalanceSettings } from "../../core/balance/settings.ts";
import { LoadTracker } from "../../core/balance/tracker.ts";
import {
  type BalanceState,
  initialBalanceState,
  type PeerView,
  type ProcessView,
  type Rng,
} from "../../core/balance/types.ts";

/** How announcements travel. */
export type AnnounceMode = "broadcast" | "gossip";

/** Options of a {@link Simulator}. */
export interface SimOptions {
  /** Seed of every random choice. */
  seed: number;
  /** Nodes at the start (more can join with addNode). */
  nodes: number;
  /** CPUs per node (default 1). */
  cpus?: number;
  /** Relative speed per node (default 1). */
  speed?: number;
  /** Memory per node in bytes (default 64 GiB). */
  memory?: number;
  /** How announcements travel (default "broadcast"). */
  announce?: AnnounceMode;
  /** Gossip: entries a node keeps (default 16). */
  gossipWindow?: number;
  /** Link bandwidth in bytes per second (default 1.25e9, 10 Gb/s). */
  bandwidth?: number;
  /** Relative noise on runnable counts: 0.2 reads ±20 % (default 0). */
  noise?: number;
  /** Settings overrides. */
  settings?: Record<string, number>;
}

/** One move of a job. */
export interface Move {
  /** From node. */
  from: string;
  /** To node. */
  to: string;
  /** Decided at (seconds). */
  at: number;
  /** Landed at (seconds). */
  arrival: number;
}

/** A simulated job. */
export interface SimJob {
  /** Its id (also its pid in the policy's view). */
  id: number;
  /** The node it runs on, or the node it is travelling to. */
  node: string;
  /** True while in transit. */
  inFlight: boolean;
  /** Landing time while in transit. */
  arrival: number;
  /** Memory in bytes. */
  memory: number;
  /** Managed by ppm. */
  managed: boolean;
  /** Start time. */
  startedAt: number;
  /** When it started on or landed at its node. */
  arrivedAt: number;
  /** Its moves, in order. */
  moves: Move[];
}

/** A simulated node. */
export interface SimNode {
  /** Its id, n000, n001, ... */
  id: string;
  /** CPUs. */
  cpus: number;
  /** Relative speed. */
  speed: number;
  /** Memory in bytes. */
  memTotal: number;
  /** Draining. */
  drain: boolean;
  /** Its loads. */
  tracker: LoadTracker;
  /** The policy's state between rounds. */
  state: BalanceState;
  /** Its peers' last announcements as it knows them. */
  view: Map<string, PeerView>;
  /** When its link finishes the transfers queued on it. */
  linkFree: number;
}

/** What one round did. */
export interface RoundStats {
  /** Round number. */
  round: number;
  /** Migrations started. */
  migrations: number;
  /** Offers the receiver refused. */
  refused: number;
  /** Migrations started to each node this round. */
  inflow: Map<string, number>;
  /** Most loaded node's jobs per capacity over the mean, after the round. */
  maxOverMean: number;
}

/** The figures of a run. */
export interface Figures {
  /** Rounds run. */
  rounds: number;
  /** Migrations started. */
  migrations: number;
  /** Offers refused by receivers. */
  refused: number;
  /** max / mean of jobs per capacity over the non-draining nodes. */
  maxOverMean: number;
  /** Jobs per node: min, max, mean. */
  jobsPerNode: { min: number; max: number; mean: number };
  /** Number of jobs by number of moves. */
  movesHistogram: Record<number, number>;
  /** Most moves of one job. */
  maxMoves: number;
  /** A → B → A moves, in total and within minResidency of landing on B. */
  bounces: { total: number; withinResidency: number };
  /** Largest number of migrations started to one node in one round. */
  maxInflow: number;
}

/** The simulator. Every loop in it is bounded by the nodes, jobs or rounds given. */
export class Simulator {
  /** The settings every node uses. */
  readonly settings: BalanceSettings;
  /** The nodes, in the order they joined. */
  readonly nodes: SimNode[] = [];
  /** Every job, by id − 1. */
  readonly jobs: SimJob[] = [];
  /** Rounds run so far. */
  round = 0;
  /** Migrations started so far. */
  migrations = 0;
  /** Offers refused so far. */
  refused = 0;
  /** Most migrations started to one node in one round so far. */
  maxInflow = 0;
  readonly #opt: Required<Omit<SimOptions, "settings">>;
  readonly #noise: Rng;
  readonly #gossip: Rng;
  readonly #mem: Rng;
  readonly #index = new Map<string, SimNode>();

  /** A cluster of `options.nodes` idle nodes at time 0. */
  constructor(options: SimOptions) {
    this.settings = resolveBalanceSettings(options.settings);
    this.#opt = {
      seed: options.seed,
      nodes: options.nodes,
      cpus: options.cpus ?? 1,
      speed: options.speed ?? 1,
      memory: options.memory ?? 64 * 2 ** 30,
      announce: options.announce ?? "broadcast",
      gossipWindow: options.gossipWindow ?? 16,
      bandwidth: options.bandwidth ?? 1.25e9,
      noise: options.noise ?? 0,
    };
    this.#noise = mulberry32(seedFrom("noise", options.seed));
    this.#gossip = mulberry32(seedFrom("gossip", options.seed));
    this.#mem = mulberry32(seedFrom("memory", options.seed));
    for (let i = 0; i < options.nodes; i++) this.addNode();
  }

  /** The current time in seconds. */
  get now(): number {
    return this.round * this.settings.interval;
  }

  /** Adds an idle node; it announces itself at the end of the current round. */
  addNode(opts: { cpus?: number; speed?: number; memory?: number } = {}): string {
    const id = `n${String(this.nodes.length).padStart(3, "0")}`;
    const node: SimNode = {
      id,
      cpus: opts.cpus ?? this.#opt.cpus,
      speed: opts.speed ?? this.#opt.speed,
      memTotal: opts.memory ?? this.#opt.memory,
      drain: false,
      tracker: new LoadTracker(id, this.settings),
      state: initialBalanceState(),
      view: new Map(),
      linkFree: 0,
    };
    this.nodes.push(node);
    this.#index.set(id, node);
    return id;
  }

  /** Starts `count` jobs on `node` now, memory uniform in [min, max] MiB. */
  addJobs(
    node: string,
    count: number,
    opts: { minMiB?: number; maxMiB?: number; managed?: boolean } = {},
  ): void {
    const min = opts.minMiB ?? 4;
    const max = opts.maxMiB ?? 64;
    for (let i = 0; i < count; i++) {
      const mib = min + Math.floor(this.#mem() * (max - min + 1));
      this.jobs.push({
        id: this.jobs.length + 1,
        node,
        inFlight: false,
        arrival: 0,
        memory: mib * 2 ** 20,
        managed: opts.managed ?? true,
        startedAt: this.now,
        arrivedAt: this.now,
        moves: [],
      });
    }
  }

  /** Puts a node in drain mode (or takes it out). */
  setDrain(node: string, drain: boolean): void {
    this.#node(node).drain = drain;
  }

  /** Jobs per node, those in transit counted at their destination. */
  jobCounts(): Map<string, number> {
    const counts = new Map(this.nodes.map((n) => [n.id, 0]));
    for (const j of this.jobs) counts.set(j.node, (counts.get(j.node) ?? 0) + 1);
    return counts;
  }

  /** Most loaded node's jobs per capacity over the mean, over non-draining nodes. */
  maxOverMean(): number {
    const counts = this.jobCounts();
    let work = 0;
    let cap = 0;
    let max = 0;
    for (const n of this.nodes) {
      if (n.drain) continue;
      const c = capacity(n.cpus, n.speed);
      const jobs = counts.get(n.id) ?? 0;
      work += jobs;
      cap += c;
      max = Math.max(max, jobs / c);
    }
    return work === 0 ? 1 : max / (work / cap);
  }

  /** Runs one round. */
  step(): RoundStats {
    const now = this.now;
    const s = this.settings;
    for (const j of this.jobs) {
      if (j.inFlight && j.arrival <= now) {
        j.inFlight = false;
        j.arrivedAt = j.arrival;
      }
    }
    const resident = new Map<string, SimJob[]>(this.nodes.map((n) => [n.id, []]));
    const incoming = new Map<string, { load: number; memory: number }>();
    for (const j of this.jobs) {
      if (!j.inFlight) {
        resident.get(j.node)!.push(j);
        continue;
      }
      const n = this.#node(j.node);
      const inc = incoming.get(j.node) ?? { load: 0, memory: 0 };
      inc.load += 1 / capacity(n.cpus, n.speed);
      inc.memory += j.memory;
      incoming.set(j.node, inc);
    }
    for (const n of this.nodes) {
      const jobs = resident.get(n.id)!;
      const used = jobs.reduce((a, j) => a + j.memory, 0);
      const noise = this.#opt.noise > 0 ? 1 + this.#opt.noise * (2 * this.#noise() - 1) : 1;
      n.tracker.observe({
        at: now,
        runnable: jobs.length * noise,
        cpus: n.cpus,
        speed: n.speed,
        loadavg: [0, 0, 0],
        memTotal: n.memTotal,
        memAvailable: Math.max(0, n.memTotal - used),
      }, incoming.get(n.id));
    }
    const decided = [];
    for (const n of this.nodes) {
      const procs: ProcessView[] = resident.get(n.id)!.map((j) => ({
        pid: j.id,
        managed: j.managed,
        demand: 1,
        memory: j.memory,
        startedAt: j.startedAt,
        arrivedAt: j.arrivedAt,
        moves: j.moves.length,
        cameFrom: j.moves.at(-1)?.from,
      }));
      const result = decide({
        local: n.tracker.localView(n.drain, Math.max(0, n.linkFree - now)),
        peers: [...n.view.values()],
        processes: procs,
        settings: s,
        now,
        rng: roundRng(n.id, this.round, this.#opt.seed),
        state: n.state,
      });
      n.state = result.state;
      decided.push(...result.decisions);
    }
    const byId = new Map(this.jobs.map((j) => [j.id, j]));
    const inflow = new Map<string, number>();
    let migrations = 0;
    let refused = 0;
    for (const d of decided) {
      const job = byId.get(d.pid)!;
      const from = this.#node(d.from);
      const to = this.#node(d.to);
      const view = to.tracker.localView(to.drain);
      view.memAvailable -= incoming.get(to.id)?.memory ?? 0;
      const answer = admit(view, job.memory, s);
      if (!answer.accept) {
        refused++;
        continue;
      }
      const start = Math.max(now, from.linkFree);
      from.linkFree = start + job.memory / this.#opt.bandwidth;
      job.arrival = from.linkFree + s.migrationOverhead;
      job.inFlight = true;
      job.node = to.id;
      job.moves.push({ from: from.id, to: to.id, at: now, arrival: job.arrival });
      const load = 1 / capacity(to.cpus, to.speed);
      to.tracker.accepted({ load, memory: job.memory });
      const inc = incoming.get(to.id) ?? { load: 0, memory: 0 };
      incoming.set(to.id, { load: inc.load + load, memory: inc.memory + job.memory });
      inflow.set(to.id, (inflow.get(to.id) ?? 0) + 1);
      migrations++;
    }
    this.#announce();
    this.migrations += migrations;
    this.refused += refused;
    for (const v of inflow.values()) this.maxInflow = Math.max(this.maxInflow, v);
    this.round++;
    return { round: this.round - 1, migrations, refused, inflow, maxOverMean: this.maxOverMean() };
  }

  /**
   * Runs rounds until `done` holds after a round or `maxRounds` rounds have run;
   * returns the rounds run.
   */
  run(maxRounds: number, done: (stats: RoundStats) => boolean = () => false): number {
    for (let i = 1; i <= maxRounds; i++) {
      if (done(this.step())) return i;
    }
    return maxRounds;
  }

  /** The figures so far. */
  figures(): Figures {
    const counts = [...this.jobCounts().entries()]
      .filter(([id]) => !this.#node(id).drain).map(([, c]) => c);
    const movesHistogram: Record<number, number> = {};
    let maxMoves = 0;
    let total = 0;
    let withinResidency = 0;
    for (const j of this.jobs) {
      const m = j.moves.length;
      movesHistogram[m] = (movesHistogram[m] ?? 0) + 1;
      maxMoves = Math.max(maxMoves, m);
      for (let i = 1; i < j.moves.length; i++) {
        const a = j.moves[i - 1];
        const b = j.moves[i];
        if (b.to !== a.from) continue;
        total++;
        if (b.at - a.arrival < this.settings.minResidency) withinResidency++;
      }
    }
    return {
      rounds: this.round,
      migrations: this.migrations,
      refused: this.refused,
      maxOverMean: Math.round(this.maxOverMean() * 1000) / 1000,
      jobsPerNode: {
        min: Math.min(...counts),
        max: Math.max(...counts),
        mean: Math.round((counts.reduce((a, b) => a + b, 0) / counts.length) * 100) / 100,
      },
      movesHistogram,
      maxMoves,
      bounces: { total, withinResidency },
      maxInflow: this.maxInflow,
    };
  }

  /** Prints the figures under a title. */
  print(title: string, extra: Record<string, unknown> = {}): Figures {
    const f = this.figures();
    console.log(`${title}: ${JSON.stringify({ ...extra, ...f })}`);
    return f;
  }

  #node(id: string): SimNode {
    const n = this.#index.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  #announce(): void {
    const bw = this.#opt.bandwidth;
    const anns: PeerView[] = this.nodes.map((n) => ({
      ...n.tracker.announcement(n.drain),
      bandwidth: bw,
    }));
    if (this.#opt.announce === "broadcast") {
      for (const n of this.nodes) {
        for (const a of anns) if (a.id !== n.id) n.view.set(a.id, a);
      }
      return;
    }
    // Gossip: own announcement plus the freshest half of the window, to one random node.
    const w = this.#opt.gossipWindow;
    const messages: { to: SimNode; entries: PeerView[] }[] = [];
    for (let i = 0; i < this.nodes.length; i++) {
      if (this.nodes.length < 2) break;
      const n = this.nodes[i];
      let k = Math.floor(this.#gossip() * (this.nodes.length - 1));
      if (k >= i) k++;
      const fresh = [...n.view.values()].sort((a, b) => b.at - a.at).slice(0, Math.floor(w / 2));
      messages.push({ to: this.nodes[k], entries: [anns[i], ...fresh] });
    }
    for (const m of messages) {
      for (const e of m.entries) {
        if (e.id === m.to.id) continue;
        const seen = m.to.view.get(e.id);
        if (!seen || e.at > seen.at) m.to.view.set(e.id, e);
      }
    }
    for (const n of this.nodes) {
      if (n.view.size <= w) continue;
      const keep = [...n.view.values()].sort((a, b) => b.at - a.at || (a.id < b.id ? -1 : 1))
        .slice(0, w);
      n.view = new Map(keep.map((e) => [e.id, e]));
    }
  }
}
