/**
 * The data the balancing policy works on and the records it produces. Every
 * type here is plain data: numbers, strings, booleans, arrays and objects, so
 * that a record survives `JSON.stringify` unchanged.
 *
 * Units: times in seconds (the caller's clock; the policy never reads one),
 * memory in bytes, bandwidth in bytes per second, loads normalised (see
 * {@link LoadSample}).
 *
 * @module
 */

/** A process's part of a node's run queue over one interval. */
export interface RunqueueShare {
  /** The process. */
  pid: number;
  /** Its command name. */
  comm: string;
  /** Its threads' mean count of running or waiting for a CPU over the interval. */
  runnable: number;
}

/**
 * One measurement of a node, as read from /proc (see `measure.ts`).
 *
 * The normalised load derived from it is the CPU demand divided by the
 * node's capacity, `cpus × speed`: 1 means every CPU is busy, 2 means every
 * task gets half a CPU of reference speed.
 */
export interface LoadSample {
  /** When it was taken, in seconds. */
  at: number;
  /** Runnable tasks (running or waiting for a CPU), without the agent itself. */
  runnable: number;
  /**
   * True when `runnable` is the average over the time since the last sample
   * (from the tasks' run and wait times, kernel threads left out) rather than
   * a count at one instant.
   */
  averaged?: boolean;
  /** The processes that were runnable the most over the interval (averaged samples only). */
  runqueue?: RunqueueShare[];
  /** Online CPUs. */
  cpus: number;
  /** Relative CPU speed; 1 is the reference CPU. */
  speed: number;
  /** The kernel's 1, 5 and 15 minute load averages (kept for the record). */
  loadavg: [number, number, number];
  /** CPU pressure, "some avg10" in percent (0-100); absent without PSI. */
  cpuPressure?: number;
  /** Total memory in bytes. */
  memTotal: number;
  /** Memory available for new work (MemAvailable) in bytes. */
  memAvailable: number;
}

/** What a node tells its peers in its discovery announcement. */
export interface Announcement {
  /** The node's id. */
  id: string;
  /** The exported load: normalised, rises at once and decays slowly. */
  load: number;
  /** Online CPUs. */
  cpus: number;
  /** Relative CPU speed. */
  speed: number;
  /** Total memory in bytes. */
  memTotal: number;
  /** Available memory in bytes, less memory reserved for incoming migrations. */
  memAvailable: number;
  /** True when the node is draining: it sends work away and accepts none. */
  drain: boolean;
  /** When the node measured what it announces, in seconds. */
  at: number;
}

/** A peer as this node knows it: its last announcement and what was measured locally. */
export interface PeerView extends Announcement {
  /** Measured bandwidth from this node to the peer, bytes per second; absent when unknown. */
  bandwidth?: number;
}

/** This node as the policy sees it. */
export interface LocalView {
  /** The node's id. */
  id: string;
  /**
   * The local load: normalised, rises slowly and falls at once. Processes already
   * being sent away do not count.
   */
  load: number;
  /** Online CPUs. */
  cpus: number;
  /** Relative CPU speed. */
  speed: number;
  /** Total memory in bytes. */
  memTotal: number;
  /** Available memory in bytes; the memory of processes already being sent away counts as available. */
  memAvailable: number;
  /** True when the node is draining. */
  drain: boolean;
  /** Seconds until the outgoing transfers already under way finish; 0 when idle. */
  sendBacklog?: number;
  /** What made up the run queue in the last interval (for the record; the policy ignores it). */
  runqueue?: RunqueueShare[];
}

/** A process on this node. */
export interface ProcessView {
  /** Its pid on this node. */
  pid: number;
  /** True when ppm manages it; only managed processes are ever moved. */
  managed: boolean;
  /** CPU demand in CPUs of reference speed when it runs alone (1 for a CPU-bound thread). */
  demand: number;
  /** Seconds its demand was measured over from run and wait times; absent when estimated otherwise. */
  demandSpan?: number;
  /** Memory that a migration sends, in bytes. */
  memory: number;
  /** When it started, on any node, in seconds. */
  startedAt: number;
  /** When it started here or arrived here by migration, in seconds. */
  arrivedAt: number;
  /** How many times it has migrated so far. */
  moves: number;
  /** The node it came from, when it arrived by migration. */
  cameFrom?: string;
  /** True while it is being frozen or migrated already. */
  busy?: boolean;
  /** Why it is not chosen for now: its last move failed (see HOLD_BACK_SECONDS). */
  heldBack?: string;
}

/** Why a node sends work away in a round. */
export type BalanceMode = "drain" | "memory" | "load";

/** A migration this node started, kept between rounds in {@link BalanceState}. */
export interface SentMigration {
  /** The process's pid here. */
  pid: number;
  /** The peer it went to. */
  to: string;
  /** When it was decided, in seconds. */
  at: number;
  /** The load it adds to the peer (normalised for the peer). */
  load: number;
  /** Its memory in bytes. */
  memory: number;
}

/** What the policy carries from one round to the next; start with {@link initialBalanceState}. */
export interface BalanceState {
  /** Overloaded in the last round (hysteresis between busyLoad and calmLoad). */
  overloaded: boolean;
  /** Ushering memory in the last round (hysteresis between memoryLow and memoryComfort). */
  ushering: boolean;
  /** Recent migrations sent, newest last. */
  sent: SentMigration[];
}

/** The state of a node that has not balanced yet. */
export function initialBalanceState(): BalanceState {
  return { overloaded: false, ushering: false, sent: [] };
}

/** A source of uniform random numbers in [0, 1). */
export type Rng = () => number;

/** A peer as judged in one round. */
export interface PeerVerdict {
  /** The peer's id. */
  id: string;
  /** Its announced load. */
  load: number;
  /** Its announced load plus what this node sent that the announcement does not show yet. */
  expected: number;
  /** Age of its announcement in seconds. */
  age: number;
  /** "target" when it may receive work this round, else why not. */
  verdict: string;
  /** Processes it was sent this round, when any. */
  received?: number;
}

/** A process as judged for one decision. */
export interface ProcessVerdict {
  /** Its pid. */
  pid: number;
  /** Memory in bytes. */
  memory: number;
  /** Net benefit (benefit minus cost) in reference CPU-seconds, when computed. */
  net?: number;
  /** "chosen", "eligible" (a lesser choice), or why it was rejected. */
  verdict: string;
}

/** The full reasoning behind one migration. Plain JSON. */
export interface DecisionRecord {
  /** The deciding node. */
  node: string;
  /** When, in seconds. */
  at: number;
  /** Why work is being sent away. */
  mode: BalanceMode;
  /** Why the mode applies, in words. */
  why: string;
  /** This node's load and memory before and after the move. */
  local: {
    load: number;
    loadAfter: number;
    memAvailable: number;
    memAvailableAfter: number;
    memTotal: number;
    /** The processes that made up the local run queue (when measured). */
    runqueue?: RunqueueShare[];
  };
  /** The chosen peer. */
  target: {
    id: string;
    announcedLoad: number;
    expectedLoad: number;
    loadAfter: number;
    announcementAge: number;
    bandwidth: number;
    memAvailable: number;
  };
  /** The chosen process. */
  process: {
    pid: number;
    demand: number;
    /** Seconds the demand was measured over (see ProcessView.demandSpan). */
    demandSpan?: number;
    loadHere: number;
    loadThere: number;
    memory: number;
    age: number;
    residency: number;
    moves: number;
  };
  /** The margin rule: expected + margin × loadThere < local load, as numbers and text. */
  margin: { factor: number; lhs: number; rhs: number; holds: boolean; text: string };
  /** Estimated seconds of transfer and the CPU-seconds they cost. */
  cost: { transferSeconds: number; backlogSeconds: number; cpuSeconds: number };
  /** CPU rates here and there, the horizon, and the CPU-seconds gained. */
  benefit: { rateHere: number; rateThere: number; horizonSeconds: number; cpuSeconds: number };
  /** benefit / cost (Infinity is written as null by JSON; kept finite here). */
  ratio: number;
  /** The anti-flood estimate for the target: mean load, senders, probability, draw. */
  damping?: { mean: number; senders: number; room: number; probability: number; draw: number };
  /** Peers considered before the choice, nearest first, at most recordLimit. */
  targets: PeerVerdict[];
  /** Processes considered for the chosen target, best first, at most recordLimit. */
  processes: ProcessVerdict[];
  /** How many processes were rejected for each reason. */
  rejected: Record<string, number>;
}

/** One migration to start. */
export interface Decision {
  /** The process to move. */
  pid: number;
  /** This node. */
  from: string;
  /** The peer to move it to. */
  to: string;
  /** Why work is being sent away. */
  mode: BalanceMode;
  /** Why this process and this peer. */
  record: DecisionRecord;
}

/** What a decision round looked at and concluded. Plain JSON. */
export interface RoundRecord {
  /** The deciding node. */
  node: string;
  /** When, in seconds. */
  at: number;
  /** The mode at the start of the round, or null when nothing needs to move. */
  mode: BalanceMode | null;
  /** Why (or why not), in words. */
  why: string;
  /** Local load at the start of the round. */
  load: number;
  /** Local load expected after the decisions. */
  loadAfter: number;
  /** Migrations allowed this round by the per-interval limit. */
  budget: number;
  /** Migrations decided. */
  decided: number;
  /** Why the round stopped deciding. */
  stop: string;
  /** Peers, nearest first, at most recordLimit. */
  peers: PeerVerdict[];
  /** How many peers got each verdict. */
  peerCounts: Record<string, number>;
  /** Processes that were never candidates, by reason (unmanaged, busy, young, residency). */
  skipped: Record<string, number>;
}

/** The result of {@link decide} in `policy.ts`. */
export interface RoundResult {
  /** Migrations to start, in order. */
  decisions: Decision[];
  /** The round's record. */
  round: RoundRecord;
  /** The state to pass to the next round. */
  state: BalanceState;
}
