/**
 * Receiving a process: the agent's admission check (a draining node, or one
 * that would run short of memory, refuses before anything is frozen), the
 * migration itself (core/migrate/destination.ts), the arrival in the process
 * table, the source's handover (managed or not, why it moved), and then the
 * signals the source passes on from the process's deputy (signals.ts).
 *
 * @module
 */
import { type Arrival, migrateIn, type MigrateInOptions } from "../migrate/destination.ts";
import { asMessage, type Offer } from "../migrate/messages.ts";
import type { MigrationChannel } from "../transport/channel.ts";
import { startTicks } from "../host/proc_stat.ts";
import { badRecord, type RelayRecord, saveRecord } from "../relay/record.ts";
import type { ProcessTable } from "./processes.ts";
import type { ArrivedRelays } from "./relays.ts";
import type { ProcStatFields } from "./procfs.ts";

/** How long the destination waits for the source's handover after the commit. */
export const HANDOVER_WAIT_MS = 30_000;

/** What {@link receive} needs from the agent. */
export interface InboundDeps {
  /** Where the relay FIFOs live. */
  runDir: string;
  /** This node's address as peers know it. */
  nodeAddr: () => string;
  /** The process table. */
  table: ProcessTable;
  /** Connections to the nodes arrived processes came from, by PID. */
  upstream: Map<number, MigrationChannel>;
  /** Why this node refuses `offer` now, or "" when it takes it. */
  admission: (offer: Offer) => string;
  /** Called when an offer is taken, with a function to call once it arrived or failed. */
  reserve: (offer: Offer) => () => void;
  /** Reads /proc/PID/stat. */
  stat: (pid: number) => Promise<ProcStatFields | null>;
  /** Logs a line. */
  log: (level: string, s: string) => void;
  /** Runs arrived processes' relays beyond their first connection (none: they end with it). */
  relays?: ArrivedRelays;
  /** How a process coming home takes its deputy's place (core/agent/deputies.ts `homecoming`). */
  homecoming?: MigrateInOptions["homecoming"];
  /** The migration (default core/migrate/destination.ts migrateIn; injected for tests). */
  migrateIn?: typeof migrateIn;
  /**
   * Reads the connection process `pid` came in on for its signals, once the
   * handover was read (signals.ts `serveSignals`); none: they are not read.
   */
  signals?: (conn: MigrationChannel, pid: number) => void;
}

/**
 * Serves one incoming migration whose offer was read already. Returns the
 * arrival, or undefined when none happened (refused or failed; the
 * connection is then closed).
 */
export async function receive(
  conn: MigrationChannel,
  offer: Offer,
  d: InboundDeps,
): Promise<Arrival | undefined> {
  const refusal = d.admission(offer);
  if (refusal) {
    await conn.send({ op: "offer-reply", ok: false, reason: refusal }).catch(() => {});
    d.log("info", `refused process ${offer.pid} from ${offer.from}: ${refusal}`);
    conn.close();
    return undefined;
  }
  const release = d.reserve(offer);
  let arrival: Arrival | undefined;
  try {
    arrival = await (d.migrateIn ?? migrateIn)(conn, {
      runDir: d.runDir,
      log: (s) => d.log("info", s),
      network: { nodeAddr: d.nodeAddr() },
      offer,
      homecoming: d.homecoming,
    });
  } catch (e) {
    d.log("warn", `incoming migration failed: ${(e as Error).message}`);
  } finally {
    release();
  }
  if (!arrival) {
    conn.close();
    return undefined;
  }
  const st = await d.stat(arrival.pid);
  d.table.arrived({ ...arrival, name: offer.comm, startTicks: st?.startTicks });
  // The connection now carries the process's output back, and later the news of its exit.
  d.upstream.set(arrival.pid, conn);
  if (arrival.relay) followRelay(arrival, d);
  await takeHandover(conn, arrival.pid, d);
  // From now on the connection's messages are signals for it (one reader at a time).
  d.signals?.(conn, arrival.pid);
  return arrival;
}

/**
 * Keeps the record of an arrival's relay (an agent that restarts takes it
 * up from there) and runs it, now and after its connection breaks.
 */
function followRelay(arrival: Arrival, d: InboundDeps): void {
  const { relay, done, token, keeper } = arrival.relay!;
  const rec: RelayRecord = {
    pid: arrival.pid,
    startTicks: startTicks(arrival.pid),
    token,
    from: arrival.from,
    dir: relay.fifos.dir,
    stdin: relay.fifos.stdin !== undefined,
    keeper,
    arrival: {
      name: d.table.running(arrival.pid)?.name ?? "",
      origin: arrival.origin,
      moves: arrival.moves,
      at: arrival.at,
    },
  };
  if (!d.relays) {
    done.finally(() => relay.remove());
    return;
  }
  if (token && !badRecord(rec)) {
    try {
      saveRecord(rec);
    } catch (e) {
      d.log("warn", `cannot keep the relay record of process ${rec.pid}: ${(e as Error).message}`);
    }
  }
  d.relays.follow(rec, relay, done);
}

/** Waits (bounded) for the source's handover and applies it. */
async function takeHandover(conn: MigrationChannel, pid: number, d: InboundDeps): Promise<void> {
  const deadline = Date.now() + HANDOVER_WAIT_MS;
  try {
    while (Date.now() < deadline) {
      const msg = asMessage(await conn.recv(Math.max(1, deadline - Date.now())), "handover");
      if (msg?.pid !== pid) continue;
      if (d.table.handover(msg)) {
        d.log(
          "info",
          `process ${pid} (${msg.name}) is ${msg.managed ? "managed" : "not managed"} here (${
            msg.why.kind === "balance" ? `balance: ${msg.why.mode}` : msg.why.by
          })`,
        );
      }
      return;
    }
  } catch {
    /* an older source sends none, or the connection ended: the process stays unmanaged */
  }
}
