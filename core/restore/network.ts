/**
 * A checkpoint's sockets (the NETWORK record, `ppm checkpoint
 * --tcp-established`) brought back on the node where it was taken: at their
 * own addresses and ports (no redirect: the peers never saw another
 * address), rebuilt in TCP repair mode by core/restore/sockets.ts and taken
 * by the stub at their descriptor numbers, as a migration's are.
 *
 * Before anything: the module is there (the drops, the accept queues), every
 * address is this node's (another node is what `ppm migrate` is for), and no
 * port or connection is in use (the original may still run, after
 * `--leave-running`). Once the process is restored: the checkpoint's drops
 * go (found in the module's table by their flow, the ids being another
 * boot's or reused), repair ends, the process runs.
 *
 * @module
 */
import type { RedirectEntry } from "../../ffi/redirect.ts";
import { ErrnoError } from "../../ffi/libc.ts";
import { EXIT, PpmError } from "../errors.ts";
import { ownAddresses } from "../dump/sockets.ts";
import type { Endpoint4, SocketEntry } from "../image/sockets.ts";
import type { DropFlow, NetworkRecord } from "../image/network.ts";
import { dropKey } from "../image/network.ts";
import { deleteRedirect, listRedirects } from "../redirect/table.ts";
import { rebuildSockets, type RebuiltSocket } from "./sockets.ts";

const WHAT = "cannot restore";

const end = (e: Endpoint4) => `${e.addr}:${e.port}`;

/** A socket of the image, told for people. */
export function describeEntry(s: SocketEntry): string {
  switch (s.kind) {
    case "tcp-listen":
      return `fd ${s.fd}, a TCP listener on ${end(s.local)}`;
    case "udp":
      return `fd ${s.fd}, a UDP socket on ${end(s.local)}`;
    case "tcp-pending":
      return `a connection ${end(s.local)} to ${
        end(s.remote!)
      } waiting to be accepted on fd ${s.fd}`;
    default:
      return `fd ${s.fd}, a TCP connection ${end(s.local)} to ${end(s.remote!)}`;
  }
}

/**
 * Throws unless the ppm module is loaded and its table readable (the drops
 * and the accept queues need it); returns the table.
 */
export function checkModule(): RedirectEntry[] {
  try {
    return listRedirects();
  } catch (e) {
    if (!(e instanceof PpmError)) throw e;
    throw new PpmError(
      WHAT,
      `${e.why}; the image's sockets need it`,
      e.fix,
      e.exitCode,
      { cause: e },
    );
  }
}

/** Throws unless every address a socket of the image was bound to is this node's. */
export function checkAddresses(
  sockets: SocketEntry[],
  own: ReadonlySet<string> = ownAddresses(),
): void {
  for (const s of sockets) {
    const a = s.local.addr;
    if (a === "0.0.0.0" || a.startsWith("127.") || own.has(a)) continue;
    throw new PpmError(
      WHAT,
      `the image's ${describeEntry(s)} had the address ${a}, which this node does not have ` +
        "(an image's connections are restored on the node where they were checkpointed)",
      "restore it on that node; to move a process with its connections to another node, " +
        "migrate it instead (ppm migrate PID --to NODE)",
      EXIT.INCOMPATIBLE,
    );
  }
}

/** One socket of /proc/net/tcp or /proc/net/udp. */
export interface ProcNetSocket {
  /** Its own end. */
  local: Endpoint4;
  /** The other end (0.0.0.0:0 when none). */
  remote: Endpoint4;
  /** The kernel's state number (TCP: 1 ESTABLISHED, 6 TIME_WAIT, 10 LISTEN ...). */
  state: number;
}

/** "0100007F:1F90" (an x86 /proc/net line: the address's bytes in memory order, as a u32) as 127.0.0.1:8080. */
function procEndpoint(s: string): Endpoint4 | undefined {
  const m = /^([0-9A-Fa-f]{8}):([0-9A-Fa-f]{4})$/.exec(s);
  if (!m) return undefined;
  const v = parseInt(m[1], 16) >>> 0;
  return {
    addr: [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24].join("."),
    port: parseInt(m[2], 16),
  };
}

/** Parses /proc/net/tcp or /proc/net/udp (IPv4); lines out of shape are skipped. */
export function parseProcNet(text: string): ProcNetSocket[] {
  const out: ProcNetSocket[] = [];
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4) continue;
    const local = procEndpoint(f[1]), remote = procEndpoint(f[2]);
    if (!local || !remote || !/^[0-9A-Fa-f]{2}$/.test(f[3])) continue;
    out.push({ local, remote, state: parseInt(f[3], 16) });
  }
  return out;
}

const TCP_TIME_WAIT = 6;
const TCP_LISTEN = 10;

const overlaps = (a: string, b: string) => a === b || a === "0.0.0.0" || b === "0.0.0.0";
const same = (a: Endpoint4, b: Endpoint4) => a.addr === b.addr && a.port === b.port;

/**
 * Why a socket of the image cannot be rebuilt here now, given the node's
 * TCP and UDP sockets (/proc/net/tcp, /proc/net/udp): a connection that is
 * still open (not in TIME_WAIT), a listener on the same port and an
 * overlapping address, a UDP socket on the same port and an overlapping
 * address; undefined when none is in the way.
 */
export function inUse(
  sockets: SocketEntry[],
  tcp: ProcNetSocket[],
  udp: ProcNetSocket[],
): string | undefined {
  for (const s of sockets) {
    if (s.kind === "tcp" || s.kind === "tcp-pending") {
      if (
        tcp.some((t) =>
          t.state !== TCP_TIME_WAIT && same(t.local, s.local) && same(t.remote, s.remote!)
        )
      ) {
        return `the TCP connection ${end(s.local)} to ${end(s.remote!)} (${
          describeEntry(s)
        }) is open on this node`;
      }
    } else if (s.kind === "tcp-listen") {
      const l = tcp.find((t) =>
        t.state === TCP_LISTEN && t.local.port === s.local.port &&
        overlaps(t.local.addr, s.local.addr)
      );
      if (l) {
        return `TCP port ${s.local.port} is in use on this node: a listener on ${end(l.local)} ` +
          `holds it (the image's ${describeEntry(s)})`;
      }
    } else {
      const u = udp.find((t) =>
        t.local.port === s.local.port && overlaps(t.local.addr, s.local.addr)
      );
      if (u) {
        return `UDP port ${s.local.port} is in use on this node: a socket on ${end(u.local)} ` +
          `holds it (the image's ${describeEntry(s)})`;
      }
    }
  }
  return undefined;
}

const PORT_FIX =
  "the checkpointed process may still run here (after --leave-running): end it, or whatever " +
  "holds the port (ss -tuanp), then restore again";

function readProc(path: string): ProcNetSocket[] {
  try {
    return parseProcNet(Deno.readTextFileSync(path));
  } catch {
    return [];
  }
}

/** Throws when a port or connection of the image is in use on this node. */
export function checkPortsHere(sockets: SocketEntry[]): void {
  const why = inUse(sockets, readProc("/proc/net/tcp"), readProc("/proc/net/udp"));
  if (why) throw new PpmError(WHAT, why, PORT_FIX, EXIT.BUSY);
}

/**
 * Rebuilds the record's sockets in repair mode at their own addresses and
 * ports (call {@link checkAddresses} and {@link checkPortsHere} first); on
 * failure nothing is left open.
 */
export function rebuildHere(rec: NetworkRecord): RebuiltSocket[] {
  try {
    return rebuildSockets(rec.sockets, null);
  } catch (e) {
    const errno = e instanceof PpmError && e.cause instanceof ErrnoError ? e.cause.code : "";
    if (e instanceof PpmError && (errno === "EADDRINUSE" || errno === "EADDRNOTAVAIL")) {
      throw new PpmError(WHAT, `${e.what}: ${e.why}`, PORT_FIX, EXIT.BUSY, { cause: e });
    }
    throw e;
  }
}

/** The ids of the entries of `table` that are the drops `drops` (same flow, action and idle timeout). */
export function findDrops(drops: DropFlow[], table: RedirectEntry[]): number[] {
  const wanted = new Map(drops.map((d) => [dropKey(d), d.idleTimeout]));
  return table.filter((e) =>
    (e.action === "drop" || e.action === "drop-syn") &&
    wanted.get(
        dropKey({
          proto: e.proto,
          action: e.action as DropFlow["action"],
          old: e.old,
          peer: e.peer,
        }),
      ) === e.idleTimeout
  ).map((e) => e.id);
}

/** What removing a checkpoint's drops did. */
export interface DropsRemoved {
  /** Entries removed. */
  removed: number;
  /** Drops of the image not in the table (expired, cleared, or of another boot). */
  notFound: number;
  /** Entries that could not be removed (their flows stay silent until they expire). */
  failed: number;
}

/**
 * Removes the record's drops from this node's table, found by their flow:
 * the peers' next retransmissions reach the restored connections. Nothing
 * when the image is of another boot (its drops went with it). Throws only
 * when the table cannot be read (then nothing was removed).
 */
export function removeDrops(
  rec: NetworkRecord,
  bootId: string,
  ops: { list: () => RedirectEntry[]; remove: (id: number) => number } = {
    list: listRedirects,
    remove: deleteRedirect,
  },
): DropsRemoved {
  if (!rec.drops.length || (rec.bootId !== "" && bootId !== "" && rec.bootId !== bootId)) {
    return { removed: 0, notFound: rec.drops.length, failed: 0 };
  }
  const ids = findDrops(rec.drops, ops.list());
  let removed = 0, failed = 0;
  for (const id of ids) {
    try {
      removed += ops.remove(id) > 0 ? 1 : 0;
    } catch {
      failed++;
    }
  }
  return { removed, notFound: Math.max(0, rec.drops.length - ids.length), failed };
}

/**
 * `e` with a note that the checkpoint's drops stay (when it left some):
 * the peers still wait, so the restore can be run again.
 */
export function withDropsKept(e: unknown, rec: NetworkRecord): unknown {
  if (!rec.drops.length) return e;
  const note = "nothing of it was left here, and the checkpoint's drop entries stay on this " +
    "node (its peers still wait): fix the cause and run ppm restore again";
  if (e instanceof PpmError) {
    return new PpmError(e.what, e.why, e.fix ? `${e.fix}; ${note}` : note, e.exitCode, {
      details: e.details,
      cause: e,
    });
  }
  return new PpmError(WHAT, (e as Error)?.message ?? String(e), note, EXIT.FAILURE, { cause: e });
}
