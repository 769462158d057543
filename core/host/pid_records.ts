/**
 * Records kept per process in a directory of their own, one JSON file named
 * PID.json each (the agent's relays and deputies, read again by the next
 * agent after a restart): written atomically, removed, and read back with
 * every file that is not a valid record left out and removed.
 *
 * @module
 */
import { join } from "node:path";
import { ensureDirSync } from "../paths.ts";

/** Writes (replaces) the record of `pid` in `dir`, atomically, mode 0600. */
export function savePidRecord(dir: string, pid: number, record: unknown): void {
  ensureDirSync(dir);
  const path = join(dir, `${pid}.json`);
  Deno.writeTextFileSync(`${path}.tmp`, JSON.stringify(record), { mode: 0o600 });
  Deno.renameSync(`${path}.tmp`, path);
}

/** Removes the record of `pid` in `dir` (gone already: fine). */
export function dropPidRecord(dir: string, pid: number): void {
  try {
    Deno.removeSync(join(dir, `${pid}.json`));
  } catch { /* gone */ }
}

/**
 * The records in `dir` (at most 65536 files looked at, each at most
 * `maxBytes`), checked by `bad` (a reason, or "" for a good one) and by
 * their name, which must be their `pid`; and why each unusable file was left
 * out (it is removed).
 */
export function loadPidRecords<T extends { pid: number }>(
  dir: string,
  maxBytes: number,
  bad: (r: unknown) => string,
): { records: T[]; bad: string[] } {
  const records: T[] = [], reasons: string[] = [];
  let entries: Deno.DirEntry[] = [];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return { records, bad: reasons };
  }
  for (const e of entries.slice(0, 65536)) {
    if (!e.isFile || !/^[0-9]+\.json$/.test(e.name)) continue;
    const path = join(dir, e.name);
    let why = "";
    try {
      const text = Deno.readTextFileSync(path);
      const r = text.length > maxBytes ? null : JSON.parse(text);
      why = bad(r);
      if (!why && `${r.pid}.json` !== e.name) why = "its name is not its PID";
      if (!why) records.push(r as T);
    } catch (err) {
      why = (err as Error).message;
    }
    if (why) {
      reasons.push(`${path}: ${why}`);
      try {
        Deno.removeSync(path);
      } catch { /* gone */ }
    }
  }
  return { records, bad: reasons };
}
