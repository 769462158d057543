/**
 * Peers that go silent: a node whose announcements stop takes the flows of
 * the processes that moved there with it, unless it is heard again first. A
 * node held up for a moment, or whose agent restarts (its kernel still
 * answers on the migration port), still runs those processes: their
 * redirects stay.
 *
 * @module
 */
import type { Discovery } from "../discovery/service.ts";
import { deleteRedirect, listRedirects } from "../redirect/table.ts";
import { probeNode } from "./liveness.ts";

/** What {@link watchSilentPeers} needs from the agent. */
export interface SilenceDeps {
  /** Discovery: its join and leave events. */
  discovery: Pick<Discovery, "on">;
  /** Redirect entries left here by processes that moved away, by their new node. */
  leftFor: Map<string, number[]>;
  /** How long a silent node is given before its redirects go, and between checks, ms. */
  graceMs: number;
  /** Logs a line. */
  log: (level: string, s: string) => void;
}

/** Watches peers: a node silent past the grace, whose kernel does not answer either, loses its redirects. */
export function watchSilentPeers(d: SilenceDeps): { stop(): void } {
  const { log, graceMs } = d;
  /** Nodes gone silent whose redirects go unless they are heard again first. */
  const silent = new Map<string, ReturnType<typeof setTimeout>>();
  d.discovery.on((e) => {
    log(e.type === "update" ? "debug" : "info", `peer ${e.type}: ${e.peer.name}`);
    const name = e.peer.name;
    if (e.type === "join" && silent.has(name)) {
      clearTimeout(silent.get(name));
      silent.delete(name);
      log("info", `${name} is back: its redirects stay`);
    }
    // A node gone silent (not an agent that restarts, or one that says goodbye).
    if (e.type === "leave" && e.reason === "expired" && !silent.has(name)) {
      const addrs = e.peer.addresses;
      const host = e.peer.from.replace(/:\d+$/, "");
      const port = e.peer.migrationPort;
      // Its kernel answering (even with a reset: the agent is down) means the
      // node and the processes that moved there live; check again later.
      const check = async () => {
        const answer = await probeNode(host, port, graceMs);
        if (!silent.has(name)) return;
        if (answer === "silent") {
          silent.delete(name);
          dropRedirectsTo(d, name, addrs);
          return;
        }
        log("info", `${name} is silent, but its kernel answers (${answer}): its redirects stay`);
        silent.set(name, setTimeout(check, graceMs));
      };
      silent.set(name, setTimeout(check, graceMs));
    }
  });
  return {
    stop() {
      for (const t of silent.values()) clearTimeout(t);
      silent.clear();
    },
  };
}

/**
 * A node that left takes its flows with it: the entries that send them
 * there go, and so do this node's drops for them, so that their peers get
 * a reset from here rather than silence.
 */
function dropRedirectsTo(d: SilenceDeps, name: string, addrs: string[]): void {
  try {
    const ids = [
      ...(d.leftFor.get(name) ?? []),
      ...listRedirects().filter((r) => r.new && addrs.includes(r.new.addr)).map((r) => r.id),
    ];
    d.leftFor.delete(name);
    let n = 0;
    for (const id of new Set(ids)) n += deleteRedirect(id);
    if (n) d.log("warn", `${name} left: removed ${n} redirects of flows that had moved there`);
  } catch (e) {
    d.log("warn", `cannot clean the redirects of ${name}: ${(e as Error).message}`);
  }
}
