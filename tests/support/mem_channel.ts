/**
 * An in-memory migration connection for relay tests: two ends whose byte
 * streams hold at most a few chunks (so backpressure shows), with control
 * messages, and a close that ends every stream of both ends (as a broken
 * connection: a source being read throws).
 *
 * @module
 */
import type { MigrationChannel } from "../../core/transport/channel.ts";

/** A stream's queue: chunks, its end, and who waits. */
class Queue {
  items: Uint8Array[] = [];
  ended = false;
  wake: (() => void)[] = [];
  /** The most chunks a stream holds before its writer waits. */
  static readonly MAX = 4;
  notify() {
    for (const w of this.wake.splice(0)) w();
  }
  async waitFor(ok: () => boolean) {
    while (!ok()) await new Promise<void>((r) => this.wake.push(r));
  }
}

/** One end of {@link channelPair}. */
export type MemChannel = MigrationChannel & { isClosed: () => boolean };

/** Two ends of an in-memory connection with bounded streams and control messages. */
export function channelPair(): [MemChannel, MemChannel] {
  const dirs = [new Map<number, Queue>(), new Map<number, Queue>()];
  const inbox = [[] as unknown[], [] as unknown[]];
  const bell = new Queue();
  let closed = false;
  let closedNow!: () => void;
  const closedP = new Promise<void>((r) => closedNow = r);
  const q = (d: number, id: number) => {
    let x = dirs[d].get(id);
    if (!x) dirs[d].set(id, x = new Queue());
    return x;
  };
  const gone = () => new Error("the connection is closed");
  const side = (me: number): MemChannel => ({
    send: (msg) => {
      if (closed) return Promise.reject(gone());
      inbox[1 - me].push(msg);
      bell.notify();
      return Promise.resolve();
    },
    recv: async () => {
      await bell.waitFor(() => inbox[me].length > 0 || closed);
      if (!inbox[me].length) throw gone();
      return inbox[me].shift();
    },
    streamSink: (id) => async (chunk) => {
      const x = q(me, id);
      await x.waitFor(() => x.items.length < Queue.MAX || closed);
      if (closed) throw gone();
      x.items.push(new Uint8Array(chunk));
      x.notify();
    },
    endStream: (id) => {
      if (closed) return Promise.reject(gone());
      const x = q(me, id);
      x.ended = true;
      x.notify();
      return Promise.resolve();
    },
    streamSource: (id) => {
      const x = q(1 - me, id);
      return (async function* () {
        for (;;) {
          await x.waitFor(() => x.items.length > 0 || x.ended || closed);
          const c = x.items.shift();
          x.notify();
          if (c) yield c;
          else if (x.ended) return;
          else throw gone();
        }
      })();
    },
    closed: closedP,
    close: () => {
      closed = true;
      closedNow();
      bell.notify();
      for (const d of dirs) for (const x of d.values()) x.notify();
    },
    isClosed: () => closed,
  });
  return [side(0), side(1)];
}
