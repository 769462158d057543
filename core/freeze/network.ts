/**
 * Freezing a process's network side: its sockets are taken (copies of the
 * descriptors), the module drops their flows' packets on this node (no RST,
 * no ICMP: the peers retransmit), and established connections enter TCP
 * repair mode so that nothing is sent or answered for them while they are
 * dumped. `thaw` undoes all of it when a migration fails; `handOver` leaves
 * the flows to the new node once the process runs there.
 *
 * @module
 */
import { withDevice } from "../../ffi/device.ts";
import { close } from "../../ffi/libc.ts";
import { acceptNow, IPPROTO, setsockoptInt, TCP } from "../../ffi/socket.ts";
import type { SocketFd } from "../dump/files.ts";
import {
  copyFds,
  describeSocket,
  dumpSocket,
  type HeldSocket,
  setRepair,
  socketContext,
} from "../dump/sockets.ts";
import type { SocketEntry } from "../image/sockets.ts";
import type { Redirect } from "../../ffi/redirect.ts";
import { planDrops } from "../redirect/redirect_plan.ts";
import { settleHandshakes } from "./handshakes.ts";
import { RedirectSet } from "../redirect/table.ts";
import { startTicks } from "../host/proc_stat.ts";
import { forget, record } from "./journal.ts";

/** Options of {@link NetworkFreeze.freeze}. */
export interface FreezeOptions {
  /**
   * The addresses the drops of a socket bound to a wildcard address cover
   * (default: the node's address alone; a checkpoint gives every address of
   * the node).
   */
  addrs?: readonly string[];
  /** Seconds without a packet after which the drops expire (default: redirect_plan's DROP_IDLE_S). */
  dropIdle?: number;
  /**
   * Whether the connections' drops answer their peers' keepalive probes (default: yes, the
   * process is frozen to go on; not for a killed checkpoint, which may never be restored).
   */
  keepAlive?: boolean;
}

/** The frozen network side of one process. */
export class NetworkFreeze {
  private repaired: number[] = [];
  /** Connections taken out of a listener's accept queue. */
  private pending: HeldSocket[] = [];
  /** The drop entries added, as added (their ids are in `drops`). */
  readonly dropped: Redirect[] = [];

  private constructor(
    readonly pid: number,
    readonly held: HeldSocket[],
    readonly drops: RedirectSet,
    readonly entries: SocketEntry[],
    private readonly ticks = startTicks(pid),
  ) {}

  /** Writes what this freeze changed to the journal (journal.ts), in `phase`. */
  journal(phase: "frozen" | "committing"): void {
    record({
      pid: this.pid,
      startTicks: this.ticks,
      repaired: this.held.filter((h) => h.kind === "tcp").map((h) => h.fd),
      dropIds: [...this.drops.ids],
      by: Deno.pid,
      phase,
    });
  }

  /**
   * Freezes the sockets `fds` of the stopped process `pid` on this node,
   * whose address peers know as `nodeAddr`; returns reasons instead when
   * some socket cannot move (then nothing was changed).
   */
  static freeze(
    pid: number,
    fds: SocketFd[],
    nodeAddr: string,
    opts: FreezeOptions = {},
  ): NetworkFreeze | { reasons: string[] } {
    const copies = copyFds(pid, fds.map((f) => f.fd));
    const held: HeldSocket[] = [];
    const reasons: string[] = [];
    const { own, flows, known } = socketContext(copies.values());
    for (const [fd, copy] of copies) {
      const d = describeSocket(fd, copy, own, flows, known);
      if ("reason" in d) reasons.push(d.reason);
      else held.push({ ...d, copy });
    }
    if (reasons.length) {
      for (const c of copies.values()) close(c);
      return { reasons };
    }
    const drops = new RedirectSet();
    const net = new NetworkFreeze(pid, held, drops, []);
    const addrs = opts.addrs ?? [nodeAddr];
    const drop = (list: Redirect[]) => {
      drops.add(list);
      net.dropped.push(...list);
    };
    net.journal("frozen");
    try {
      // New connections to its listeners are held back first: their SYNs are dropped, and the
      // clients send them again, to reach the process where it runs by then. The handshakes
      // already half done complete into the accept queue meanwhile, before the drops start, and
      // move with it.
      const listeners = held.filter((h) => h.kind === "tcp-listen");
      if (listeners.length) drop(planDrops(listeners, addrs, opts.dropIdle, "drop-syn"));
      settleHandshakes(new Set(listeners.map((h) => h.local.port)));
      drop(planDrops(held, addrs, opts.dropIdle, "drop", opts.keepAlive ?? true));
      // Connections waiting in a listener's accept queue move too: ppm takes
      // them out now (the drops hold their packets) and the new node queues
      // them again. Every listener is asked, whatever its queue held when it was
      // described: handshakes completed while they settled are in it now, and
      // one left here would be lost without a reset (the drops eat it).
      for (const l of held.filter((x) => x.kind === "tcp-listen")) {
        for (let i = 0; i < 4096; i++) {
          const child = acceptNow(l.copy);
          if (child === null) break;
          const d = describeSocket(l.fd, child, own, flows, known);
          if ("reason" in d || d.kind !== "tcp") {
            close(child);
            continue;
          }
          net.pending.push({ ...d, kind: "tcp-pending", copy: child });
        }
      }
      held.push(...net.pending);
      for (const s of held) {
        if (s.kind !== "tcp" && s.kind !== "tcp-pending") continue;
        setRepair(s.copy, true);
        net.repaired.push(s.copy);
      }
      net.journal("frozen");
      const flags = new Map(fds.map((f) => [f.fd, f.flags]));
      for (const s of held) {
        const e = dumpSocket(s, flags.get(s.fd) ?? 0);
        const k = known.of(s.kind === "udp" ? "udp" : "tcp", s.local, s.remote);
        if (k) e.known = k;
        net.entries.push(e);
      }
    } catch (e) {
      net.thaw();
      throw e;
    }
    return net;
  }

  /**
   * Undoes the freeze: connections leave repair mode, those taken from an
   * accept queue go back into it, the drops go; the process may resume.
   */
  thaw(): void {
    const pending = new Set(this.pending.map((p) => p.copy));
    for (const c of this.repaired.splice(0)) {
      try {
        // Repair off without a window probe for the queued ones: they were silent.
        setsockoptInt(c, IPPROTO.TCP, TCP.REPAIR, pending.has(c) ? -1 : 0);
      } catch { /* closed by the peer meanwhile */ }
    }
    for (const p of this.pending.splice(0)) {
      const listener = this.held.find((h) => h.kind === "tcp-listen" && h.fd === p.fd);
      try {
        if (listener) withDevice((d) => d.queueAccept(listener.copy, p.copy));
      } catch { /* the connection is lost: its client sees a reset */ }
    }
    this.drops.removeAll();
    this.dropped.length = 0;
    this.closeCopies();
    forget(this.pid);
  }

  /**
   * The process runs elsewhere now: ppm's copies close (connections still
   * in repair mode close silently once the process here is gone too) and
   * the drops stay, to swallow late packets, until they expire.
   */
  handOver(): void {
    this.repaired = [];
    this.drops.keep();
    this.closeCopies();
    forget(this.pid);
  }

  /**
   * The outcome of the move is unknown (the destination was told to run
   * the process and did not confirm): ppm's copies close, the connections
   * stay in repair mode and the drops stay, so the copy here says nothing
   * on the network; the journal keeps the entry, in doubt.
   */
  abandon(): void {
    this.repaired = [];
    this.drops.keep();
    this.closeCopies();
  }

  private closeCopies(): void {
    for (const s of this.held.splice(0)) close(s.copy);
  }
}
