/**
 * Redirect entries on other nodes, through their agents: a migration's
 * source asks the nodes of its process's peers to rewrite their flows
 * (PEER entries), and to remove them again if the migration fails.
 *
 * The connections are opened before the process is frozen (an
 * authenticated handshake costs round trips), so that during the freeze
 * each request is one round trip. The serving side answers requests on a
 * connection until its peer closes it.
 *
 * @module
 */
import type { Redirect } from "../../ffi/redirect.ts";
import { PpmError } from "../errors.ts";
import { deleteRedirect, RedirectSet } from "./table.ts";

/** The part of a connection the requests need (core/transport's PeerConnection). */
export interface RequestChannel {
  /** Sends a message. */
  send(msg: unknown): Promise<void>;
  /** The next message. */
  recv(timeoutMs?: number): Promise<unknown>;
  /** Closes the connection. */
  close(): void;
}

/** A request to another node's agent. */
export type RedirectRequest =
  | { op: "redirect-add"; entries: Redirect[] }
  | { op: "redirect-del"; ids: number[] };

/** True when `msg` is a redirect request. */
export function isRedirectRequest(msg: unknown): msg is RedirectRequest {
  const op = (msg as { op?: unknown })?.op;
  return op === "redirect-add" || op === "redirect-del";
}

/** The requesting side, for one migration: connections per node address, opened ahead. */
export class PeerRedirects {
  #conns = new Map<string, Promise<RequestChannel>>();

  /**
   * @param connect opens an authenticated connection to the agent of the node at an address
   * @param log progress notes
   */
  constructor(
    private connect: (addr: string) => Promise<RequestChannel>,
    private log: (s: string) => void = () => {},
  ) {}

  #conn(addr: string): Promise<RequestChannel> {
    let c = this.#conns.get(addr);
    if (!c) {
      c = this.connect(addr);
      c.catch(() => this.#conns.delete(addr));
      this.#conns.set(addr, c);
    }
    return c;
  }

  /** Opens the connections to `addrs` now (failures show when they are used). */
  async prepare(addrs: Iterable<string>): Promise<void> {
    await Promise.allSettled([...addrs].map((a) => this.#conn(a)));
  }

  async #ask(addr: string, msg: RedirectRequest): Promise<{ ids?: number[] }> {
    const c = await this.#conn(addr);
    await c.send(msg);
    const r = await c.recv(30_000) as { ok?: boolean; ids?: number[]; reason?: string };
    if (!r?.ok) {
      throw new PpmError(`the node at ${addr} refused the redirects`, r?.reason ?? "no answer");
    }
    return r;
  }

  /** Adds `entries` on the node at `addr`; resolves to their removal. */
  async add(addr: string, entries: Redirect[]): Promise<() => Promise<void>> {
    const r = await this.#ask(addr, { op: "redirect-add", entries });
    this.log(`the node at ${addr} rewrites ${entries.length} flows`);
    const ids = r.ids ?? [];
    return async () => {
      await this.#ask(addr, { op: "redirect-del", ids });
    };
  }

  /** Closes the connections. */
  async close(): Promise<void> {
    for (const c of this.#conns.values()) {
      await c.then((x) => x.close(), () => {});
    }
    this.#conns.clear();
  }
}

/**
 * The serving side: answers redirect requests on `conn`, starting with
 * `first`, until the requester closes it (or is silent for `idleMs`).
 */
export async function serveRedirects(
  conn: RequestChannel,
  first: RedirectRequest,
  log: (s: string) => void,
  idleMs = 600_000,
): Promise<void> {
  for (let req: unknown = first; isRedirectRequest(req);) {
    try {
      if (req.op === "redirect-add") {
        const set = new RedirectSet();
        set.add(req.entries ?? []);
        log(`added ${set.ids.length} redirects`);
        await conn.send({ op: "redirect-added", ok: true, ids: set.ids });
      } else {
        for (const id of req.ids ?? []) deleteRedirect(id);
        log(`removed ${req.ids?.length ?? 0} redirects`);
        await conn.send({ op: "redirect-removed", ok: true });
      }
    } catch (e) {
      const why = e instanceof PpmError ? `${e.what}: ${e.why}` : (e as Error).message;
      log(`a redirect request failed: ${why}`);
      await conn.send({ op: "redirect-failed", ok: false, reason: why }).catch(() => {});
    }
    try {
      req = await conn.recv(idleMs);
    } catch {
      return; // closed, or silent for too long
    }
  }
}
