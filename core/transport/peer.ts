/**
 * An authenticated, encrypted connection to another node: control messages both ways,
 * and any number of concurrent byte streams (stream ids 0..65535) each way.
 *
 * Backpressure: received DATA waits in a bounded inbox per stream until its
 * reader takes it. When an inbox (or all of them together, or the control
 * messages) reaches its limit, the connection stops reading its socket until
 * a reader takes something. TCP flow control then fills the sender's socket
 * buffer and its writes, hence its `streamSink` calls, wait. Memory stays
 * bounded; the cost is that a stream nobody reads stalls the whole connection
 * (control messages included) once it holds its limit, so read every stream
 * you receive, or discard it.
 *
 * @module
 */

import { EXIT, PpmError } from "../errors.ts";
import type { ByteReader, ByteWriter } from "../host/bytes.ts";
import { withTimeout } from "./deadline.ts";
import { checkStreamId, type FrameReader, type FrameWriter, KIND } from "./frame.ts";
import { Inbox } from "./inbox.ts";

/** Default bound of buffered DATA per stream (64 MiB). */
export const DEFAULT_STREAM_BUFFER_BYTES = 64 * 1024 * 1024;

/** Default bound of buffered DATA of all streams together (256 MiB). */
export const DEFAULT_TOTAL_BUFFER_BYTES = 256 * 1024 * 1024;

/** Default bound of {@link PeerConnection.recv} (120 s). */
export const DEFAULT_RECV_TIMEOUT_MS = 120_000;

/** How long {@link PeerConnection.close} waits for queued writes and the peer's close. */
export const LINGER_MS = 2_000;

/** Most control messages held unread. */
const MAX_QUEUED_MESSAGES = 4096;

/** Most chunks held unread per stream (tiny chunks cost more than their bytes). */
const MAX_QUEUED_CHUNKS = 65536;

/** The socket under a connection: a Deno.Conn, or anything with these. */
export interface Duplex extends ByteReader, ByteWriter {
  /** Closes it. */
  close(): void;
  /** Sends FIN: no more writes. */
  closeWrite(): Promise<void>;
}

/** Options of a {@link PeerConnection}. */
export interface PeerConnectionOptions {
  /** Bound of buffered DATA per stream (default 64 MiB). */
  streamBufferBytes?: number;
  /** Bound of buffered DATA of all streams together (default 256 MiB). */
  totalBufferBytes?: number;
  /** Default bound of `recv` in ms (default 120 s; Infinity waits until the connection ends). */
  recvTimeoutMs?: number;
}

/** Who is at both ends. */
export interface PeerInfo {
  /** This node's name. */
  node: string;
  /** The peer's node name, as proven in the handshake. */
  peer: string;
  /** The peer's address: "10.0.0.2:7790". */
  remote: string;
  /** The IP addresses of both ends of the socket, when it is a TCP one. */
  addrs?: SocketAddrs;
}

/** The IP addresses of a connection's two ends. */
export interface SocketAddrs {
  /** This end's: "10.0.0.1". */
  local: string;
  /** The peer's: "10.0.0.2". */
  remote: string;
}

/** The IP addresses of a TCP connection's ends; undefined for anything else. */
export function socketAddrs(conn: unknown): SocketAddrs | undefined {
  const c = conn as { localAddr?: Deno.Addr; remoteAddr?: Deno.Addr };
  const l = c.localAddr, r = c.remoteAddr;
  if (l?.transport !== "tcp" || r?.transport !== "tcp") return undefined;
  return { local: (l as Deno.NetAddr).hostname, remote: (r as Deno.NetAddr).hostname };
}

/** Counters of a connection. */
export interface TransportStats {
  /** Bytes received, frames and tags included. */
  bytesIn: number;
  /** Bytes sent, frames and tags included. */
  bytesOut: number;
  /** Frames received. */
  framesIn: number;
  /** Frames sent. */
  framesOut: number;
  /** DATA bytes received and not yet taken by a reader. */
  buffered: number;
}

/** An authenticated connection; made by connectPeer and listenPeers. */
export class PeerConnection {
  /** This node's name. */
  readonly node: string;
  /** The peer's node name. */
  readonly peer: string;
  /** The peer's address. */
  readonly remote: string;
  /** The IP addresses of both ends (a TCP connection). */
  readonly addrs?: SocketAddrs;
  /** Settles when the connection is closed and its socket released. */
  readonly closed: Promise<void>;

  #conn: Duplex;
  #reader: FrameReader;
  #writer: FrameWriter;
  #control: Inbox<unknown>;
  #inbound = new Map<number, Inbox<Uint8Array>>();
  #reading = new Set<number>();
  #ended = new Set<number>();
  #streamLimit: number;
  #totalLimit: number;
  #recvTimeoutMs: number;
  #buffered = 0;
  #drainWaiters: (() => void)[] = [];
  #end: PpmError | undefined;
  #pump: Promise<void>;
  #resolveClosed!: () => void;
  #released = false;

  /**
   * Takes over a socket whose handshake is done: `reader` and `writer` are
   * already authenticated. Starts reading at once.
   */
  constructor(
    conn: Duplex,
    reader: FrameReader,
    writer: FrameWriter,
    info: PeerInfo,
    opts: PeerConnectionOptions = {},
  ) {
    this.#conn = conn;
    this.#reader = reader;
    this.#writer = writer;
    this.node = info.node;
    this.peer = info.peer;
    this.remote = info.remote;
    this.addrs = info.addrs;
    reader.peer = writer.peer = `${info.peer} (${info.remote})`;
    this.#streamLimit = opts.streamBufferBytes ?? DEFAULT_STREAM_BUFFER_BYTES;
    this.#totalLimit = opts.totalBufferBytes ?? DEFAULT_TOTAL_BUFFER_BYTES;
    this.#recvTimeoutMs = opts.recvTimeoutMs ?? DEFAULT_RECV_TIMEOUT_MS;
    this.#control = new Inbox(
      { bytes: this.#streamLimit, items: MAX_QUEUED_MESSAGES },
      (delta) => delta < 0 && this.#drained(),
    );
    this.closed = new Promise((resolve) => this.#resolveClosed = resolve);
    this.#pump = this.#readLoop();
  }

  /** Counters of this connection. */
  stats(): TransportStats {
    return {
      bytesIn: this.#reader.bytesRead,
      bytesOut: this.#writer.bytesWritten,
      framesIn: this.#reader.framesRead,
      framesOut: this.#writer.framesWritten,
      buffered: this.#buffered,
    };
  }

  /** DATA bytes of `stream` received and not yet taken by its reader. */
  bufferedBytes(stream: number): number {
    return this.#inbound.get(stream)?.bytes ?? 0;
  }

  /**
   * Sends a control message (any msgpack value; bigint as 64-bit integers).
   *
   * @throws PpmError when the connection is closed, the value cannot be
   *   encoded or it is over 16 MiB encoded
   */
  send(msg: unknown): Promise<void> {
    if (this.#end) return Promise.reject(this.#end);
    return this.#writer.control(msg);
  }

  /**
   * The next control message. Messages that arrived before the peer closed
   * are still returned; then this throws.
   *
   * @param timeoutMs how long to wait (default: the connection's recvTimeoutMs)
   * @throws PpmError when the connection ended or nothing came in time (the
   *   connection stays usable after a timeout)
   */
  async recv(timeoutMs = this.#recvTimeoutMs): Promise<unknown> {
    const r = await this.#control.take(timeoutMs, () =>
      new PpmError(
        `transport: no message from ${this.#reader.peer}`,
        `none arrived within ${timeoutMs} ms`,
        "check that the peer is alive and not overloaded",
        EXIT.TIMEOUT,
      ));
    if (r === null) throw this.#end!; // the control inbox only ends with an error
    return r.value;
  }

  /**
   * A sink writing chunks into byte stream `stream` (as DATA frames of at
   * most 4 MiB). A chunk is fully handed to the socket when its promise
   * settles, so the caller may reuse it then. Calls may overlap; chunks go
   * out in call order.
   */
  streamSink(stream: number): (chunk: Uint8Array) => Promise<void> {
    checkStreamId(stream);
    return (chunk) => {
      if (this.#end) return Promise.reject(this.#end);
      if (this.#ended.has(stream)) return Promise.reject(this.#streamEnded(stream));
      return this.#writer.data(stream, chunk);
    };
  }

  /** Ends byte stream `stream`: its reader sees the end after the chunks sent before. */
  endStream(stream: number): Promise<void> {
    checkStreamId(stream);
    if (this.#end) return Promise.reject(this.#end);
    if (this.#ended.has(stream)) return Promise.reject(this.#streamEnded(stream));
    this.#ended.add(stream);
    return this.#writer.endData(stream);
  }

  /**
   * Sends everything `source` yields as byte stream `stream`, then ends it.
   *
   * @returns the bytes sent
   */
  async sendStream(source: AsyncIterable<Uint8Array>, stream: number): Promise<number> {
    const sink = this.streamSink(stream);
    let bytes = 0;
    for await (const chunk of source) {
      await sink(chunk);
      bytes += chunk.length;
    }
    await this.endStream(stream);
    return bytes;
  }

  /**
   * The bytes of byte stream `stream` as they arrive, including those that
   * arrived before this call; it ends when the peer ends the stream and
   * throws a PpmError when the connection ends first. Every chunk is a
   * buffer of its own, never reused (readImage may keep views of it).
   * Leaving the loop early discards the rest of the stream. Each stream has
   * one reader.
   *
   * @throws PpmError at once when the stream already has a reader
   */
  streamSource(stream: number): AsyncIterable<Uint8Array> {
    checkStreamId(stream);
    if (this.#reading.has(stream)) {
      throw new PpmError(
        `transport: cannot read stream ${stream} from ${this.#reader.peer}`,
        "it already has a reader",
        "",
        EXIT.USAGE,
      );
    }
    this.#reading.add(stream);
    const inbox = this.#inbox(stream);
    return (async function* () {
      let done = false;
      try {
        for (let r; (r = await inbox.take());) yield r.value;
        done = true;
      } finally {
        if (!done) inbox.discard();
      }
    })();
  }

  /** Drops what stream `stream` holds and whatever more arrives for it. */
  discardStream(stream: number): void {
    checkStreamId(stream);
    this.#reading.add(stream);
    this.#inbox(stream).discard();
  }

  /**
   * Closes the connection: waits (briefly) for queued writes, optionally
   * tells the peer why with an ERROR frame, shuts down the sending side, and
   * releases the socket once the peer closed too or after {@link LINGER_MS}.
   * Pending and later calls fail at once. `closed` settles when it is done.
   *
   * @param reason if given, sent to the peer, whose calls then fail with it
   */
  close(reason?: string): void {
    if (this.#end) return;
    this.#fail(
      new PpmError(
        `transport: connection to ${this.#reader.peer}`,
        reason ? `it was closed here: ${reason}` : "it was closed here",
      ),
      true,
    );
    this.#linger(reason).finally(() => this.#release());
  }

  async #linger(reason: string | undefined): Promise<void> {
    const deadline = () => new Error("linger");
    try {
      const last = reason === undefined
        ? this.#writer.flush()
        : this.#writer.error("closed", reason);
      await withTimeout(last, LINGER_MS, deadline);
    } catch { /* gone */ }
    try {
      await this.#conn.closeWrite();
    } catch { /* gone */ }
    await withTimeout(this.#pump, LINGER_MS, deadline).catch(() => {});
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    try {
      this.#conn.close();
    } catch { /* already */ }
    this.#pump.finally(() => this.#resolveClosed());
  }

  /** Ends every pending and later call with `err`; `drop` discards what was received. */
  #fail(err: PpmError, drop: boolean): void {
    if (this.#end) return;
    this.#end = err;
    this.#control.fail(err, drop);
    for (const [id, inbox] of this.#inbound) {
      inbox.fail(
        drop ? err : new PpmError(
          `transport: stream ${id} from ${this.#reader.peer} was cut short`,
          err.why,
          err.fix,
          err.exitCode,
        ),
        drop,
      );
    }
    this.#drained();
  }

  #streamEnded(stream: number): PpmError {
    return new PpmError(
      `transport: cannot write stream ${stream} to ${this.#reader.peer}`,
      "it has ended",
      "",
      EXIT.USAGE,
    );
  }

  #inbox(stream: number): Inbox<Uint8Array> {
    let inbox = this.#inbound.get(stream);
    if (!inbox) {
      inbox = new Inbox<Uint8Array>(
        { bytes: this.#streamLimit, items: MAX_QUEUED_CHUNKS },
        (delta) => {
          this.#buffered += delta;
          if (delta < 0) this.#drained();
        },
      );
      this.#inbound.set(stream, inbox);
      if (this.#end) inbox.fail(this.#end, true);
    }
    return inbox;
  }

  /** Wakes a read loop paused for room. */
  #drained(): void {
    for (const w of this.#drainWaiters.splice(0)) w();
  }

  /** Waits while `inbox` or all streams together are at their limit. */
  async #room(inbox: Inbox<unknown>): Promise<void> {
    while (!this.#end && (inbox.full || this.#buffered >= this.#totalLimit)) {
      await new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
    }
  }

  async #readLoop(): Promise<void> {
    let end: PpmError, broken = false;
    try {
      end = await this.#dispatch();
    } catch (e) {
      broken = true;
      end = e instanceof PpmError ? e : new PpmError(
        `transport: connection to ${this.#reader.peer}`,
        `receiving failed: ${(e as Error)?.message ?? e}`,
      );
    }
    if (this.#end) return; // closed here: close() releases the socket
    this.#fail(end, false);
    if (broken) {
      // Tell the peer why (a bad frame); best effort, it may be gone.
      await withTimeout(this.#writer.error("protocol", end.message), 500, () => new Error())
        .catch(() => {});
    }
    this.#release();
  }

  /** Routes frames to the inboxes; returns why it stopped. */
  async #dispatch(): Promise<PpmError> {
    for (;;) {
      const f = await this.#reader.next();
      if (f === null) {
        return new PpmError(
          `transport: connection to ${this.#reader.peer}`,
          "the peer closed it",
          "",
        );
      }
      if (f.kind === KIND.CONTROL) {
        this.#control.push(f.value, f.size);
        await this.#room(this.#control);
      } else if (f.kind === KIND.ERROR) {
        return new PpmError(
          `transport: ${this.#reader.peer} ended the connection`,
          `${f.code}: ${f.message}`,
        );
      } else {
        if (this.#receivedEnd(f.stream)) {
          throw new PpmError(
            `transport: frame ${this.#reader.framesRead - 1} from ${this.#reader.peer}`,
            `stream ${f.stream} continues after its end`,
            "the peer runs another ppm version, or misbehaves",
          );
        }
        const inbox = this.#inbox(f.stream);
        if (f.kind === KIND.END_DATA) {
          inbox.end();
          continue;
        }
        if (f.data.length === 0) continue; // sizes stay positive, so a take always frees room
        inbox.push(f.data, f.data.length);
        await this.#room(inbox);
      }
    }
  }

  #receivedEnd(stream: number): boolean {
    const inbox = this.#inbound.get(stream);
    return inbox !== undefined && inbox.ended;
  }
}
