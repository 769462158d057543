/**
 * The agent's relays of standard streams that outlive a connection or an
 * agent (core/relay):
 *
 * - at the destination, {@link ArrivedRelays} runs each arrived process's
 *   relay on its migration connection, keeps a record of it, and when the
 *   connection breaks, or when this agent started after the process
 *   arrived, connects to the source's agent again and asks it to take the
 *   relay up (`relay-resume`), retrying for {@link RELAY_GRACE_MS};
 * - at the source, {@link ParkedRelays} keeps the process's descriptors of a
 *   relay whose connection broke for as long, and hands them to the
 *   destination's agent that asks for it by its token, on a connection
 *   whose peer is the node the process went to.
 *
 * @module
 */
import type { MigrationChannel } from "../transport/channel.ts";
import type { PpmError } from "../errors.ts";
import type { StreamOffsets } from "../relay/replay.ts";
import { ArrivedRelay, fifosIn } from "../relay/arrived.ts";
import type { KeptRelay, RelayEnd } from "../relay/kept.ts";
import { dropRecord, loadRecords, type RelayRecord } from "../relay/record.ts";
import { expectMessage, type RelayResume, type RelayResumed } from "../migrate/messages.ts";
import { startTicks } from "../host/proc_stat.ts";

/** How long a broken relay waits to be taken up again, at both ends (1 h). */
export const RELAY_GRACE_MS = 3_600_000;

/** A channel that takes everything and ends every stream: a relay given up drains into it. */
export const NOWHERE: MigrationChannel = {
  send: () => Promise.resolve(),
  recv: () => new Promise(() => {}),
  streamSink: () => () => Promise.resolve(),
  endStream: () => Promise.resolve(),
  streamSource: () => (async function* () {})(),
  close: () => {},
};

/** What {@link ArrivedRelays} needs from the agent. */
export interface ArrivedRelaysDeps {
  /** An authenticated connection to the agent of node `name` (throws when unknown or down). */
  connect: (name: string) => Promise<MigrationChannel>;
  /** The connections arrived processes' exits are told on, by PID. */
  upstream: Map<number, MigrationChannel>;
  /** Logs a line. */
  log: (level: string, s: string) => void;
  /** How long to try to take a broken relay up again (default {@link RELAY_GRACE_MS}). */
  graceMs?: number;
  /** First wait between tries (default 1 s; doubles to 30 s). */
  retryMs?: number;
  /** Called for each process found running by {@link ArrivedRelays.adopt} (to list it again). */
  adopted?: (rec: RelayRecord) => void;
  /**
   * Called with each new connection a relay was taken up on (the way the
   * signals for its process come now: signals.ts `serveSignals`).
   */
  attached?: (pid: number, ch: MigrationChannel) => void;
}

/** The relays of the processes that arrived here. */
export class ArrivedRelays {
  readonly #d: ArrivedRelaysDeps;
  readonly #running = new Map<number, Promise<void>>();
  readonly #relays = new Map<number, ArrivedRelay>();
  /** Adopted processes that ran: their exit is told on the relay's new connection. */
  readonly #adopted = new Set<number>();
  #stopped = false;

  constructor(d: ArrivedRelaysDeps) {
    this.#d = d;
  }

  /** PIDs whose relays run. */
  get pids(): number[] {
    return [...this.#running.keys()];
  }

  /** Settles when the relay of `pid` is over (ended, or given up and drained). */
  settled(pid: number): Promise<void> {
    return this.#running.get(pid) ?? Promise.resolve();
  }

  /**
   * Runs the relay of an arrival: its first run on the migration connection
   * (`first`), then, whenever a connection breaks, on a new one.
   */
  follow(rec: RelayRecord, relay: ArrivedRelay, first?: Promise<RelayEnd>): void {
    const run = this.#run(rec, relay, first).catch((e) =>
      this.#d.log("warn", `relay of process ${rec.pid}: ${(e as Error).message}`)
    ).finally(() => {
      this.#running.delete(rec.pid);
      this.#relays.delete(rec.pid);
    });
    this.#running.set(rec.pid, run);
    this.#relays.set(rec.pid, relay);
  }

  /**
   * Takes up the relays of processes that arrived before this agent started
   * (their records), each on a new connection to the node it came from.
   */
  adopt(): number {
    const { records, bad } = loadRecords();
    for (const b of bad) this.#d.log("warn", `ignored a relay record: ${b}`);
    for (const rec of records) {
      if (this.#running.has(rec.pid)) continue;
      // FIFOs that are gone read as ended: the relay then ends at once, and its record goes.
      const relay = ArrivedRelay.reopen(
        fifosIn(rec.dir, rec.stdin),
        rec.keeper,
        (s) => this.#d.log("info", `process ${rec.pid}: ${s}`),
      );
      const alive = startTicks(rec.pid) === rec.startTicks;
      this.#d.log(
        "info",
        `taking up the relay of process ${rec.pid} from ${rec.from} (${
          alive ? "it runs" : "it ended; what it wrote is still sent"
        })`,
      );
      if (alive) {
        this.#adopted.add(rec.pid);
        this.#d.adopted?.(rec);
      }
      this.follow(rec, relay);
    }
    return records.length;
  }

  /**
   * The agent stops: no more reconnecting, no more reading output (it waits
   * in the FIFOs for the next agent), and what was read is sent, waiting at
   * most `ms`. The records stay for the next agent.
   */
  async stop(ms = 1500): Promise<void> {
    this.#stopped = true;
    await Promise.all([...this.#relays.values()].map((r) => r.quiesce(ms)));
  }

  async #run(rec: RelayRecord, relay: ArrivedRelay, first?: Promise<RelayEnd>): Promise<void> {
    let end: RelayEnd = first ? await first : "broken";
    const grace = this.#d.graceMs ?? RELAY_GRACE_MS;
    let until = Date.now() + grace;
    let wait = this.#d.retryMs ?? 1000;
    while (end === "broken" && !this.#stopped) {
      if (!rec.token) break; // an older source: it cannot take the relay up
      if (Date.now() > until) {
        this.#d.log("warn", `relay of process ${rec.pid}: ${rec.from} did not take it up in time`);
        break;
      }
      let ch: { ch: MigrationChannel; has: StreamOffsets } | null | undefined;
      try {
        ch = await this.#resume(rec, relay);
      } catch (e) {
        this.#d.log("info", `relay of process ${rec.pid}: ${rec.from}: ${(e as Error).message}`);
      }
      if (this.#stopped) {
        ch?.ch.close();
        return;
      }
      if (ch === null) break; // refused: the source no longer has it
      if (!ch) {
        await new Promise((r) => setTimeout(r, wait));
        wait = Math.min(wait * 2, 30_000);
        continue;
      }
      this.#d.log("info", `relay of process ${rec.pid} taken up again by ${rec.from}`);
      if (this.#d.upstream.has(rec.pid) || this.#adopted.delete(rec.pid)) {
        this.#d.upstream.set(rec.pid, ch.ch);
      }
      this.#d.attached?.(rec.pid, ch.ch);
      end = await relay.attach(ch.ch, ch.has);
      until = Date.now() + grace;
      wait = this.#d.retryMs ?? 1000;
    }
    if (this.#stopped && end === "broken") return;
    if (end === "broken") {
      // Given up: what the process writes is drained, so it never blocks on a full FIFO.
      this.#d.log("warn", `relay of process ${rec.pid}: its output is dropped from now on`);
      await relay.attach(NOWHERE);
    }
    dropRecord(rec.pid);
    await relay.remove();
  }

  /**
   * A new connection on which the source took the relay up, with what it has
   * of each output stream; null: it refused; throws: unreachable.
   */
  async #resume(
    rec: RelayRecord,
    relay: ArrivedRelay,
  ): Promise<{ ch: MigrationChannel; has: StreamOffsets } | null> {
    const ch = await this.#d.connect(rec.from);
    try {
      const ask: RelayResume = {
        op: "relay-resume",
        token: rec.token,
        pid: rec.pid,
        has: relay.inputTaken,
      };
      await ch.send(ask);
      const raw = await ch.recv(30_000);
      let why: string;
      try {
        const a = expectMessage(raw, "relay-resumed");
        if (a.ok) return { ch, has: a.has ?? {} };
        why = a.reason ?? "";
      } catch (e) {
        why = (e as PpmError).why;
      }
      this.#d.log(
        "warn",
        `relay of process ${rec.pid}: ${rec.from} refused to take it up: ${why.slice(0, 200)}`,
      );
      ch.close();
      return null;
    } catch (e) {
      ch.close();
      throw e;
    }
  }
}

/** A relay whose connection broke, kept at the source. */
interface Parked {
  relay: KeptRelay;
  /** The node the process went to: only its agent may take the relay up. */
  to: string;
  /** Runs the relay (and the rest of the following) on the new connection. */
  resume: (conn: MigrationChannel, peerHas: StreamOffsets) => void;
  /** Called when it is given up. */
  expire: () => void;
  timer: ReturnType<typeof setTimeout>;
}

/** The source's relays waiting for their destination to reconnect. */
export class ParkedRelays {
  readonly #parked = new Map<string, Parked>();
  readonly #log: (level: string, s: string) => void;
  readonly #graceMs: number;

  constructor(log: (level: string, s: string) => void, graceMs = RELAY_GRACE_MS) {
    this.#log = log;
    this.#graceMs = graceMs;
  }

  /** How many wait. */
  get size(): number {
    return this.#parked.size;
  }

  /** Whether a relay named `token` waits here. */
  has(token: string): boolean {
    return this.#parked.has(token);
  }

  /** Keeps `relay` (its connection to `to` broke) until taken up, or closes it after the grace. */
  park(
    relay: KeptRelay,
    to: string,
    resume: (conn: MigrationChannel, peerHas: StreamOffsets) => void,
    expire: () => void,
  ): void {
    const timer = setTimeout(() => {
      if (this.#parked.get(relay.token)?.relay !== relay) return;
      this.#parked.delete(relay.token);
      this.#log("warn", `${to} did not take a relay up again in time: its streams are closed here`);
      relay.close();
      expire();
    }, this.#graceMs);
    Deno.unrefTimer(timer);
    this.#parked.set(relay.token, { relay, to, resume, expire, timer });
  }

  /** Answers a `relay-resume` on `conn` (whose peer proved its node name). */
  async resume(conn: MigrationChannel & { peer: string }, ask: RelayResume): Promise<void> {
    const p = this.#parked.get(ask.token);
    if (!p || p.to !== conn.peer) {
      // Another node's relay, or none: the same answer, so tokens cannot be probed.
      await conn.send({ op: "relay-resumed", ok: false, reason: "no such relay here" })
        .catch(() => {});
      conn.close();
      return;
    }
    this.#parked.delete(ask.token);
    clearTimeout(p.timer);
    try {
      const yes: RelayResumed = { op: "relay-resumed", ok: true, has: p.relay.received };
      await conn.send(yes);
    } catch {
      // Gone again: it waits for the next try.
      this.park(p.relay, p.to, p.resume, p.expire);
      return;
    }
    this.#log("info", `${conn.peer} took up the relay of its process ${ask.pid} again`);
    p.resume(conn, ask.has);
  }

  /** Closes every waiting relay (the agent stops). */
  closeAll(): void {
    for (const p of this.#parked.values()) {
      clearTimeout(p.timer);
      p.relay.close();
    }
    this.#parked.clear();
  }
}
