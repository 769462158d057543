/**
 * What a frozen network side leaves behind if ppm dies while it is frozen:
 * connections in TCP repair mode (the process's own sockets: repair is a
 * property of the socket, not of ppm's copy) and the module's drop entries
 * for their flows. Each freeze writes a journal entry under /run/ppm/frozen
 * before it changes anything and removes it once it is undone or handed
 * over; an agent that starts undoes what the entries of a dead one name.
 *
 * @module
 */
import { join } from "node:path";
import { close, pidfdGetfd, pidfdOpen } from "../../ffi/libc.ts";
import { IPPROTO, setsockoptInt, TCP } from "../../ffi/socket.ts";
import { runRoot } from "../paths.ts";
import { deleteRedirect } from "../redirect/table.ts";
import { startTicks } from "../host/proc_stat.ts";

/** Where the entries live (RAM, gone at boot like what they describe). */
export function journalDir(): string {
  return join(runRoot(), "frozen");
}

/** One frozen network side. */
export interface JournalEntry {
  /** The process. */
  pid: number;
  /** Its start time in clock ticks (/proc/PID/stat field 22): a reused PID is not it. */
  startTicks: string;
  /** Its descriptors in repair mode. */
  repaired: number[];
  /** Drop entries in the module. */
  dropIds: number[];
  /** The ppm process that froze it. */
  by: number;
  /**
   * "frozen": the destination has not been told to run it, so undoing the
   * freeze loses nothing; "committing": it was told, and the process may
   * run there: it stays stopped and frozen here until someone who knows
   * decides (docs/security.md).
   */
  phase: "frozen" | "committing";
}

function entryPath(pid: number, dir: string): string {
  return join(dir, `${pid}.json`);
}

/** Writes (or rewrites) the entry of `e.pid`; a failure to write is not fatal to the freeze. */
export function record(e: JournalEntry, dir = journalDir()): void {
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const tmp = `${entryPath(e.pid, dir)}.${Deno.pid}.tmp`;
    Deno.writeTextFileSync(tmp, JSON.stringify(e), { createNew: true, mode: 0o600 });
    Deno.renameSync(tmp, entryPath(e.pid, dir));
  } catch { /* not root, or no /run: nothing to recover then */ }
}

/** Removes the entry of `pid` (the freeze was undone or handed over). */
export function forget(pid: number, dir = journalDir()): void {
  try {
    Deno.removeSync(entryPath(pid, dir));
  } catch { /* none */ }
}

/** An entry read back, checked; undefined when it is not one. */
export function parseEntry(text: string): JournalEntry | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  const o = v as Record<string, unknown>;
  const ints = (x: unknown, max: number) =>
    Array.isArray(x) && x.length <= max &&
    x.every((n) => Number.isInteger(n) && n >= 0 && n < 2 ** 31);
  if (
    typeof o !== "object" || o === null || !Number.isInteger(o.pid) || (o.pid as number) <= 0 ||
    typeof o.startTicks !== "string" || !/^\d*$/.test(o.startTicks) ||
    !ints(o.repaired, 65536) || !ints(o.dropIds, 65536) || !Number.isInteger(o.by) ||
    (o.phase !== "frozen" && o.phase !== "committing")
  ) {
    return undefined;
  }
  return o as unknown as JournalEntry;
}

/** What recovering one entry did. */
export interface Recovered {
  /** The process. */
  pid: number;
  /** Whether it still ran (same start time). */
  alive: boolean;
  /** Connections taken out of repair mode. */
  unrepaired: number;
  /** Drop entries removed. */
  drops: number;
  /** It was committing: left stopped and frozen, the outcome unknown here. */
  inDoubt: boolean;
}

/** The hooks recovery uses (the module and the process's sockets; replaced in tests). */
export interface RecoverOps {
  /** Takes repair mode off descriptor `fd` of `pid`; false when it could not. */
  unrepair(pid: number, fd: number): boolean;
  /** Removes drop entry `id`; false when it was gone. */
  removeDrop(id: number): boolean;
  /** Whether `by` (the ppm that froze it) still runs. */
  alive(by: number): boolean;
}

function unrepair(pid: number, fd: number): boolean {
  let pidfd = -1, copy = -1;
  try {
    pidfd = pidfdOpen(pid);
    copy = pidfdGetfd(pidfd, fd);
    setsockoptInt(copy, IPPROTO.TCP, TCP.REPAIR, 0);
    return true;
  } catch {
    return false;
  } finally {
    if (copy >= 0) close(copy);
    if (pidfd >= 0) close(pidfd);
  }
}

const REAL_OPS: RecoverOps = {
  unrepair,
  removeDrop: (id) => {
    try {
      return deleteRedirect(id) > 0;
    } catch {
      return false;
    }
  },
  alive: (by) => {
    try {
      Deno.statSync(`/proc/${by}`);
      return true;
    } catch {
      return false;
    }
  },
};

/**
 * Undoes the freezes of ppm processes that died: the drops go first (the
 * flows may pass again), then the process's connections leave repair mode
 * (the peers' retransmissions are answered). Entries of a ppm that still
 * runs are left alone.
 */
export function recover(dir = journalDir(), ops: RecoverOps = REAL_OPS): Recovered[] {
  const out: Recovered[] = [];
  let names: string[] = [];
  try {
    names = [...Deno.readDirSync(dir)].filter((e) => e.isFile && /^\d+\.json$/.test(e.name))
      .map((e) => e.name);
  } catch {
    return out;
  }
  for (const name of names) {
    const path = join(dir, name);
    let e: JournalEntry | undefined;
    try {
      e = parseEntry(Deno.readTextFileSync(path));
    } catch { /* gone */ }
    if (e && e.by !== Deno.pid && ops.alive(e.by)) continue;
    if (e) {
      const alive = e.startTicks !== "" && startTicks(e.pid) === e.startTicks;
      if (alive && e.phase === "committing") {
        // It may run at the destination: thawing it here could make two live copies.
        out.push({ pid: e.pid, alive, unrepaired: 0, drops: 0, inDoubt: true });
        continue;
      }
      const drops = e.dropIds.filter((id) => ops.removeDrop(id)).length;
      const unrepaired = alive ? e.repaired.filter((fd) => ops.unrepair(e!.pid, fd)).length : 0;
      out.push({ pid: e.pid, alive, unrepaired, drops, inDoubt: false });
    }
    try {
      Deno.removeSync(path);
    } catch { /* gone */ }
  }
  return out;
}
