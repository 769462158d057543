/**
 * This node's redirect table (the module's netfilter hooks), with errors a
 * user can act on: the module missing, not root, a bad entry.
 *
 * @module
 */
import { withDevice } from "../../ffi/device.ts";
import { ErrnoError } from "../../ffi/libc.ts";
import type { Redirect, RedirectEntry } from "../../ffi/redirect.ts";
import { EXIT, PpmError } from "../errors.ts";

/** `e` told in the user's terms (an ErrnoError becomes a PpmError whose `cause` it is). */
function explain(what: string, e: unknown): unknown {
  if (!(e instanceof ErrnoError)) return e;
  switch (e.code) {
    case "ENOENT":
      return new PpmError(
        what,
        "the ppm module is not loaded (/dev/ppm is missing)",
        "load it: ppm module load",
        EXIT.MISSING,
        { cause: e },
      );
    case "EPERM":
    case "EACCES":
      return new PpmError(what, "it needs CAP_NET_ADMIN", "run as root", EXIT.PERMISSION, {
        cause: e,
      });
    case "ENOTTY":
      return new PpmError(
        what,
        "the loaded module has no redirects (an older ABI)",
        "unload it and load this version: ppm module unload && ppm module load",
        EXIT.INCOMPATIBLE,
        { cause: e },
      );
    case "EEXIST":
      return new PpmError(what, "the same entry is already there", "", EXIT.BUSY, { cause: e });
    case "ENOSPC":
      return new PpmError(what, "the table is full (4096 entries)", "", EXIT.BUSY, { cause: e });
    default:
      return new PpmError(what, e.message, "", EXIT.FAILURE, { cause: e });
  }
}

/** Every entry of this node's table. */
export function listRedirects(): RedirectEntry[] {
  try {
    return withDevice((d) => d.listRedirects());
  } catch (e) {
    throw explain("cannot read the redirect table", e);
  }
}

/** Adds `r`; returns its id. */
export function addRedirect(r: Redirect): number {
  try {
    return withDevice((d) => d.addRedirect(r));
  } catch (e) {
    throw explain(`cannot add a ${r.action} redirect`, e);
  }
}

const sameEnd = (a?: { addr: string; port: number }, b?: { addr: string; port: number }) =>
  a?.addr === b?.addr && a?.port === b?.port;

/** Whether two entries are the same to the module (it refuses the second). */
export function identical(a: Redirect, b: Redirect): boolean {
  return a.proto === b.proto && a.action === b.action && sameEnd(a.old, b.old) &&
    sameEnd(a.peer, b.peer) && (a.action.startsWith("drop") || sameEnd(a.new, b.new));
}

/** Adds `r`; an identical entry already there is removed first (see {@link RedirectSet.add}). */
function addOrReplace(r: Redirect): number {
  try {
    return addRedirect(r);
  } catch (e) {
    // A module older than this ppm knows no keepalive answers: the drop without them.
    if (
      r.keepAlive && e instanceof PpmError && e.cause instanceof ErrnoError &&
      e.cause.code === "EINVAL"
    ) return addOrReplace({ ...r, keepAlive: undefined });
    if (!(e instanceof PpmError && e.cause instanceof ErrnoError && e.cause.code === "EEXIST")) {
      throw e;
    }
    for (const x of listRedirects()) if (identical(x, r)) deleteRedirect(x.id);
    return addRedirect(r);
  }
}

/**
 * Removes the drops an earlier freeze left on this node for the flows of
 * `sockets` (their ends here), which arrive again: they would hold the
 * flows' packets for minutes more. Returns how many went.
 */
export function removeStaleDrops(
  sockets: {
    kind: string;
    local: { addr: string; port: number };
    remote?: { addr: string; port: number };
  }[],
): number {
  let n = 0;
  for (const e of listRedirects()) {
    if (e.action !== "drop" && e.action !== "drop-syn") continue;
    const mine = sockets.some((s) =>
      (s.kind === "udp" ? "udp" : "tcp") === e.proto && e.old.port === s.local.port &&
      (s.local.addr === "0.0.0.0" || e.old.addr === s.local.addr) &&
      (!s.remote || sameEnd(e.peer, s.remote))
    );
    if (mine) n += deleteRedirect(e.id) ? 1 : 0;
  }
  return n;
}

/**
 * Removes the drops identical to `locks` (entries of other actions are never touched, whatever
 * `locks` says); returns how many there were.
 */
export function releaseLocks(
  locks: Redirect[],
  table: { list(): RedirectEntry[]; remove(id: number): number } = {
    list: listRedirects,
    remove: deleteRedirect,
  },
): number {
  const drops = locks.filter((r) => r.action === "drop");
  let n = 0;
  for (const e of drops.length ? table.list() : []) {
    if (e.action === "drop" && drops.some((r) => identical(e, r))) n += table.remove(e.id);
  }
  return n;
}

/** Removes entry `id` (a missing one is fine: it may have expired); "all" clears the table. */
export function deleteRedirect(id: number | "all"): number {
  try {
    return withDevice((d) => d.deleteRedirect(id));
  } catch (e) {
    if (e instanceof ErrnoError && e.call === "ioctl" && e.code === "ENOENT") return 0;
    throw explain("cannot remove a redirect", e);
  }
}

/** One line per entry, for people. */
export function formatRedirect(e: RedirectEntry): string {
  const ep = (x: { addr: string; port: number }) =>
    `${x.addr === "0.0.0.0" ? "*" : x.addr}:${x.port || "*"}`;
  const to = e.new ? ` -> ${ep(e.new)}` : "";
  return `${String(e.id).padStart(4)} ${e.proto} ${e.action.padEnd(8)} peer ${ep(e.peer)}  ${
    ep(e.old)
  }${to}  ${e.state}  ${e.packets} pkts ${e.bytes} B  age ${(e.ageMs / 1000).toFixed(0)} s${
    e.keepAlive ? "  answers keepalives" : ""
  }`;
}

/** Entries added on this node by one migration, removed together when it fails or ends. */
export class RedirectSet {
  #ids: number[] = [];

  /**
   * Adds every entry; on failure removes the ones this call added and throws.
   * An entry identical to one in the table replaces it: it is then the
   * newest, which decides (a process that comes back to a node finds the
   * entries of its earlier stay, older than those sending it elsewhere).
   */
  add(list: Redirect[]): void {
    const added: number[] = [];
    try {
      for (const r of list) added.push(addOrReplace(r));
    } catch (e) {
      for (const id of added) deleteRedirect(id);
      throw e;
    }
    this.#ids.push(...added);
  }

  /** The ids of the entries held. */
  get ids(): readonly number[] {
    return this.#ids;
  }

  /** Removes every entry of this set (best effort: one that expired is gone already). */
  removeAll(): void {
    for (const id of this.#ids.splice(0)) {
      try {
        deleteRedirect(id);
      } catch { /* the module went away: so did its entries */ }
    }
  }

  /** Forgets the entries: they stay until they expire. */
  keep(): void {
    this.#ids = [];
  }
}
