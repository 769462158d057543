/**
 * The destination's side of a migrated process's standard streams: FIFOs
 * the process has as stdout, stderr (and stdin when it is relayed), read
 * and fed here and carried on a migration connection to the node it came
 * from ({@link KeptRelay} there).
 *
 * The FIFOs outlive any one connection and any one agent: a keeper
 * (keeper.c) holds their far ends, and this relay can be attached to a new
 * connection when the old one broke ({@link ArrivedRelay.attach}), or made
 * again from its record by an agent that restarted
 * ({@link ArrivedRelay.reopen}). A chunk read while no connection is up
 * waits in hand and is sent first on the next one; the FIFO holds the rest
 * (a full FIFO blocks the process, as a slow terminal would).
 *
 * @module
 */
import { join } from "node:path";
import { close, mkfifo, O, open, pollIn, readNow } from "../../ffi/libc.ts";
import { writeAll } from "../host/write_all.ts";
import { type MigrationChannel, STREAM } from "../transport/channel.ts";
import { endKeptInput, type KeeperId } from "./keeper.ts";
import type { RelayEnd } from "./kept.ts";
import { Replay, type StreamOffsets } from "./replay.ts";

/** The FIFOs of one relay. */
export interface RelayFifos {
  /** The directory holding them. */
  dir: string;
  /** The process's stdout. */
  stdout: string;
  /** Its stderr. */
  stderr: string;
  /** Its stdin, when relayed. */
  stdin?: string;
}

/** The FIFOs' paths in `dir`. */
export function fifosIn(dir: string, stdin: boolean): RelayFifos {
  return {
    dir,
    stdout: join(dir, "stdout"),
    stderr: join(dir, "stderr"),
    stdin: stdin ? join(dir, "stdin") : undefined,
  };
}

/**
 * Opens FIFO `path` for Deno without waiting for its other end: a
 * read-write descriptor held for the moment of the open makes one (Linux
 * never blocks a read-write open of a FIFO). Throws when the FIFO is gone.
 */
async function openNow(path: string, opts: Deno.OpenOptions): Promise<Deno.FsFile> {
  const hold = open(path, O.RDWR | O.NONBLOCK);
  try {
    return await Deno.open(path, opts);
  } finally {
    close(hold);
  }
}

/**
 * Opens and closes the other end of FIFO `path` without waiting, so that a
 * relay end blocked in its open returns (and then sees the end at once).
 */
function unblockFifo(path: string, mode: number): void {
  try {
    close(open(path, mode | O.NONBLOCK));
  } catch { /* ENXIO: nobody waits for a writer */ }
}

/** A connection the relay runs on. */
interface Attachment {
  channel: MigrationChannel;
  sinks: Map<number, (c: Uint8Array) => Promise<void>>;
  settle: (end: RelayEnd) => void;
  /** Settles once what the last connection lost is sent again on this one. */
  ready: Promise<void>;
  /** Output streams whose end was sent on it. */
  ends: Set<number>;
}

const OUTPUTS = [STREAM.STDOUT, STREAM.STDERR] as const;

/** The relay of one process that arrived here. */
export class ArrivedRelay {
  readonly fifos: RelayFifos;
  readonly #log: (s: string) => void;
  #keeper: KeeperId | undefined;
  #now: Attachment | undefined;
  #next: (() => void)[] = [];
  readonly #ended = new Set<number>();
  readonly #sent = new Map<number, Replay>(OUTPUTS.map((s) => [s, new Replay()]));
  /** Bytes of stdin taken from the connection (and written into the FIFO). */
  #inputTaken = 0;
  /** Opened again by a new agent and not yet attached: its offsets come from the source. */
  #fresh = false;
  #input: Deno.FsFile | undefined;
  #inputEnded: boolean;
  #started = false;
  #reopened = false;
  /** Our writers on the output FIFOs until the process holds its own ends. */
  #holds: number[] = [];
  /** The agent stops: no more reading. */
  #quiet = false;
  /** Output chunks being sent now. */
  #sending = 0;
  #stopped = false;

  private constructor(fifos: RelayFifos, log: (s: string) => void) {
    this.fifos = fifos;
    this.#log = log;
    this.#inputEnded = fifos.stdin === undefined;
  }

  /** Makes the FIFOs of a process about to be restored, in a new directory of `runDir`. */
  static async create(
    runDir: string,
    pid: number,
    stdin: boolean,
    log: (s: string) => void = () => {},
  ): Promise<ArrivedRelay> {
    const dir = await Deno.makeTempDir({ dir: runDir, prefix: `in-${pid}-` });
    const fifos = fifosIn(dir, stdin);
    for (const p of [fifos.stdout, fifos.stderr, fifos.stdin]) if (p) mkfifo(p);
    return new ArrivedRelay(fifos, log);
  }

  /**
   * The relay of a process that arrived before this agent started, from its
   * record: the FIFOs are opened again at once.
   */
  static reopen(fifos: RelayFifos, keeper: KeeperId | undefined, log: (s: string) => void) {
    const r = new ArrivedRelay(fifos, log);
    r.#keeper = keeper;
    r.#reopened = true;
    r.#fresh = true;
    r.#start(true);
    return r;
  }

  /** Bytes of stdin taken so far (the source sends the rest again on a new connection). */
  get inputTaken(): StreamOffsets {
    // Opened again by a new agent: what the last one took is unknown, and nothing is sent again.
    return this.fifos.stdin && !this.#reopened ? { [STREAM.STDIN]: this.#inputTaken } : {};
  }

  /** The keeper holding the FIFOs now. */
  set keeper(k: KeeperId | undefined) {
    this.#keeper = k;
  }

  /**
   * Relays on `channel` until every stream ended ("ended") or the connection
   * broke ("broken": attach the next one). The first attach also opens the
   * FIFOs, as the process opens its own ends. On a later one, `have` is what
   * the source took of each output stream: the rest is sent again first.
   */
  attach(channel: MigrationChannel, have?: StreamOffsets): Promise<RelayEnd> {
    if (this.#outputDone) return Promise.resolve("ended");
    return new Promise<RelayEnd>((settle) => {
      this.#now?.settle("broken");
      const a: Attachment = {
        channel,
        sinks: new Map(),
        settle,
        ready: Promise.resolve(),
        ends: new Set(),
      };
      a.ready = this.#catchUp(a, have ?? {}).catch(() => {});
      this.#now = a;
      // A connection that ends while nothing is being sent is broken too.
      channel.closed?.then(() => {
        if (this.#now !== a) return;
        this.#now = undefined;
        a.settle(this.#outputDone ? "ended" : "broken");
      });
      for (const wake of this.#next.splice(0)) wake();
      if (!this.#started) this.#start(false);
      if (!this.#inputEnded) this.#feed(this.#now);
    });
  }

  /** On a new connection: sends again what the source did not take, and the ends it missed. */
  async #catchUp(a: Attachment, have: StreamOffsets): Promise<void> {
    const fresh = this.#fresh;
    this.#fresh = false;
    // Taken at once, before any await: a chunk read from now on is sent after these.
    const plan: [number, Uint8Array[], boolean][] = [];
    for (const stream of OUTPUTS) {
      const sent = this.#sent.get(stream)!;
      if (fresh) {
        // A new agent: the stream's count goes on from what the source has.
        sent.rebase(have[stream] ?? 0);
      } else if (have[stream] !== undefined) {
        const { chunks, lost } = sent.since(have[stream]);
        if (lost) this.#log(`stream ${stream}: ${lost} bytes lost with the connection`);
        plan.push([stream, chunks, this.#ended.has(stream)]);
      }
    }
    for (const [stream, chunks, ended] of plan) {
      for (const c of chunks) await this.#sink(a, stream)(c);
      if (ended) await this.#endOn(a, stream);
    }
  }

  /** Ends output stream `stream` on `a` (once). */
  async #endOn(a: Attachment, stream: number): Promise<void> {
    if (a.ends.has(stream)) return;
    a.ends.add(stream);
    await a.channel.endStream(stream);
  }

  #sink(a: Attachment, stream: number): (c: Uint8Array) => Promise<void> {
    let sink = a.sinks.get(stream);
    if (!sink) a.sinks.set(stream, sink = a.channel.streamSink(stream));
    return sink;
  }

  /**
   * Unblocks relay ends still waiting for the process's ends (the restore
   * failed: they will never come), and stops.
   */
  abandon(): void {
    this.#stopped = true;
    this.opened();
    if (this.fifos.stdin) unblockFifo(this.fifos.stdin, O.RDONLY);
    for (const wake of this.#next.splice(0)) wake();
  }

  /** Removes the FIFOs' directory (once the relay ended or never started). */
  async remove(): Promise<void> {
    await Deno.remove(this.fifos.dir, { recursive: true }).catch(() => {});
  }

  get #outputDone(): boolean {
    return OUTPUTS.every((s) => this.#ended.has(s));
  }

  #start(reopened: boolean): void {
    this.#started = true;
    for (
      const [stream, path] of [[STREAM.STDOUT, this.fifos.stdout], [
        STREAM.STDERR,
        this.fifos.stderr,
      ]] as const
    ) {
      let fd: number;
      try {
        fd = open(path, O.RDONLY | O.NONBLOCK);
        // Until the process holds its end, a writer of ours keeps the FIFO from reading as ended.
        if (!reopened) this.#holds.push(open(path, O.RDWR | O.NONBLOCK));
      } catch (e) {
        this.#log(`stream ${stream} relay: ${(e as Error).message}`);
        this.#outputEnded(stream);
        continue;
      }
      this.#outputs(stream, fd);
    }
  }

  /** The restored process holds its ends of the FIFOs now: their end is its end. */
  opened(): void {
    for (const fd of this.#holds.splice(0)) close(fd);
  }

  /**
   * The agent stops: reads no more output (what the process writes waits in
   * its FIFOs for the next agent) and waits, at most `ms`, for what was read
   * to be sent.
   */
  async quiesce(ms: number): Promise<void> {
    this.#quiet = true;
    const until = Date.now() + ms;
    while (this.#sending > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  }

  /** The connection to send on: the current one, or the next one attached. */
  async #attachment(): Promise<Attachment | undefined> {
    while (!this.#now && !this.#stopped) await new Promise<void>((r) => this.#next.push(r));
    return this.#now;
  }

  /**
   * Runs `op` on the current connection, once it caught up. On a broken one:
   * again on the next (`again`), or, for data the next one sends again from
   * the record, only waits for it (so nothing more is read meanwhile).
   */
  async #onChannel(op: (a: Attachment) => Promise<void>, again: boolean): Promise<void> {
    for (;;) {
      const a = await this.#attachment();
      if (!a) return; // stopped
      try {
        await a.ready;
        await op(a);
        return;
      } catch (e) {
        if (this.#now === a) {
          this.#now = undefined;
          this.#log(`relay to the source broke: ${(e as Error).message}`);
          a.settle("broken");
        }
        if (!again) {
          const next = await this.#attachment();
          await next?.ready;
          return;
        }
      }
    }
  }

  /** Reads output FIFO descriptor `fd` into stream `stream` until its writers are all gone. */
  async #outputs(stream: number, fd: number): Promise<void> {
    let bytes = 0;
    const buf = new Uint8Array(65536);
    try {
      for (;;) {
        // Polled, and read only while the agent is not stopping: a chunk never dies with it.
        if (this.#quiet) return;
        if (!(await pollIn(fd, 500)) || this.#quiet) continue;
        const n = readNow(fd, buf);
        if (n === null) continue;
        if (n === 0) break;
        const chunk = buf.slice(0, n);
        this.#sending++;
        try {
          // Recorded as it goes out (not while waiting for a connection, or the next one's
          // catch-up would send it too): if the connection breaks during the send, the next
          // one sends it again.
          await this.#onChannel((a) => {
            this.#sent.get(stream)!.record(chunk);
            return this.#sink(a, stream)(chunk);
          }, false);
        } finally {
          this.#sending--;
        }
        bytes += n;
      }
    } catch (e) {
      this.#log(`stream ${stream} relay: ${(e as Error).message}`);
    } finally {
      close(fd);
    }
    this.#log(`stream ${stream} relay ended after ${bytes} bytes`);
    await this.#outputEnded(stream);
  }

  /** Output stream `stream` ended here: its end goes to the source; the last one ends the relay. */
  async #outputEnded(stream: number): Promise<void> {
    this.#ended.add(stream);
    await this.#onChannel((a) => this.#endOn(a, stream), true);
    if (this.#outputDone) {
      this.#stopped = true;
      this.#endInput();
      this.#now?.settle("ended");
    }
  }

  /** Feeds the stdin FIFO from stream STDIN of attachment `a`, until it ends or `a` breaks. */
  async #feed(a: Attachment): Promise<void> {
    try {
      this.#input ??= this.#reopened
        ? await openNow(this.fifos.stdin!, { write: true })
        : await Deno.open(this.fifos.stdin!, { write: true });
      for await (const chunk of a.channel.streamSource(STREAM.STDIN)) {
        try {
          await writeAll(this.#input, chunk);
        } catch {
          break; // the process stopped reading (it ended)
        }
      }
      this.#endInput();
    } catch {
      // The connection broke: the next attach feeds on (the process's input stays open).
      if (this.#now !== a) return;
      if (this.#stopped) this.#endInput();
    }
  }

  #endInput(): void {
    if (this.#inputEnded) return;
    this.#inputEnded = true;
    try {
      this.#input?.close();
    } catch { /* closed */ }
    this.#input = undefined;
    if (this.#keeper) endKeptInput(this.#keeper);
  }
}
