/**
 * Opening authenticated connections between nodes: {@link connectPeer} on
 * the client side, {@link listenPeers} on the server side (TCP).
 *
 * @module
 */

import { EXIT, PpmError } from "../errors.ts";
import {
  AuthError,
  clientHandshake,
  DEFAULT_MAX_CLOCK_SKEW_MS,
  type HandshakeIo,
  type RefusalCode,
  serverHandshake,
  stepTimeout,
} from "./auth.ts";
import { withTimeout } from "./deadline.ts";
import { FrameReader, FrameWriter } from "./frame.ts";
import { NonceCache } from "./nonces.ts";
import { PeerConnection, type PeerConnectionOptions } from "./peer.ts";

/** Options of {@link connectPeer}. */
export interface ConnectOptions {
  /** The peer's host name or address. */
  host: string;
  /** The peer's transport port. */
  port: number;
  /** The cluster secret (32 bytes; ClusterSecret.key). */
  secret: Uint8Array;
  /** This node's name. */
  node: string;
  /** Bound of connecting and of each handshake step in ms (default 5 s, at most 60 s). */
  timeoutMs?: number;
  /** Refuse the peer unless it is this node. */
  expectNode?: string;
  /** Buffer limits and the default recv timeout of the connection. */
  connection?: PeerConnectionOptions;
  /** Wall clock in ms since the epoch (for tests). */
  clock?: () => number;
}

/** Options of {@link listenPeers}. */
export interface ListenOptions {
  /** Address to listen on (default "0.0.0.0"). */
  hostname?: string;
  /** Port to listen on; 0 picks a free one (see {@link PeerListener.addr}). */
  port: number;
  /** The cluster secret (32 bytes; ClusterSecret.key). */
  secret: Uint8Array;
  /** This node's name. */
  node: string;
  /** Gets each authenticated connection; it owns it from then on. */
  onConnection: (conn: PeerConnection) => void | Promise<void>;
  /** Told about each refused connection (to log and count it). */
  onRefused?: (refusal: Refusal) => void;
  /** Told when `onConnection` throws (the connection is then closed). */
  onError?: (error: unknown, conn: PeerConnection) => void;
  /** Bound of each handshake step in ms (default 5 s, at most 60 s). */
  handshakeTimeoutMs?: number;
  /** Largest accepted difference between a client's clock and this one (default 120 s). */
  maxClockSkewMs?: number;
  /** Most handshakes in progress at once; more connections are refused "busy" (default 64). */
  maxPendingHandshakes?: number;
  /** Buffer limits and the default recv timeout of the connections. */
  connection?: PeerConnectionOptions;
  /** Wall clock in ms since the epoch (for tests). */
  clock?: () => number;
}

/** A connection the listener refused. */
export interface Refusal {
  /** Why, as a code to count by. */
  code: RefusalCode;
  /** Why, in words. */
  reason: string;
  /** Where it came from: "10.0.0.2:50412". */
  remote: string;
  /** The error with what, why and fix. */
  error: PpmError;
}

/** A running listener. */
export interface PeerListener {
  /** The address it listens on (the port chosen when 0 was asked). */
  readonly addr: Deno.NetAddr;
  /** Connections authenticated so far. */
  readonly accepted: number;
  /** Connections refused so far, by code. */
  readonly refused: Readonly<Partial<Record<RefusalCode, number>>>;
  /**
   * Stops listening and ends handshakes in progress; connections already
   * handed to `onConnection` stay open (their owners close them).
   */
  close(): Promise<void>;
}

/** "host:port", with brackets for IPv6. */
function label(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Sets the TCP options the transport wants (latency of small frames, dead peers). */
function tune(conn: Deno.Conn): void {
  try {
    (conn as Deno.TcpConn).setNoDelay(true);
    (conn as Deno.TcpConn).setKeepAlive(true);
  } catch { /* not TCP */ }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* closed */ }
}

/**
 * Connects to a node and authenticates both ways.
 *
 * @throws PpmError when the node cannot be reached (connection refused,
 *   timeout), or AuthError (a PpmError with a refusal code) when the
 *   handshake fails: different cluster secrets, clocks too far apart, ...
 */
export async function connectPeer(opts: ConnectOptions): Promise<PeerConnection> {
  const ms = stepTimeout(opts.timeoutMs);
  const where = label(opts.host, opts.port);
  let timedOut = false;
  const connecting = Deno.connect({ hostname: opts.host, port: opts.port });
  let conn: Deno.Conn;
  try {
    conn = await withTimeout(connecting, ms, () => {
      timedOut = true;
      return new PpmError(
        `transport: cannot connect to ${where}`,
        `no answer within ${ms} ms`,
        "check the address, that `ppm daemon` runs there, and firewalls",
        EXIT.TIMEOUT,
      );
    });
  } catch (e) {
    if (timedOut) connecting.then(closeQuietly, () => {});
    if (e instanceof PpmError) throw e;
    const refused = e instanceof Deno.errors.ConnectionRefused;
    throw new PpmError(
      `transport: cannot connect to ${where}`,
      refused ? "connection refused: nothing listens there" : (e as Error)?.message ?? String(e),
      refused
        ? "start `ppm daemon` on that node, or check the address and port"
        : "check the address and the network",
    );
  }
  tune(conn);
  const reader = new FrameReader(conn, { peer: where });
  const writer = new FrameWriter(conn, { peer: where });
  const io: HandshakeIo = { reader, writer, abort: () => closeQuietly(conn), label: where };
  let peer: string;
  try {
    ({ peer } = await clientHandshake(io, { ...opts, timeoutMs: ms }));
  } catch (e) {
    closeQuietly(conn);
    throw e;
  }
  return new PeerConnection(
    conn,
    reader,
    writer,
    { node: opts.node, peer, remote: where },
    opts.connection,
  );
}

/**
 * Listens for nodes: authenticates each connection (concurrently, each step
 * bounded) and hands it to `onConnection`; refused ones go to `onRefused`.
 * A bad client never stops the listener from serving others.
 *
 * @throws PpmError when the address cannot be listened on
 */
export function listenPeers(opts: ListenOptions): PeerListener {
  const ms = stepTimeout(opts.handshakeTimeoutMs);
  const maxSkew = opts.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS;
  const hostname = opts.hostname ?? "0.0.0.0";
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname, port: opts.port, transport: "tcp" });
  } catch (e) {
    const busy = e instanceof Deno.errors.AddrInUse;
    throw new PpmError(
      `transport: cannot listen on ${label(hostname, opts.port)}`,
      busy ? "the port is in use" : (e as Error)?.message ?? String(e),
      busy ? "stop what uses it, or configure another port" : "",
      busy ? EXIT.BUSY : EXIT.FAILURE,
    );
  }
  const nonces = new NonceCache(2 * maxSkew);
  const pending = new Map<Deno.Conn, Promise<void>>();
  const refused: Partial<Record<RefusalCode, number>> = {};
  let accepted = 0, stopping = false;

  const refuse = (err: PpmError, code: RefusalCode, remote: string) => {
    refused[code] = (refused[code] ?? 0) + 1;
    try {
      opts.onRefused?.({ code, reason: err.why, remote, error: err });
    } catch { /* the callback's problem */ }
  };

  const serve = async (conn: Deno.Conn) => {
    const addr = conn.remoteAddr as Deno.NetAddr;
    const remote = label(addr.hostname, addr.port);
    tune(conn);
    const reader = new FrameReader(conn, { peer: remote });
    const writer = new FrameWriter(conn, { peer: remote });
    const io: HandshakeIo = { reader, writer, abort: () => closeQuietly(conn), label: remote };
    let peer: string;
    try {
      ({ peer } = await serverHandshake(io, {
        secret: opts.secret,
        node: opts.node,
        timeoutMs: ms,
        maxClockSkewMs: maxSkew,
        nonces,
        clock: opts.clock,
      }));
    } catch (e) {
      closeQuietly(conn);
      if (stopping) return;
      const err = e instanceof PpmError ? e : new PpmError("transport: handshake", String(e));
      refuse(err, e instanceof AuthError ? e.code : "malformed", remote);
      return;
    }
    if (stopping) return closeQuietly(conn);
    accepted++;
    const pc = new PeerConnection(conn, reader, writer, {
      node: opts.node,
      peer,
      remote,
    }, opts.connection);
    Promise.resolve().then(() => opts.onConnection(pc)).catch((e) => {
      pc.close(`the receiving node failed: ${(e as Error)?.message ?? e}`);
      try {
        opts.onError?.(e, pc);
      } catch { /* the callback's problem */ }
    });
  };

  const loop = (async () => {
    try {
      for await (const conn of listener) {
        if (pending.size >= (opts.maxPendingHandshakes ?? 64)) {
          const addr = conn.remoteAddr as Deno.NetAddr;
          closeQuietly(conn);
          refuse(
            new PpmError("transport: refused a connection", "too many handshakes at once"),
            "busy",
            label(addr.hostname, addr.port),
          );
          continue;
        }
        const p = serve(conn).finally(() => pending.delete(conn));
        pending.set(conn, p);
      }
    } catch { /* closed */ }
  })();

  return {
    addr: listener.addr,
    get accepted() {
      return accepted;
    },
    refused,
    async close() {
      if (stopping) return await loop;
      stopping = true;
      try {
        listener.close();
      } catch { /* closed */ }
      await loop;
      for (const conn of pending.keys()) closeQuietly(conn);
      await Promise.allSettled([...pending.values()]);
    },
  };
}
