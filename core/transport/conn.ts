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
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_CLOCK_SKEW_MS,
  type HandshakeIo,
  handshakeTimeout,
  type RefusalCode,
  serverHandshake,
} from "./auth.ts";
import { withTimeout } from "./deadline.ts";
import { FrameReader, FrameWriter } from "./frame.ts";
import { NonceCache } from "./nonces.ts";
import { PeerConnection, type PeerConnectionOptions, socketAddrs } from "./peer.ts";
import { closeQuietly, type HalfOpen, HandshakeSlots } from "./slots.ts";

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
  /**
   * Bound of connecting, and then of the whole handshake, in ms (default 5 s
   * each, at most 60 s).
   */
  timeoutMs?: number;
  /** Refuse the peer unless it is this node. */
  expectNode?: string;
  /**
   * How often to try again, after 50 ms, 100 ms, ... (with jitter), when the
   * server refuses "busy": it dropped the handshake to make room for newer
   * ones (default 3, at most 10; 0 never retries).
   */
  busyRetries?: number;
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
  /**
   * Bound of each whole handshake in ms, from accepting the connection to the
   * welcome (default 3 s, at most 60 s): a client that is slower is dropped
   * ("timeout").
   */
  handshakeTimeoutMs?: number;
  /** Largest accepted difference between a client's clock and this one (default 120 s). */
  maxClockSkewMs?: number;
  /**
   * Most handshakes in progress at once (default 64). A new connection beyond
   * it drops the oldest handshake of the source address that has the most in
   * progress ("busy"), so a flood cannot hold every slot.
   */
  maxPendingHandshakes?: number;
  /**
   * Most handshakes in progress at once from one source address, or one IPv6
   * /64 (default 8). A new connection beyond it drops the oldest handshake of
   * that source ("busy").
   */
  maxPendingPerSource?: number;
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
  /** Handshakes in progress now. */
  readonly pending: number;
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

/** Default of {@link ListenOptions.maxPendingHandshakes}. */
export const DEFAULT_MAX_PENDING_HANDSHAKES = 64;

/** Default of {@link ListenOptions.maxPendingPerSource}. */
export const DEFAULT_MAX_PENDING_PER_SOURCE = 8;

/**
 * The source a connection counts against for the per-source limit: the IPv4
 * address, or the /64 prefix of an IPv6 address (one host usually has a whole
 * /64 to pick addresses from).
 */
export function sourceOf(hostname: string): string {
  const host = hostname.replace(/%.*$/, "");
  if (!host.includes(":")) return host;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  if (mapped) return mapped[1];
  const [head, tail] = host.split("::");
  const h = head ? head.split(":") : [];
  const t = tail === undefined ? [] : tail ? tail.split(":") : [];
  const groups = [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill("0"), ...t];
  return groups.slice(0, 4).map((g) => (parseInt(g, 16) || 0).toString(16)).join(":") + "::/64";
}

/** A positive integer option, or its default. */
function limit(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) {
    throw new PpmError(
      "transport: bad listener option",
      `${name} ${value} is not a positive integer`,
      `give ${name} as a whole number of connections, at least 1`,
      EXIT.USAGE,
    );
  }
  return value;
}

/**
 * Connects to a node and authenticates both ways.
 *
 * @throws PpmError when the node cannot be reached (connection refused,
 *   timeout), or AuthError (a PpmError with a refusal code) when the
 *   handshake fails: different cluster secrets, clocks too far apart, ...
 */
export async function connectPeer(opts: ConnectOptions): Promise<PeerConnection> {
  const ms = handshakeTimeout(opts.timeoutMs, DEFAULT_CONNECT_TIMEOUT_MS);
  const asked = opts.busyRetries ?? DEFAULT_BUSY_RETRIES;
  const retries = Number.isFinite(asked) && asked > 0 ? Math.min(Math.floor(asked), 10) : 0;
  for (let attempt = 0;; attempt++) {
    try {
      return await connectOnce(opts, ms);
    } catch (e) {
      if (!(e instanceof AuthError && e.code === "busy") || attempt >= retries) throw e;
      // The server dropped this handshake to make room (a flood, or many at once from here).
      const backoff = BUSY_BACKOFF_MS * 2 ** attempt * (0.5 + Math.random());
      await new Promise((resolve) => setTimeout(resolve, backoff));
    }
  }
}

/** Default of {@link ConnectOptions.busyRetries}. */
export const DEFAULT_BUSY_RETRIES = 3;

/** The first wait before retrying a "busy" refusal (then doubled, with jitter). */
const BUSY_BACKOFF_MS = 50;

/** One attempt of {@link connectPeer}. */
async function connectOnce(opts: ConnectOptions, ms: number): Promise<PeerConnection> {
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
    { node: opts.node, peer, remote: where, addrs: socketAddrs(conn) },
    opts.connection,
  );
}

/** What the steps of a running listener share. */
interface Listening {
  /** The listener's options. */
  opts: ListenOptions;
  /** Bound of each handshake, ms. */
  ms: number;
  /** Largest accepted clock difference, ms. */
  maxSkew: number;
  /** Nonces seen within the skew window (replays are refused). */
  nonces: NonceCache;
  /** Handshakes in progress, and their limits. */
  slots: HandshakeSlots;
  /** Handshakes being served (and what follows until the connection is handed on). */
  serving: Set<Promise<void>>;
  /** Connections refused so far, by code. */
  refused: Partial<Record<RefusalCode, number>>;
  /** Connections authenticated so far. */
  accepted: number;
  /** Set by close(). */
  stopping: boolean;
}

/**
 * Listens for nodes: authenticates each connection (concurrently, each
 * handshake bounded in time, in number per source address and overall) and
 * hands it to `onConnection`; refused ones go to `onRefused`. A bad client
 * never stops the listener from serving others: when a limit is reached, the
 * oldest handshake in the way is dropped, so a flood of silent connections
 * cannot keep a real node out.
 *
 * @throws PpmError when the address cannot be listened on, or for a bad option
 */
export function listenPeers(opts: ListenOptions): PeerListener {
  const ms = handshakeTimeout(opts.handshakeTimeoutMs, DEFAULT_HANDSHAKE_TIMEOUT_MS);
  const maxSkew = opts.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS;
  const maxPending = limit(
    opts.maxPendingHandshakes,
    DEFAULT_MAX_PENDING_HANDSHAKES,
    "maxPendingHandshakes",
  );
  const maxPerSource = limit(
    opts.maxPendingPerSource,
    DEFAULT_MAX_PENDING_PER_SOURCE,
    "maxPendingPerSource",
  );
  const listener = listenOn(opts.hostname ?? "0.0.0.0", opts.port);
  const st: Listening = {
    opts,
    ms,
    maxSkew,
    nonces: new NonceCache(2 * maxSkew),
    slots: new HandshakeSlots(maxPending, maxPerSource),
    serving: new Set(),
    refused: {},
    accepted: 0,
    stopping: false,
  };
  return listenerHandle(st, listener, acceptLoop(st, listener));
}

/** The TCP listener on `hostname`:`port`; a PpmError saying why when there is none. */
function listenOn(hostname: string, port: number): Deno.TcpListener {
  try {
    return Deno.listen({ hostname, port, transport: "tcp" });
  } catch (e) {
    const busy = e instanceof Deno.errors.AddrInUse;
    throw new PpmError(
      `transport: cannot listen on ${label(hostname, port)}`,
      busy ? "the port is in use" : (e as Error)?.message ?? String(e),
      busy ? "stop what uses it, or configure another port" : "",
      busy ? EXIT.BUSY : EXIT.FAILURE,
    );
  }
}

/** Counts a refused connection and tells `onRefused`. */
function refuse(st: Listening, err: PpmError, code: RefusalCode, remote: string): void {
  st.refused[code] = (st.refused[code] ?? 0) + 1;
  try {
    st.opts.onRefused?.({ code, reason: err.why, remote, error: err });
  } catch { /* the callback's problem */ }
}

/** Accepts connections until the listener is closed, serving each handshake concurrently. */
async function acceptLoop(st: Listening, listener: Deno.TcpListener): Promise<void> {
  while (!st.stopping) {
    let conn: Deno.Conn;
    try {
      conn = await listener.accept();
    } catch (e) {
      if (st.stopping || e instanceof Deno.errors.BadResource) break; // closed
      // Out of file descriptors or the like: a flood must not end the listener.
      await new Promise((resolve) => setTimeout(resolve, ACCEPT_RETRY_MS));
      continue;
    }
    if (st.stopping) {
      closeQuietly(conn);
      break;
    }
    const source = sourceOf((conn.remoteAddr as Deno.NetAddr).hostname);
    const p = serve(st, st.slots.admit(conn, source)).catch(() => {}).finally(() =>
      st.serving.delete(p)
    );
    st.serving.add(p);
  }
}

/** Runs the server side of one handshake; an authenticated connection goes to `onConnection`. */
async function serve(st: Listening, h: HalfOpen): Promise<void> {
  const { conn } = h;
  const addr = conn.remoteAddr as Deno.NetAddr;
  const remote = label(addr.hostname, addr.port);
  tune(conn);
  const reader = new FrameReader(conn, { peer: remote });
  const writer = h.writer = new FrameWriter(conn, { peer: remote });
  const io: HandshakeIo = { reader, writer, abort: () => closeQuietly(conn), label: remote };
  let peer: string;
  try {
    ({ peer } = await serverHandshake(io, {
      secret: st.opts.secret,
      node: st.opts.node,
      timeoutMs: st.ms,
      maxClockSkewMs: st.maxSkew,
      nonces: st.nonces,
      clock: st.opts.clock,
    }));
  } catch (e) {
    if (h.dropped === undefined) closeQuietly(conn); // a dropped one closes after its "busy"
    if (st.stopping) return;
    if (h.dropped !== undefined) {
      const what = `transport: refused a connection from ${remote}`;
      refuse(st, new AuthError("busy", what, h.dropped, BUSY_FIX), "busy", remote);
      return;
    }
    const err = e instanceof PpmError ? e : new PpmError("transport: handshake", String(e));
    refuse(st, err, e instanceof AuthError ? e.code : "malformed", remote);
    return;
  } finally {
    st.slots.forget(h);
  }
  if (st.stopping || h.dropped !== undefined) return closeQuietly(conn);
  st.accepted++;
  const pc = new PeerConnection(conn, reader, writer, {
    node: st.opts.node,
    peer,
    remote,
    addrs: socketAddrs(conn),
  }, st.opts.connection);
  handOn(st.opts, pc);
}

/** Gives `pc` to `onConnection`; when that throws, closes it and tells `onError`. */
function handOn(opts: ListenOptions, pc: PeerConnection): void {
  Promise.resolve().then(() => opts.onConnection(pc)).catch((e) => {
    pc.close(`the receiving node failed: ${(e as Error)?.message ?? e}`);
    try {
      opts.onError?.(e, pc);
    } catch { /* the callback's problem */ }
  });
}

/** The {@link PeerListener} of a running listener. */
function listenerHandle(
  st: Listening,
  listener: Deno.TcpListener,
  loop: Promise<void>,
): PeerListener {
  return {
    addr: listener.addr,
    get accepted() {
      return st.accepted;
    },
    get pending() {
      return st.slots.pending.size;
    },
    refused: st.refused,
    async close() {
      if (st.stopping) return await loop;
      st.stopping = true;
      try {
        listener.close();
      } catch { /* closed */ }
      await loop;
      for (const conn of st.slots.pending.keys()) closeQuietly(conn);
      await Promise.allSettled([...st.serving]);
    },
  };
}

/** How long the listener waits after a failed accept (EMFILE, ...) before the next. */
const ACCEPT_RETRY_MS = 50;

/** The fix for a handshake dropped to make room. */
const BUSY_FIX =
  "if this is a real node, retry; if not, something floods this node with connections " +
  "(block it at the firewall)";
