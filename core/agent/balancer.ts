/**
 * The agent's balancing loop. Every `interval` it measures this node
 * (LoadTracker: the local load for itself, the exported load for its
 * announcements), and when balancing is on or the node drains, runs one
 * round of the policy (core/balance/policy.ts) on its view, its peers'
 * announcements and the managed processes, and carries out the decisions
 * one after the other through the same move function as `ppm migrate`.
 *
 * Everything outside is injected (the clock, the readings, the peers, the
 * moves), so the loop runs in tests without /proc or a cluster.
 *
 * @module
 */
import { instantLoad } from "../balance/load.ts";
import { decide, type DecideInput } from "../balance/policy.ts";
import { roundRng } from "../balance/rng.ts";
import type { BalanceSettings } from "../balance/settings.ts";
import { type Incoming, LoadTracker } from "../balance/tracker.ts";
import {
  type BalanceState,
  type Decision,
  initialBalanceState,
  type LoadSample,
  type PeerView,
  type ProcessView,
  type RoundRecord,
} from "../balance/types.ts";
import { EXIT, PpmError } from "../errors.ts";
import type { MoveReason } from "./processes.ts";

/**
 * Seconds a process whose move failed is not chosen again, after its first
 * failure; each further failure in a row doubles it, up to
 * {@link HOLD_BACK_MAX_SECONDS}. A process that cannot move (a socket that
 * cannot follow it, say) would otherwise be chosen, and refused, every round,
 * and the processes that can move would wait behind it; a failure that
 * passes (a peer's late announcement) costs only a short pause.
 */
export const HOLD_BACK_SECONDS = 10;
/** The longest pause of a process whose moves keep failing. */
export const HOLD_BACK_MAX_SECONDS = 320;

/** The pause after the `failures`-th failure in a row, seconds. */
export function holdBack(failures: number): number {
  return Math.min(HOLD_BACK_MAX_SECONDS, HOLD_BACK_SECONDS * 2 ** Math.max(0, failures - 1));
}

/** What the balancer needs from the agent. */
export interface BalancerDeps {
  /** This node's name (its id in the announcements). */
  node: string;
  /** The settings. */
  settings: BalanceSettings;
  /** Balance by itself (otherwise only drain and `ppm balance --once` move processes). */
  enabled: boolean;
  /** The clock, seconds since the epoch. */
  now: () => number;
  /** Takes one measurement of this node. */
  sample: () => Promise<LoadSample>;
  /** The peers' last announcements. */
  peers: () => PeerView[];
  /** The processes here, managed or not, given the instantaneous load. */
  processes: (load: number) => Promise<ProcessView[]>;
  /** Moves a process (the agent's move function). */
  move: (pid: number, to: string, why: MoveReason) => Promise<{ pid: number }>;
  /** True while this node drains. */
  draining: () => boolean;
  /** True while this node is cordoned (and not draining): no rounds, only measurements. */
  cordoned?: () => boolean;
  /** Work accepted from peers that has not arrived yet. */
  incoming: () => Incoming;
  /** Logs a line. */
  log: (level: string, s: string) => void;
}

/** How one decided move went. */
export interface MoveOutcome {
  /** The process. */
  pid: number;
  /** The peer. */
  to: string;
  /** True when it runs there now. */
  ok: boolean;
  /** Its PID there. */
  newPid?: number;
  /** Why it failed. */
  error?: string;
}

/** One round as `ppm balance --once` shows it. Plain JSON. */
export interface BalanceReport {
  /** This node. */
  node: string;
  /** True when nothing was carried out. */
  dryRun: boolean;
  /** The round's record: mode, loads, budget, peers, why it stopped. */
  round: RoundRecord;
  /** The decisions, each with its full record. */
  decisions: Decision[];
  /** How each decision went (empty in a dry run). */
  outcomes: MoveOutcome[];
  /** The processes the round looked at. */
  processes: ProcessView[];
}

/** The balancing loop of one agent. */
export class Balancer {
  /** The node's two loads. */
  readonly tracker: LoadTracker;
  #state: BalanceState = initialBalanceState();
  #round = 0;
  #executing = false;
  /** Processes whose moves failed: not chosen until `until`, why, and the failures in a row. */
  #heldBack = new Map<number, { until: number; why: string; failures: number }>();

  /** @param d what the loop needs from the agent */
  constructor(private d: BalancerDeps) {
    this.tracker = new LoadTracker(d.node, d.settings);
  }

  /** True when the agent balances by itself. */
  get enabled(): boolean {
    return this.d.enabled;
  }

  /** True while the decisions of a round are being carried out. */
  get executing(): boolean {
    return this.#executing;
  }

  /** Takes a measurement and feeds it through both filters. */
  async measure(): Promise<LoadSample> {
    const s = await this.d.sample();
    this.tracker.observe(s, this.d.incoming());
    return s;
  }

  /** The policy's input for a round now (measures first when there is no sample yet). */
  async #input(): Promise<DecideInput> {
    const sample = this.tracker.sample ?? await this.measure();
    const now = this.d.now();
    const processes = await this.d.processes(instantLoad(sample));
    // A failure in a row counts while the process may still be chosen; long after, it is forgotten.
    for (const [pid, h] of this.#heldBack) {
      if (h.until + HOLD_BACK_MAX_SECONDS <= now) this.#heldBack.delete(pid);
    }
    return {
      local: this.tracker.localView(this.d.draining()),
      peers: this.d.peers(),
      processes: processes.map((p) => {
        const h = this.#heldBack.get(p.pid);
        return h && h.until > now ? { ...p, heldBack: h.why } : p;
      }),
      settings: this.d.settings,
      now,
      rng: roundRng(this.d.node, this.#round),
      state: this.#state,
    };
  }

  /**
   * One round now. With `dryRun` nothing moves and no state changes; without,
   * the decisions are carried out one after the other. Throws a PpmError
   * (EXIT.BUSY) when the decisions of another round are still being carried out.
   */
  async round(opts: { dryRun: boolean }): Promise<BalanceReport> {
    if (!opts.dryRun && this.#executing) {
      throw new PpmError(
        "cannot balance now",
        "the decisions of the last round are still being carried out",
        "wait a moment, or look with --dry-run",
        EXIT.BUSY,
      );
    }
    if (!opts.dryRun) this.#executing = true;
    try {
      const input = await this.#input();
      const result = decide(input);
      const report: BalanceReport = {
        node: this.d.node,
        dryRun: opts.dryRun,
        round: result.round,
        decisions: result.decisions,
        outcomes: [],
        processes: [...input.processes],
      };
      if (opts.dryRun) return report;
      this.#round++;
      this.#state = result.state;
      report.outcomes = await this.#carryOut(result.decisions);
      return report;
    } finally {
      if (!opts.dryRun) this.#executing = false;
    }
  }

  /**
   * Carries the decisions out in order. A send counts as pending for its peer
   * from when it finished (a peer's announcement measured before the process
   * arrived does not show it); a failed one does not count at all.
   */
  async #carryOut(decisions: Decision[]): Promise<MoveOutcome[]> {
    const out: MoveOutcome[] = [];
    for (const dec of decisions) {
      const why: MoveReason = { kind: "balance", mode: dec.mode, record: dec.record };
      const sent = this.#state.sent.find((m) => m.pid === dec.pid && m.at === dec.record.at);
      try {
        const r = await this.d.move(dec.pid, dec.to, why);
        if (sent) sent.at = Math.max(sent.at, this.d.now());
        this.#heldBack.delete(dec.pid);
        out.push({ pid: dec.pid, to: dec.to, ok: true, newPid: r.pid });
        const rq = dec.record.local.runqueue?.map((x) => `${x.comm}[${x.pid}] ${x.runnable}`);
        this.d.log(
          "info",
          `balance (${dec.mode}): process ${dec.pid} moved to ${dec.to}: ${dec.record.margin.text}${
            rq?.length ? `; run queue here: ${rq.join(", ")}` : ""
          }`,
        );
      } catch (e) {
        if (sent) this.#state.sent.splice(this.#state.sent.indexOf(sent), 1);
        const msg = e instanceof PpmError ? `${e.what}: ${e.why}` : (e as Error).message;
        const failures = (this.#heldBack.get(dec.pid)?.failures ?? 0) + 1;
        const pause = holdBack(failures);
        this.#heldBack.set(dec.pid, {
          until: this.d.now() + pause,
          why: `its move to ${dec.to} failed ${
            new Date().toISOString().slice(11, 19)
          } UTC (${failures} in a row, held back ${pause} s): ${msg}`,
          failures,
        });
        out.push({ pid: dec.pid, to: dec.to, ok: false, error: msg });
        this.d.log("warn", `balance (${dec.mode}): process ${dec.pid} to ${dec.to} failed: ${msg}`);
      }
    }
    return out;
  }

  /**
   * One tick of the loop: measure, then a round when balancing is on or the
   * node drains and no earlier round is still being carried out.
   */
  async tick(): Promise<BalanceReport | undefined> {
    await this.measure();
    if (!(this.d.enabled || this.d.draining()) || this.#executing) return undefined;
    if (this.d.cordoned?.()) return undefined;
    const r = await this.round({ dryRun: false });
    if (r.decisions.length) this.d.log("debug", `balance round: ${r.round.stop}`);
    return r;
  }

  /**
   * Runs {@link tick} every `interval` until `signal` aborts. A round still
   * carrying out its moves makes the next ticks only measure.
   */
  async run(signal: AbortSignal): Promise<void> {
    const ms = this.d.settings.interval * 1000;
    while (!signal.aborted) {
      const started = performance.now();
      this.tick().catch((e) => this.d.log("warn", `balancing: ${(e as Error).message}`));
      const wait = Math.max(10, ms - (performance.now() - started));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, wait);
        function done() {
          clearTimeout(timer);
          signal.removeEventListener("abort", done);
          resolve();
        }
        signal.addEventListener("abort", done, { once: true });
      });
    }
  }
}
