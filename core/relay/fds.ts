/**
 * Relays of a migrated process's descriptors whose other end stays behind:
 * a pipe or FIFO end, or a unix stream socket, whose peer is another
 * process on the node the process left (its parent, an MPI proxy ...).
 *
 * At the source the agent holds a copy of the process's own end (taken
 * with pidfd_getfd while it was frozen; the deputy keeps the original);
 * at the destination the restored process gets a fresh pipe or socketpair
 * end at the same number and the agent holds the other end. Each relay
 * carries the bytes between the two agents' descriptors on two streams of
 * the migration's connection, one each way ({@link fdStreams}), in order,
 * and with backpressure: a chunk is read only once the one before it was
 * written. Bytes the peer wrote before the freeze and the process had not
 * read stay in the source's end, and are the first the source reads: they
 * are neither lost (should the migration fail, the process finds them
 * still there) nor sent twice.
 *
 * An end of file travels: the peer closing its end (or shutting down its
 * writing) ends the stream to the destination, where the agent closes its
 * write end (a pipe) or shuts its socket down for writing, so the process
 * reads its end of file; the process closing its end does the same the
 * other way.
 *
 * A pipe's unused way back carries one thing: its end says that nobody
 * reads the pipe any more at that side, and the reader here stops and
 * closes, so the writer gets EPIPE as on the pipe itself. A relay that
 * ended (not stopped, not cut) says so (`onEnded`): the source then has the
 * deputy close its copy too (`close FD`, core/deputy/deputy.c).
 *
 * A process that moves on (node2 → node3) is relayed again from node2: its
 * end there is a pipe or socket whose other end node2's agent holds, so the
 * chain of relays ends at the original peer at home. The kernel object at
 * node2 keeps the order, and every end travels the chain link by link.
 *
 * @module
 */
import { close, readFdWithin, writeFd } from "../../ffi/libc.ts";
import { getFl, setFl, shutdownSocket } from "../../ffi/socket.ts";
import type { MigrationChannel } from "../transport/channel.ts";
import { MAX_RELAYED, RELAYED_ENDS } from "../image/fds.ts";

export { MAX_RELAYED, RELAYED_ENDS };

/** A relayed descriptor's kind: the read or write end of a pipe (or FIFO), or a unix stream socket. */
export type RelayedEnd = typeof RELAYED_ENDS[number];

/** The first stream id of the descriptor relays (below: the image and the standard streams). */
export const FD_STREAM_BASE = 64;

/** The two streams of relay number `index` (0 ≤ index < {@link MAX_RELAYED}), seen from `side`. */
export function fdStreams(
  index: number,
  side: "source" | "destination",
): { out: number; in: number } {
  if (!Number.isInteger(index) || index < 0 || index >= MAX_RELAYED) {
    throw new RangeError(`relay number ${index} is out of range`);
  }
  const toDest = FD_STREAM_BASE + 2 * index;
  return side === "source" ? { out: toDest, in: toDest + 1 } : { out: toDest + 1, in: toDest };
}

/** What the agent does with its descriptor of a relay. */
export interface RelayRole {
  /** It reads it and sends what it reads. */
  read: boolean;
  /** It writes what arrives into it. */
  write: boolean;
  /** It is a socket (an end of writing is a shutdown, not a close). */
  socket: boolean;
}

/**
 * The agent's role at `side`: at the source it holds a copy of the
 * process's end, at the destination the other end of the process's new one.
 */
export function relayRole(end: RelayedEnd, side: "source" | "destination"): RelayRole {
  if (end === "unix-stream" || end === "tcp-stream") {
    return { read: true, write: true, socket: true };
  }
  const readsHere = (end === "pipe-read") === (side === "source");
  return { read: readsHere, write: !readsHere, socket: false };
}

const O_NONBLOCK = 0o4000;
const CHUNK = 65536;

/** One relayed descriptor at one side. */
export class FdRelay {
  readonly #fd: number;
  readonly #role: RelayRole;
  readonly #streams: { out: number; in: number };
  readonly #log: (s: string) => void;
  readonly #onEnded?: () => void;
  #stopping = false;
  #broken = false;
  /** The far side's reader of a pipe is gone: nothing more is read here for it. */
  #readerGone = false;
  #closed = false;
  #done?: Promise<void>;
  /** Bytes sent and taken so far. */
  readonly counts = { sent: 0, received: 0 };

  /**
   * @param fd the agent's descriptor (this relay owns it and closes it)
   * @param role what it does with it ({@link relayRole})
   * @param streams its streams on the connection ({@link fdStreams})
   * @param onEnded called once the descriptor was closed because every way
   *   it relays ended (end of file, a shutdown, or nobody reading), not when
   *   the relay was stopped or its connection broke: the source then has the
   *   deputy close its copy too, so the peer sees the end
   */
  constructor(
    fd: number,
    role: RelayRole,
    streams: { out: number; in: number },
    log: (s: string) => void = () => {},
    onEnded?: () => void,
  ) {
    this.#fd = fd;
    this.#role = role;
    this.#streams = streams;
    this.#log = log;
    this.#onEnded = onEnded;
  }

  /**
   * Relays on `channel` until both ways ended (or the connection broke);
   * then the descriptor is closed. The descriptor is made blocking first: a
   * write waits for room (the backpressure), on a worker thread.
   */
  run(channel: MigrationChannel): Promise<void> {
    this.#done ??= this.#run(channel);
    return this.#done;
  }

  /** Settles once its run ended (at once when it never ran). */
  get done(): Promise<void> {
    return this.#done ?? Promise.resolve();
  }

  async #run(channel: MigrationChannel): Promise<void> {
    try {
      const fl = getFl(this.#fd);
      if (fl & O_NONBLOCK) setFl(this.#fd, fl & ~O_NONBLOCK);
    } catch (e) {
      this.#log(`descriptor relay: ${(e as Error).message}`);
    }
    // A connection that ends stops the reading even when the descriptor never says a word.
    channel.closed?.then(() => this.#broken = true, () => this.#broken = true);
    // A pipe's unused way carries one thing: its end says nobody reads the other side.
    if (this.#role.read && !this.#role.write) this.#watchReader(channel);
    await Promise.all([
      this.#role.read ? this.#outbound(channel) : undefined,
      this.#role.write ? this.#inbound(channel) : undefined,
    ]);
    this.#close();
    if (this.#stopping || this.#broken || !this.#onEnded) return;
    try {
      this.#onEnded();
    } catch (e) {
      this.#log(`descriptor relay end: ${(e as Error).message}`);
    }
  }

  /**
   * Stops reading (the relay is given up, or its process ended); what comes
   * the other way is still written until that stream ends, then the
   * descriptor closes.
   */
  stop(): void {
    this.#stopping = true;
  }

  /** The descriptor into the out stream, until its end of file. */
  async #outbound(channel: MigrationChannel): Promise<void> {
    const sink = channel.streamSink(this.#streams.out);
    const buf = new Uint8Array(CHUNK);
    try {
      while (!this.#stopping && !this.#readerGone && !this.#broken) {
        let n: number | null;
        try {
          // Polled, so a relay given up ends even when nothing ever comes.
          n = await readFdWithin(this.#fd, buf, 500);
        } catch {
          n = 0; // unreadable (ECONNRESET): as an end of file
        }
        if (n === null) continue;
        if (n === 0) break;
        // Sent before the next read: the connection's own backpressure holds the reading.
        await sink(buf.slice(0, n));
        this.counts.sent += n;
      }
      // Ended too when the reader there is gone: the far side, draining, then closes its end.
      if (!this.#stopping && !this.#broken) await channel.endStream(this.#streams.out);
    } catch (e) {
      this.#broken = true;
      this.#log(`descriptor relay out: ${(e as Error).message}`);
    }
  }

  /**
   * The unused in stream of a pipe read here: its end (never a chunk) says
   * that nobody reads at the other side any more (the process, or the peer,
   * closed its read end), so reading stops and the descriptor closes: the
   * writer here gets EPIPE, as it would on the pipe itself.
   */
  async #watchReader(channel: MigrationChannel): Promise<void> {
    try {
      for await (const _ of channel.streamSource(this.#streams.in)) { /* never sent */ }
      this.#readerGone = true;
    } catch {
      this.#broken = true; // the connection ended: so does the run
    }
  }

  /** The in stream into the descriptor, until it ends; then the end of writing here. */
  async #inbound(channel: MigrationChannel): Promise<void> {
    let writable = true;
    try {
      for await (const chunk of channel.streamSource(this.#streams.in)) {
        this.counts.received += chunk.length;
        if (!writable) continue; // drained, so the stream never stalls the connection
        try {
          await writeFd(this.#fd, new Uint8Array(chunk));
        } catch {
          writable = false; // nobody reads it any more (EPIPE)
          // A pipe: the unused way back says so, and the other side stops reading.
          if (!this.#role.read) await channel.endStream(this.#streams.out).catch(() => {});
        }
      }
    } catch (e) {
      this.#broken = true;
      this.#log(`descriptor relay in: ${(e as Error).message}`);
    }
    this.#endWriting();
  }

  #endWriting(): void {
    if (this.#closed) return;
    if (this.#role.socket) {
      try {
        shutdownSocket(this.#fd, 1);
      } catch { /* not connected any more */ }
    } else this.#close();
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      close(this.#fd);
    } catch { /* closed */ }
  }
}

/**
 * The descriptor relays of one process on one connection: run together,
 * stopped together (its end), and waited for before the connection closes
 * (core/agent/outbound.ts).
 */
export class FdRelaySet {
  readonly #relays: FdRelay[];

  constructor(relays: FdRelay[]) {
    this.#relays = relays;
  }

  /** How many. */
  get size(): number {
    return this.#relays.length;
  }

  /** Starts them all on `channel`. */
  run(channel: MigrationChannel): void {
    for (const r of this.#relays) r.run(channel);
  }

  /** Settles once every run ended. */
  get done(): Promise<void> {
    return Promise.all(this.#relays.map((r) => r.done)).then(() => {});
  }

  /**
   * The process ended: nothing more is read for it; what it wrote still
   * comes in until the other side ends those streams.
   */
  stop(): void {
    for (const r of this.#relays) r.stop();
  }
}
