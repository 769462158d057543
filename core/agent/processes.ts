/**
 * The agent's table of the processes it knows: managed ones running here
 * (started by `ppm run`, made managed by `ppm manage`, or arrived managed),
 * processes that arrived here by migration, and processes that left from
 * here (their output is relayed here). Plain data, no I/O: what `ppm ps`
 * shows.
 *
 * @module
 */
import type { BalanceMode, DecisionRecord } from "../balance/types.ts";
import type { Handover } from "../migrate/messages.ts";

/** Why a process last moved. */
export type MoveReason =
  | { kind: "manual"; by: string }
  | { kind: "balance"; mode: BalanceMode; record: DecisionRecord };

/** How a process ended: its exit code, or the signal that killed it. */
export interface ExitStatus {
  /** Exit code, when it exited. */
  code?: number;
  /** Signal number, when a signal killed it. */
  signal?: number;
  /** The node it ended on. */
  node: string;
  /** When it was learnt (ISO). */
  at: string;
}

/**
 * "local": runs here, never moved; "arrived": runs here, came by migration; "left": runs
 * elsewhere; "deputy": runs elsewhere, and its deputy stands in for it here (a row of
 * `ppm ps` only, core/agent/deputies.ts: the table never holds one).
 */
export type Direction = "local" | "arrived" | "left" | "deputy";

/** One process the agent knows. Plain JSON. */
export interface ProcessEntry {
  /** Where it started: node and PID. */
  origin: { node: string; pid: number };
  /** Where it runs now (or last ran): node and PID. */
  current: { node: string; pid: number };
  /** Moves so far. */
  moves: number;
  /** When it last moved (ISO); absent for a process that never moved. */
  movedAt?: string;
  /** See {@link Direction}. */
  direction: Direction;
  /** True when the balancer may move it. */
  managed: boolean;
  /** Its name: `ppm run --name`, else its command name. */
  name: string;
  /** When it started on its first node, seconds since the epoch. */
  startedAt: number;
  /** When it started or arrived here, seconds since the epoch (for "left": when it arrived where it went). */
  arrivedAt: number;
  /** The node it came from, when it arrived by migration. */
  cameFrom?: string;
  /** How it became managed. */
  managedBy?: "run" | "manage" | "migration";
  /** Why it last moved: by hand, or the balancer's decision record. */
  why?: MoveReason;
  /** Start time in clock ticks on this node, to tell a reused PID apart. */
  startTicks?: number;
  /** How it ended, once known (its entry then stays for a while as history). */
  exit?: ExitStatus;
  /** For "left": when the relay of its output to this node ended (ISO). */
  relayEndedAt?: string;
  /** For "deputy": the deputy here (its PID is the process's), and whether it is connected. */
  deputy?: { pid: number; connected: boolean; since: string };
}

/** What {@link ProcessTable.manage} records. */
export interface ManageInput {
  /** PID here. */
  pid: number;
  /** Its name. */
  name: string;
  /** When it started (seconds since the epoch). */
  startedAt: number;
  /** Its start ticks here. */
  startTicks: number;
  /** How. */
  by: "run" | "manage";
}

/** What {@link ProcessTable.arrived} records. */
export interface ArrivalInput {
  /** PID here. */
  pid: number;
  /** Where it came from. */
  from: string;
  /** Where it started. */
  origin: { node: string; pid: number };
  /** Moves including this one. */
  moves: number;
  /** When it arrived (ISO). */
  at: string;
  /** Start ticks here. */
  startTicks?: number;
  /** Its command name. */
  name: string;
}

/** Entries kept after they ended (exited, or left and ended elsewhere), newest kept. */
export const HISTORY_LIMIT = 128;

/**
 * The last departure of a PID from this node: where it went, and what came
 * back since (the end of its output relay, its exit). Kept apart from the
 * entries, since a process that comes back replaces its "left" entry while
 * the relay of its first departure still carries its output.
 */
export interface Departure {
  /** Where it went. */
  to: string;
  /** When the relay of its output to this node ended (ISO). */
  relayEndedAt?: string;
  /** How it ended, once known. */
  exit?: ExitStatus;
}

/** The processes this agent knows. */
export class ProcessTable {
  #entries: ProcessEntry[] = [];
  #departures = new Map<number, Departure>();

  /**
   * @param node this node's name
   * @param clock seconds since the epoch (injected for tests)
   */
  constructor(readonly node: string, private clock: () => number = () => Date.now() / 1000) {}

  /** Every entry, oldest first (a copy). */
  list(): ProcessEntry[] {
    return structuredClone(this.#entries);
  }

  /** The entry of the process running here as `pid` (not ended), if any. */
  running(pid: number): ProcessEntry | undefined {
    return this.#entries.find((e) => e.direction !== "left" && !e.exit && e.current.pid === pid);
  }

  /** The managed processes running here. */
  managedHere(): ProcessEntry[] {
    return this.#entries.filter((e) => e.direction !== "left" && !e.exit && e.managed);
  }

  /** Processes running here that arrived by migration and have not ended. */
  arrivals(): ProcessEntry[] {
    return this.#entries.filter((e) => e.direction === "arrived" && !e.exit);
  }

  /** The newest "left" entry for a process that ran here as `pid`, if any. */
  departed(pid: number): ProcessEntry | undefined {
    for (let i = this.#entries.length - 1; i >= 0; i--) {
      const e = this.#entries[i];
      if (e.direction === "left" && e.current.pid === pid) return e;
    }
    return undefined;
  }

  /** Makes the process running here as `pid` managed (an entry is made for a local one). */
  manage(m: ManageInput): ProcessEntry {
    const known = this.running(m.pid);
    if (known) {
      known.managed = true;
      known.managedBy ??= m.by;
      if (m.by === "run") known.name = m.name;
      return structuredClone(known);
    }
    const e: ProcessEntry = {
      origin: { node: this.node, pid: m.pid },
      current: { node: this.node, pid: m.pid },
      moves: 0,
      direction: "local",
      managed: true,
      name: m.name,
      startedAt: m.startedAt,
      arrivedAt: m.startedAt,
      managedBy: m.by,
      startTicks: m.startTicks,
    };
    this.#entries.push(e);
    return structuredClone(e);
  }

  /** Makes `pid` unmanaged; false when it was not managed. A local entry goes. */
  unmanage(pid: number): boolean {
    const e = this.running(pid);
    if (!e || !e.managed) return false;
    if (e.direction === "local") this.#entries.splice(this.#entries.indexOf(e), 1);
    else e.managed = false;
    return true;
  }

  /** Records a process that arrived here (a process that left and came back is one entry again). */
  arrived(a: ArrivalInput): ProcessEntry {
    this.#entries = this.#entries.filter((e) =>
      !(e.origin.node === a.origin.node && e.origin.pid === a.origin.pid)
    );
    const e: ProcessEntry = {
      origin: a.origin,
      current: { node: this.node, pid: a.pid },
      moves: a.moves,
      movedAt: a.at,
      direction: "arrived",
      managed: false,
      name: a.name,
      startedAt: Date.parse(a.at) / 1000,
      arrivedAt: Date.parse(a.at) / 1000,
      cameFrom: a.from,
      startTicks: a.startTicks,
    };
    this.#entries.push(e);
    this.#trim();
    return structuredClone(e);
  }

  /** Applies the source's handover to the arrived process `pid`. */
  handover(h: Handover): boolean {
    const e = this.running(h.pid);
    if (!e || e.direction !== "arrived") return false;
    e.managed = h.managed;
    if (h.managed) e.managedBy = "migration";
    e.name = h.name || e.name;
    if (Number.isFinite(h.startedAt) && h.startedAt > 0) e.startedAt = h.startedAt;
    // The balancer's record is the source's, checked as a map: shown, never computed on.
    e.why = h.why as MoveReason;
    return true;
  }

  /**
   * Records that the process running here as `pid` left for `to` (as `newPid`).
   * Returns the handover to send there.
   */
  left(pid: number, to: string, newPid: number, why: MoveReason, name: string): Handover {
    const prior = this.running(pid);
    const now = this.clock();
    const e: ProcessEntry = {
      origin: prior?.origin ?? { node: this.node, pid },
      current: { node: to, pid: newPid },
      moves: (prior?.moves ?? 0) + 1,
      movedAt: new Date(now * 1000).toISOString(),
      direction: "left",
      managed: prior?.managed ?? false,
      name: prior?.name ?? name,
      startedAt: prior?.startedAt ?? now,
      arrivedAt: now,
      why,
    };
    if (prior) this.#entries.splice(this.#entries.indexOf(prior), 1);
    this.#entries.push(e);
    this.#trim();
    this.#departures.delete(pid);
    this.#departures.set(pid, { to });
    if (this.#departures.size > HISTORY_LIMIT) {
      this.#departures.delete(this.#departures.keys().next().value!);
    }
    return {
      op: "handover",
      pid: newPid,
      managed: e.managed,
      name: e.name,
      startedAt: e.startedAt,
      why,
    };
  }

  /** The last departure of `pid` from here, if any (a copy). */
  departure(pid: number): Departure | undefined {
    const d = this.#departures.get(pid);
    return d && structuredClone(d);
  }

  /** Records how the process that left here as `pid` ended elsewhere. */
  exitedElsewhere(pid: number, exit: ExitStatus): void {
    const e = this.departed(pid);
    if (e && !e.exit) e.exit = exit;
    const d = this.#departures.get(pid);
    if (d && !d.exit) d.exit = exit;
  }

  /** Records that the relay of the departed `pid` ended. */
  relayEnded(pid: number): void {
    const at = new Date(this.clock() * 1000).toISOString();
    const e = this.departed(pid);
    if (e) e.relayEndedAt = at;
    const d = this.#departures.get(pid);
    if (d) d.relayEndedAt = at;
  }

  /** Records that the process running here as `pid` ended (its entry stays as history). */
  ended(pid: number, exit: ExitStatus): ProcessEntry | undefined {
    const e = this.running(pid);
    if (!e) return undefined;
    if (e.direction === "local") {
      this.#entries.splice(this.#entries.indexOf(e), 1);
      return e;
    }
    e.exit = exit;
    this.#trim();
    return structuredClone(e);
  }

  /** Drops the oldest ended entries beyond {@link HISTORY_LIMIT}. */
  #trim(): void {
    let history = this.#entries.filter((e) => e.exit || e.direction === "left").length;
    if (history <= HISTORY_LIMIT) return;
    this.#entries = this.#entries.filter((e) => {
      if (history > HISTORY_LIMIT && (e.exit || (e.direction === "left" && e.relayEndedAt))) {
        history--;
        return false;
      }
      return true;
    });
  }
}
