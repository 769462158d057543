/**
 * The end peers know a socket by, once its process has moved: peers keep
 * the address of the node where the socket was first, and the ANSWER
 * entries of the move that brought the process here say which it is (they
 * give this node's packets for the flow that address). A later move
 * redirects from that address, not from this node's: a peer's packets go
 * there first.
 *
 * @module
 */
import type { RedirectEntry } from "../../ffi/redirect.ts";
import type { Endpoint4 } from "../image/sockets.ts";
import { listRedirects } from "./table.ts";

const same = (a: Endpoint4, b: Endpoint4) => a.addr === b.addr && a.port === b.port;
const ANY = (e: Endpoint4) => e.addr === "0.0.0.0" && e.port === 0;

/** The known ends of this node's sockets, from one reading of its redirect table. */
export class KnownEnds {
  /**
   * @param answers the table's ANSWER entries (others are ignored)
   * @param own this node's addresses (a socket bound to 0.0.0.0 answers from any of them)
   */
  constructor(
    private readonly answers: readonly RedirectEntry[],
    private readonly own: ReadonlySet<string>,
  ) {}

  /** Reads this node's table; none known when the module is not there. */
  static read(own: ReadonlySet<string>): KnownEnds {
    let table: RedirectEntry[] = [];
    try {
      table = listRedirects();
    } catch { /* no module: nothing moved here */ }
    return new KnownEnds(table.filter((e) => e.action === "answer"), own);
  }

  /**
   * The end peers know for the socket at `local` (its peer `remote`, for a
   * connected one), when it is not `local` itself: the OLD end of the
   * newest ANSWER entry for it.
   */
  of(proto: "tcp" | "udp", local: Endpoint4, remote?: Endpoint4): Endpoint4 | undefined {
    let best: RedirectEntry | undefined;
    for (const e of this.answers) {
      if (e.proto !== proto || !e.new || e.new.port !== local.port) continue;
      const mine = local.addr === "0.0.0.0" ? this.own.has(e.new.addr) : e.new.addr === local.addr;
      if (!mine) continue;
      if (remote ? !same(e.peer, remote) : !ANY(e.peer)) continue;
      if (!best || e.ageMs < best.ageMs || (e.ageMs === best.ageMs && e.id > best.id)) best = e;
    }
    if (!best || same(best.old, local)) return undefined;
    return { addr: best.old.addr, port: best.old.port };
  }
}
