/**
 * The listener's handshakes in progress, and the limits on them: at most so
 * many at once overall and per source address; a new connection beyond a
 * limit drops the oldest handshake in the way (it is told "busy").
 *
 * @module
 */
import { withTimeout } from "./deadline.ts";
import type { FrameWriter } from "./frame.ts";

/** A handshake in progress on the listener. */
export interface HalfOpen {
  /** Its connection. */
  conn: Deno.Conn;
  /** What it counts against (see sourceOf in conn.ts). */
  source: string;
  /** Its frames to the client (to say "busy" when dropped). */
  writer?: FrameWriter;
  /** Why the listener dropped it, if it did. */
  dropped?: string;
}

/** How long a dropped handshake may take to say "busy" before its socket is closed. */
const DROP_LINGER_MS = 200;

/** Closes `conn`; one that is closed already is fine. */
export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* closed */ }
}

/** The handshakes in progress, oldest first, overall and by source. */
export class HandshakeSlots {
  /** Handshakes in progress, oldest first. */
  readonly pending: Map<Deno.Conn, HalfOpen> = new Map();
  /** Handshakes in progress by source, oldest first. */
  readonly #bySource = new Map<string, HalfOpen[]>();

  /**
   * @param maxPending most handshakes in progress at once
   * @param maxPerSource most of them from one source
   */
  constructor(readonly maxPending: number, readonly maxPerSource: number) {}

  /** Takes `h` off the books (when its handshake ended, or it was dropped). */
  forget(h: HalfOpen): void {
    if (!this.pending.delete(h.conn)) return;
    const list = this.#bySource.get(h.source)!;
    list.splice(list.indexOf(h), 1);
    if (list.length === 0) this.#bySource.delete(h.source);
  }

  /**
   * Drops a handshake in progress to make room: tells the client "busy" (so a
   * real node tries again), then closes; its serve() reports the refusal.
   */
  drop(h: HalfOpen, why: string): void {
    h.dropped = why;
    this.forget(h);
    const bye = h.writer ? h.writer.error("busy", why) : Promise.resolve();
    withTimeout(bye, DROP_LINGER_MS, () => new Error("linger"))
      .catch(() => {})
      .finally(() => closeQuietly(h.conn));
  }

  /** Makes room for one more handshake from `source`, and books it. */
  admit(conn: Deno.Conn, source: string): HalfOpen {
    const mine = this.#bySource.get(source);
    if (mine && mine.length >= this.maxPerSource) {
      this.drop(
        mine[0],
        `more than ${this.maxPerSource} handshakes at once from ${source}: the oldest was dropped`,
      );
    }
    if (this.pending.size >= this.maxPending) {
      // The oldest handshake of the source with the most in progress.
      let victim: HalfOpen | undefined, most = 0;
      for (const list of this.#bySource.values()) {
        if (list.length > most) [victim, most] = [list[0], list.length];
      }
      if (victim) {
        this.drop(
          victim,
          `more than ${this.maxPending} handshakes at once: the oldest was dropped`,
        );
      }
    }
    const h: HalfOpen = { conn, source };
    this.pending.set(conn, h);
    const list = this.#bySource.get(source);
    if (list) list.push(h);
    else this.#bySource.set(source, [h]);
    return h;
  }
}
