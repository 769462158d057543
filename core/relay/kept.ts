/**
 * The source's side of a migrated process's standard streams: the
 * descriptors it had here (its terminal, a file, a pipe) stay open in the
 * agent; what the process writes at the destination comes back on the
 * migration connection (streams STDOUT, STDERR) and goes into them, and
 * what arrives on its stdin here goes out (stream STDIN).
 *
 * When the connection breaks before the streams ended (the destination's
 * agent restarted, the link went down), the descriptors stay open: the
 * destination's agent reconnects and the relay goes on where it stopped
 * ({@link KeptRelay.run} again, on the new connection).
 *
 * @module
 */
import { close, readFdWithin, writeFd } from "../../ffi/libc.ts";
import { type MigrationChannel, STREAM } from "../transport/channel.ts";
import { Replay, type StreamOffsets } from "./replay.ts";

/** Descriptors of the process's standard streams, taken before its copy here ends. */
export type KeptStdio = { 0?: number; 1?: number; 2?: number };

/** How a run of the relay ended: every stream ended, or the connection broke first. */
export type RelayEnd = "ended" | "broken";

const OUTPUTS = [[STREAM.STDOUT, 1], [STREAM.STDERR, 2]] as const;

/** The relay of one migrated process, at the node it left. */
export class KeptRelay {
  readonly #fds: KeptStdio;
  readonly #log: (s: string) => void;
  /** Output streams that ended (their descriptor closed). */
  readonly #ended = new Set<number>();
  /** Bytes taken of each output stream (the destination sends the rest again after a break). */
  readonly #received: StreamOffsets = { [STREAM.STDOUT]: 0, [STREAM.STDERR]: 0 };
  /** What was read here for stdin and sent, for sending again after a break. */
  readonly #input = new Replay();
  #inputEnded: boolean;
  #closed = false;
  /** Whether {@link received} counts from the start of the streams. */
  readonly #offsetsKnown: boolean;

  /**
   * @param fds the kept descriptors (this relay closes them)
   * @param token names the relay when the destination reconnects
   * @param opts `offsetsKnown: false` for a relay taken up by a new agent
   *   midway (from a deputy's descriptors): it does not know how much of
   *   each stream came before, so it asks for nothing to be sent again
   *   (what was in flight when the last agent stopped is lost, never
   *   repeated)
   */
  constructor(
    fds: KeptStdio,
    readonly token: string,
    log: (s: string) => void = () => {},
    opts: { offsetsKnown?: boolean } = {},
  ) {
    this.#fds = { ...fds };
    this.#log = log;
    this.#inputEnded = fds[0] === undefined;
    this.#offsetsKnown = opts.offsetsKnown ?? true;
  }

  /** True once every stream ended. */
  get done(): boolean {
    return this.#ended.size === OUTPUTS.length && this.#inputEnded;
  }

  /**
   * Bytes taken of each output stream so far (none named when they are not
   * known: the destination then sends nothing again).
   */
  get received(): StreamOffsets {
    return this.#offsetsKnown ? { ...this.#received } : {};
  }

  /**
   * Relays on `channel` until every stream ended ("ended") or the connection
   * broke ("broken": the descriptors stay open for the next run). On a run
   * after a break, `peerHas` is how much of stdin the destination took: the
   * rest is sent again first.
   */
  async run(channel: MigrationChannel, peerHas?: StreamOffsets): Promise<RelayEnd> {
    let broken = false;
    let outputDone = false;
    const output = Promise.all(
      OUTPUTS.filter(([s]) => !this.#ended.has(s)).map(async ([stream, fd]) => {
        if (!await this.#pump(channel, stream, fd)) broken = true;
      }),
    ).then(() => outputDone = true);
    const input = this.#inputEnded
      ? undefined
      : this.#feed(channel, peerHas?.[STREAM.STDIN], () => outputDone || broken).then((ok) => {
        if (!ok) broken = true;
      });
    await Promise.all([output, input]);
    if (broken && !this.#closed) return "broken";
    this.close();
    return "ended";
  }

  /** Closes every descriptor still open (the relay is given up, or done). */
  close(): void {
    this.#closed = true;
    for (const [stream, fd] of OUTPUTS) this.#endOutput(stream, fd);
    this.#endInput();
  }

  /** Output stream `stream` into kept descriptor `fd`: true when it ended, false when broken. */
  async #pump(channel: MigrationChannel, stream: number, fd: 1 | 2): Promise<boolean> {
    let bytes = 0;
    try {
      for await (const chunk of channel.streamSource(stream)) {
        // Without a descriptor the bytes are drained, so the stream never stalls the connection.
        const to = this.#fds[fd];
        if (to !== undefined) {
          try {
            await writeFd(to, new Uint8Array(chunk));
          } catch {
            // Whoever read it here is gone (a closed pipe): the rest is drained.
            this.#closeFd(fd);
          }
        }
        bytes += chunk.length;
        this.#received[stream] += chunk.length;
      }
      this.#log(`relay of stream ${stream} ended after ${bytes} bytes`);
      this.#endOutput(stream, fd);
      return true;
    } catch (e) {
      this.#log(`relay of stream ${stream} stopped after ${bytes} bytes: ${(e as Error).message}`);
      return false;
    }
  }

  /**
   * Stdin here into the STDIN stream, from what the destination has
   * (`peerHas`, after a break) on, until it ends or `stop()`; false when the
   * connection broke.
   */
  async #feed(
    channel: MigrationChannel,
    peerHas: number | undefined,
    stop: () => boolean,
  ): Promise<boolean> {
    const fd = this.#fds[0]!;
    const sink = channel.streamSink(STREAM.STDIN);
    const buf = new Uint8Array(65536);
    try {
      if (peerHas !== undefined) {
        const { chunks, lost } = this.#input.since(peerHas);
        if (lost) this.#log(`stdin: ${lost} bytes lost with the connection`);
        for (const c of chunks) await sink(c);
      }
      // Polled, so the relay ends with the process even when no input ever comes.
      while (!stop()) {
        let n: number | null;
        try {
          n = await readFdWithin(fd, buf, 500);
        } catch {
          n = 0; // unreadable: as an end of file
        }
        if (n === null) continue;
        if (n === 0) {
          await channel.endStream(STREAM.STDIN);
          this.#endInput();
          return true;
        }
        const chunk = buf.slice(0, n);
        // Recorded first: if the connection breaks during the send, the next one sends it again.
        this.#input.record(chunk);
        await sink(chunk);
      }
      return true;
    } catch {
      return false; // the connection is gone
    }
  }

  #endOutput(stream: number, fd: 1 | 2): void {
    this.#ended.add(stream);
    this.#closeFd(fd);
  }

  #endInput(): void {
    this.#inputEnded = true;
    this.#closeFd(0);
  }

  #closeFd(n: 0 | 1 | 2): void {
    const fd = this.#fds[n];
    if (fd === undefined) return;
    delete this.#fds[n];
    try {
      close(fd);
    } catch { /* closed */ }
  }
}
