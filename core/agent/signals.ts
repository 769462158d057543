/**
 * Signals for processes that left: the way a signal its deputy got at home
 * (core/deputy) takes to where the process runs now. It follows the way the
 * process went, one connection per move, as its output comes back along it
 * (outbound.ts): the home node sends `{op: "signal"}` on the connection of
 * the move away; the agent at the other end gives it to the process when it
 * runs there, or else passes it on along the connection of its next move.
 *
 * - {@link SignalRoutes}: on each node, the connection each process that
 *   left went away on (its route), and signals held while it has none (the
 *   connection broke and waits to be taken up again, or the route is not
 *   open yet);
 * - {@link serveSignals}: on each node a process arrived on, the reader of
 *   the connection it came in on. A signal is taken there only for that
 *   process: a peer can signal nothing but the process it sent.
 *
 * @module
 */
import { kill } from "../../ffi/libc.ts";
import { asMessage, type SignalMessage } from "../migrate/messages.ts";
import type { MigrationChannel } from "../transport/channel.ts";

/** Signals held per process while it has no route. */
export const HELD_MAX = 64;

/** Processes whose signals may be held at once (the oldest are forgotten past it). */
export const HELD_PROCESSES_MAX = 4096;

/** Where a signal went: on a route, held for one, or nowhere (no route, none expected). */
export type SignalFate = "sent" | "held" | "none";

/** The connections the processes that left this node went away on. */
export class SignalRoutes {
  readonly #routes = new Map<number, MigrationChannel>();
  readonly #held = new Map<number, number[]>();
  readonly #log: (level: string, s: string) => void;

  constructor(log: (level: string, s: string) => void = () => {}) {
    this.#log = log;
  }

  /** Signals for `pid` are held (at most {@link HELD_MAX}) until its route opens. */
  hold(pid: number): void {
    if (this.#held.has(pid) || this.#routes.has(pid)) return;
    if (this.#held.size >= HELD_PROCESSES_MAX) {
      this.#held.delete(this.#held.keys().next().value!);
    }
    this.#held.set(pid, []);
  }

  /**
   * `ch` is the way to `pid` from now on: what was held goes out on it.
   * When it closes, signals are held again until the next route opens.
   */
  open(pid: number, ch: MigrationChannel): void {
    this.#routes.set(pid, ch);
    const held = this.#held.get(pid) ?? [];
    this.#held.delete(pid);
    for (const sig of held) this.send(pid, sig);
    ch.closed?.then(() => {
      if (this.#routes.get(pid) !== ch) return;
      this.#routes.delete(pid);
      this.hold(pid);
    });
  }

  /**
   * Forgets `pid` (it ended, or its way was closed for good): its route,
   * and what was held for it; with `ch`, only when `ch` is its route (or it
   * has none), not a later one.
   */
  close(pid: number, ch?: MigrationChannel): void {
    const now = this.#routes.get(pid);
    if (ch && now && now !== ch) return;
    this.#routes.delete(pid);
    this.#held.delete(pid);
  }

  /** Whether `pid` has a route now. */
  has(pid: number): boolean {
    return this.#routes.has(pid);
  }

  /** Sends signal `sig` towards `pid`; where it went. */
  send(pid: number, sig: number): SignalFate {
    const ch = this.#routes.get(pid);
    if (ch) {
      ch.send({ op: "signal", pid, sig } satisfies SignalMessage).catch((e) =>
        this.#log("warn", `signal ${sig} for process ${pid} was lost: ${(e as Error).message}`)
      );
      return "sent";
    }
    const held = this.#held.get(pid);
    if (!held) return "none";
    if (held.length >= HELD_MAX) {
      this.#log("warn", `signal ${sig} for process ${pid} was lost: ${HELD_MAX} wait already`);
      return "held";
    }
    // A standard signal once (as the kernel keeps one pending), a real-time one each time.
    if (sig >= 32 || !held.includes(sig)) held.push(sig);
    return "held";
  }
}

/** What {@link serveSignals} needs. */
export interface SignalTargets {
  /** Gives `sig` to `pid` when it runs here; whether it did. */
  here(pid: number, sig: number): boolean;
  /** The ways on, for a process that moved on from here. */
  routes: SignalRoutes;
  /** Logs a line. */
  log: (level: string, s: string) => void;
}

/** Signals refused on one connection that are logged. */
const LOGGED_REFUSED = 5;

/**
 * Reads the connection process `pid` came in on for its signals until the
 * connection ends: each is given to it here, or passed on where it went
 * next. Other messages are passed over; a signal for another process is
 * refused (logged, the first few).
 */
export async function serveSignals(
  conn: MigrationChannel,
  pid: number,
  d: SignalTargets,
): Promise<void> {
  let refused = 0;
  for (;;) {
    let raw: unknown;
    try {
      raw = await conn.recv(Infinity);
    } catch {
      return; // the connection ended
    }
    const m = asMessage(raw, "signal");
    if (!m) continue;
    if (m.pid !== pid) {
      if (++refused <= LOGGED_REFUSED) {
        d.log(
          "warn",
          `refused signal ${m.sig} for process ${m.pid} on the connection process ${pid} came in on`,
        );
      }
      continue;
    }
    deliverSignal(d, pid, m.sig);
  }
}

/** Gives `sig` to `pid` here, or passes it on; logs where it went. */
export function deliverSignal(d: SignalTargets, pid: number, sig: number): SignalFate | "here" {
  if (d.here(pid, sig)) {
    d.log("debug", `signal ${sig} from the deputy of process ${pid} given to it here`);
    return "here";
  }
  const fate = d.routes.send(pid, sig);
  if (fate === "none") {
    d.log("debug", `signal ${sig} for process ${pid}: it no longer runs here, dropped`);
  }
  return fate;
}

/**
 * `here` of {@link SignalTargets} for an agent: `kill(pid, sig)` when `pid`
 * is a process that arrived here and still runs as itself (`alive` says
 * so: its start time is the one recorded).
 */
export function killIfHere(alive: (pid: number) => boolean): (pid: number, sig: number) => boolean {
  return (pid, sig) => {
    if (!alive(pid)) return false;
    try {
      kill(pid, sig);
      return true;
    } catch {
      return false; // ended meanwhile
    }
  };
}
