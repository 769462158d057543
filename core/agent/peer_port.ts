/**
 * The agent's migration port: authenticated connections from peers, each
 * opened by one request that says what it is for: a redirect request (a
 * process that moved keeps its flows), a relay taken up again
 * (relays.ts; or, after this agent restarted, the relay of a process whose
 * deputy is here: deputies.ts), a question about a migration's outcome, or
 * an offer (an incoming migration, inbound.ts). Anything else is closed.
 *
 * @module
 */
import {
  expectMessage,
  type MessageError,
  type MessageOf,
  type Offer,
  type RelayResume,
} from "../migrate/messages.ts";
import { answerOutcome } from "../migrate/protocol.ts";
import { checkOffer } from "../migrate/offer_check.ts";
import { claimsRedirectRequest, serveRedirects } from "../redirect/peers.ts";
import { claimedOp } from "../untrusted.ts";
import { listenPeers, type PeerListener } from "../transport/conn.ts";
import type { PeerConnection } from "../transport/peer.ts";
import { type InboundDeps, receive } from "./inbound.ts";
import type { ParkedRelays } from "./relays.ts";

/** What {@link servePeerPort} needs from the agent. */
export interface PeerPortDeps {
  /** TCP port. */
  port: number;
  /** The cluster secret's key. */
  secret: Uint8Array;
  /** This node's name. */
  node: string;
  /** Relays waiting for their destination to reconnect. */
  parked: ParkedRelays;
  /** Offers taken and not yet arrived (a migration under way). */
  incoming: ReadonlyMap<Offer, unknown>;
  /** What receiving a process needs. */
  inbound: InboundDeps;
  /**
   * Takes up on `conn` the relay `ask` names when no relay waits here for
   * it: one of a process whose deputy is here (this agent started after it
   * left); false when there is none such.
   */
  takeUpDeputy?: (conn: PeerConnection, ask: RelayResume) => Promise<boolean>;
  /** Logs a line. */
  log: (level: string, s: string) => void;
}

/** Listens on the migration port; every connection is served by {@link serveConnection}. */
export function servePeerPort(d: PeerPortDeps): PeerListener {
  return listenPeers({
    port: d.port,
    secret: d.secret,
    node: d.node,
    onConnection: async (conn) => {
      try {
        await serveConnection(conn, d);
      } catch (e) {
        d.log("warn", `incoming connection failed: ${(e as Error).message}`);
        conn.close();
      }
    },
    onRefused: (r) => d.log("warn", `refused a connection from ${r.remote}: ${r.reason}`),
  });
}

/** Serves one connection by its first message. */
async function serveConnection(conn: PeerConnection, d: PeerPortDeps): Promise<void> {
  const { log } = d;
  const first = await conn.recv(30_000);
  if (claimsRedirectRequest(first)) {
    // Each request is checked there, and a malformed one answered.
    await serveRedirects(conn, first, (s) => log("info", `${s} for ${conn.peer}`));
    conn.close();
    return;
  }
  if (claimedOp(first, ["offer"])) {
    await serveOffer(conn, first, d);
    return;
  }
  let msg;
  try {
    msg = expectMessage(first, "relay-resume", "outcome?");
  } catch (e) {
    log("info", `closed a connection from ${conn.peer}: ${(e as MessageError).why}`);
    conn.close();
    return;
  }
  if (msg.op === "relay-resume") {
    if (!d.parked.has(msg.token) && await d.takeUpDeputy?.(conn, msg)) return;
    await d.parked.resume(conn, msg);
    return;
  }
  const underWay = [...d.incoming.keys()].some((o) => o.pid === msg.pid);
  const state = answerOutcome(msg, underWay);
  log("info", `${conn.peer} asked whether process ${msg.pid} runs here: ${state}`);
  await conn.send({ op: "outcome", state } satisfies MessageOf<"outcome">);
  conn.close();
}

/** An incoming migration: its offer checked (a malformed one is answered), then received. */
async function serveOffer(conn: PeerConnection, first: unknown, d: PeerPortDeps): Promise<void> {
  let offer: Offer;
  try {
    offer = checkOffer(first);
  } catch (e) {
    const reason = (e as { why?: string }).why ?? String(e);
    await conn.send({ op: "offer-reply", ok: false, reason }).catch(() => {});
    d.log("warn", `refused an offer from ${conn.peer}: ${reason}`);
    conn.close();
    return;
  }
  await receive(conn, offer, d.inbound);
}
