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
import { checkUntrusted, claimedOp } from "../untrusted.ts";
import {
  REDIRECT_OPS,
  REDIRECT_REQUEST_OPS,
  RedirectAnswerSchema,
  type RedirectRequest,
  RedirectRequestSchema,
} from "./messages.ts";
import { deleteRedirect, RedirectSet, releaseLocks } from "./table.ts";

/** The part of a connection the requests need (core/transport's PeerConnection). */
export interface RequestChannel {
  /** Sends a message. */
  send(msg: unknown): Promise<void>;
  /** The next message. */
  recv(timeoutMs?: number): Promise<unknown>;
  /** Closes the connection. */
  close(): void;
}

/** True when `msg` says it is a redirect request (whether it is a well-formed one or not). */
export function claimsRedirectRequest(msg: unknown): boolean {
  return claimedOp(msg, REDIRECT_REQUEST_OPS) !== undefined;
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

  async #ask(addr: string, msg: RedirectRequest): Promise<number[]> {
    return (await this.#answer(addr, msg)).ids;
  }

  async #answer(addr: string, msg: RedirectRequest): Promise<{ ids: number[]; count?: number }> {
    const c = await this.#conn(addr);
    await c.send(msg);
    const raw = await c.recv(30_000);
    const refused = `the node at ${addr} refused the redirects`;
    const r = checkUntrusted(RedirectAnswerSchema, raw, claimedOp(raw, REDIRECT_OPS) ?? "answer");
    if (!r.ok) throw new PpmError(refused, r.why);
    if (!r.value.ok) throw new PpmError(refused, r.value.reason ?? "no answer");
    const expected = msg.op === "redirect-add" ? "redirect-added" : "redirect-removed";
    if (r.value.op !== expected) {
      throw new PpmError(refused, `expected ${expected}, got ${r.value.op}`);
    }
    return r.value.op === "redirect-added"
      ? { ids: r.value.ids }
      : { ids: [], count: r.value.op === "redirect-removed" ? r.value.count : undefined };
  }

  /** Adds `entries` on the node at `addr`; resolves to their removal. */
  async add(addr: string, entries: Redirect[]): Promise<() => Promise<void>> {
    const ids = await this.#ask(addr, { op: "redirect-add", entries });
    this.log(`the node at ${addr} rewrites ${entries.length} flows`);
    return async () => {
      await this.#ask(addr, { op: "redirect-del", ids });
    };
  }

  /**
   * Removes on the node at `addr` the drops identical to `locks` (other entries stay): the locks
   * its agent left when it died holding a restored copy. Resolves to how many were there.
   */
  async release(addr: string, locks: Redirect[]): Promise<number> {
    const msg = { op: "redirect-release", entries: locks } as const;
    // A connection opened earlier went to the agent that died: once more on a new one.
    const { count } = await this.#answer(addr, msg).catch(async () => {
      (await this.#conns.get(addr)?.catch(() => undefined))?.close();
      this.#conns.delete(addr);
      return await this.#answer(addr, msg);
    });
    if (count) this.log(`the node at ${addr} released ${count} locks`);
    return count ?? 0;
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
 * `first`, until the requester closes it (or is silent for `idleMs`) or
 * sends something else. A malformed request is answered with why.
 */
export async function serveRedirects(
  conn: RequestChannel,
  first: unknown,
  log: (s: string) => void,
  idleMs = 600_000,
): Promise<void> {
  for (let raw = first; claimsRedirectRequest(raw);) {
    try {
      const req = checkUntrusted(RedirectRequestSchema, raw, claimedOp(raw, REDIRECT_OPS)!);
      if (!req.ok) throw new PpmError("a malformed redirect request", req.why);
      if (req.value.op === "redirect-add") {
        const set = new RedirectSet();
        set.add(req.value.entries);
        log(`added ${set.ids.length} redirects`);
        await conn.send({ op: "redirect-added", ok: true, ids: set.ids });
      } else if (req.value.op === "redirect-release") {
        const count = releaseLocks(req.value.entries);
        log(`released ${count} of ${req.value.entries.length} locks`);
        await conn.send({ op: "redirect-removed", ok: true, count });
      } else {
        for (const id of req.value.ids) deleteRedirect(id);
        log(`removed ${req.value.ids.length} redirects`);
        await conn.send({ op: "redirect-removed", ok: true });
      }
    } catch (e) {
      const why = e instanceof PpmError ? `${e.what}: ${e.why}` : (e as Error).message;
      log(`a redirect request failed: ${why}`);
      await conn.send({ op: "redirect-failed", ok: false, reason: why }).catch(() => {});
    }
    try {
      raw = await conn.recv(idleMs);
    } catch {
      return; // closed, or silent for too long
    }
  }
}
