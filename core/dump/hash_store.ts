/**
 * File hashes remembered across ppm processes on one node and boot: a
 * checkpoint and a restore hash every file the process maps (libc and
 * friends), and a `ppm checkpoint` or `ppm restore` is a new process each
 * time, so without this each hashed the same libraries again (0.2-0.45 s
 * each way in a TCG guest).
 *
 * An entry is trusted only when everything that changes with a file's
 * content still matches: its device and inode, path, size, mtime and ctime
 * (no user can set a ctime), this boot (device numbers mean something only
 * in it), and a ctime older than the hash by a second (a file written while
 * it was hashed is not remembered: the "racy" case). The store is a file in
 * the state directory that only root reads and writes; anyone else, or a
 * store with other owners or modes, or anything malformed in it, means no
 * store: the hashes are computed as before. It is data, never code: what
 * does not check out is dropped.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { ensureDirSync, stateDir } from "../paths.ts";
import { bootId } from "../host/boot_id.ts";

/** Entries kept at most (the oldest go first). */
export const MAX_ENTRIES = 4096;
/** The largest store file read. */
const MAX_BYTES = 4 << 20;

/** What a hash is remembered with. */
export interface FileStamp {
  path: string;
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

interface Entry extends FileStamp {
  sha256: string;
  /** When the hash was taken (ms since the epoch). */
  at: number;
}

interface Store {
  boot: string;
  entries: Entry[];
}

/**
 * Where the store of boot `boot` is: in `$PPM_CACHE_DIR` (a virtual cluster's guests set it to
 * a directory of their own: they see their host's state directory read-only), else in the state
 * directory's `cache`; one file per boot.
 */
export function storePath(boot: string): string {
  const dir = Deno.env.get("PPM_CACHE_DIR") || join(stateDir(), "cache");
  return join(dir, `file-hashes-${boot.replace(/[^0-9a-f-]/g, "")}.json`);
}

/** Stores of other boots are removed once untouched this long. */
const STALE_MS = 7 * 24 * 3600_000;

/** Removes the stores in `dir` but `keep` that no one wrote for {@link STALE_MS}. */
function pruneStale(dir: string, keep: string): void {
  try {
    for (const f of Deno.readDirSync(dir)) {
      if (!/^file-hashes-[0-9a-f-]+\.json$/.test(f.name) || join(dir, f.name) === keep) continue;
      const p = join(dir, f.name);
      const age = Date.now() - (Deno.lstatSync(p).mtime?.getTime() ?? Date.now());
      if (age > STALE_MS) Deno.removeSync(p);
    }
  } catch { /* no directory, or not ours: nothing to prune */ }
}

/** The stamp of `path` now. */
export function stampOf(path: string): FileStamp {
  const st = Deno.statSync(path);
  return {
    path,
    dev: st.dev,
    ino: st.ino ?? 0,
    size: st.size,
    mtimeMs: st.mtime?.getTime() ?? 0,
    ctimeMs: st.ctime?.getTime() ?? 0,
  };
}

const sameStamp = (a: FileStamp, b: FileStamp) =>
  a.path === b.path && a.dev === b.dev && a.ino === b.ino && a.size === b.size &&
  a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;

const num = (x: unknown) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0;

/** One entry as read, or undefined when any field is not what an entry holds. */
function checkEntry(x: unknown): Entry | undefined {
  if (typeof x !== "object" || x === null) return undefined;
  const e = x as Record<string, unknown>;
  if (typeof e.path !== "string" || !e.path.startsWith("/") || e.path.length > 4096) return;
  if (typeof e.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(e.sha256)) return;
  for (const k of ["dev", "ino", "size", "mtimeMs", "ctimeMs", "at"]) if (!num(e[k])) return;
  return {
    path: e.path,
    dev: e.dev as number,
    ino: e.ino as number,
    size: e.size as number,
    mtimeMs: e.mtimeMs as number,
    ctimeMs: e.ctimeMs as number,
    sha256: e.sha256,
    at: e.at as number,
  };
}

/** The entries of the store at `path` for boot `boot`; none when it may not or cannot be used. */
export function readStore(path: string, boot: string): Entry[] {
  try {
    const st = Deno.lstatSync(path);
    // Root's own file, written by no one else: anything else is not taken.
    if (!st.isFile || st.uid !== 0 || ((st.mode ?? 0) & 0o022) !== 0 || st.size > MAX_BYTES) {
      return [];
    }
    const raw = JSON.parse(Deno.readTextFileSync(path)) as Partial<Store>;
    if (typeof raw !== "object" || raw === null || raw.boot !== boot) return [];
    if (!Array.isArray(raw.entries)) return [];
    return raw.entries.slice(-MAX_ENTRIES).map(checkEntry).filter((e): e is Entry => !!e);
  } catch {
    return [];
  }
}

/** Writes `entries` as the store at `path` for boot `boot`, whole or not at all. */
function writeStore(path: string, boot: string, entries: Entry[]): void {
  const dir = dirname(path);
  const tmp = `${path}.${Deno.pid}.tmp`;
  try {
    ensureDirSync(dir);
    Deno.writeTextFileSync(tmp, JSON.stringify({ boot, entries } satisfies Store), {
      mode: 0o600,
    });
    Deno.renameSync(tmp, path);
    pruneStale(dir, path);
  } catch {
    try {
      Deno.removeSync(tmp);
    } catch { /* not written */ }
  }
}

/**
 * Hashes remembered in the store and in this process. Only root uses the
 * store; others keep hashes for their own process alone.
 */
export class HashStore {
  #entries = new Map<string, Entry>();
  #loaded = false;
  #boot = "";

  #path?: string;

  /**
   * @param path the store file (default: {@link storePath} of this boot)
   * @param persist whether to read and write it (default: when running as root)
   */
  constructor(
    path?: string,
    private persist = Deno.uid() === 0,
  ) {
    this.#path = path;
  }

  #key(s: FileStamp): string {
    return `${s.dev}:${s.ino}`;
  }

  #load(): void {
    if (this.#loaded) return;
    this.#loaded = true;
    this.#boot = bootId();
    if (!this.persist || !this.#boot) return;
    this.#path ??= storePath(this.#boot);
    for (const e of readStore(this.#path, this.#boot)) this.#entries.set(this.#key(e), e);
  }

  /** The hash remembered for the file of `stamp`, when it is unchanged since. */
  get(stamp: FileStamp): string | undefined {
    this.#load();
    const e = this.#entries.get(this.#key(stamp));
    if (!e || !sameStamp(e, stamp)) return undefined;
    // Changed in the second it was hashed: the hash may be of content from before.
    if (stamp.ctimeMs >= e.at - 1000 || stamp.mtimeMs >= e.at - 1000) return undefined;
    return e.sha256;
  }

  /** Remembers `sha256` for the file of `stamp`, hashed at `at` (ms), and saves the store. */
  set(stamp: FileStamp, sha256: string, at = Date.now()): void {
    this.#load();
    const key = this.#key(stamp);
    this.#entries.delete(key);
    this.#entries.set(key, { ...stamp, sha256, at });
    while (this.#entries.size > MAX_ENTRIES) {
      this.#entries.delete(this.#entries.keys().next().value!);
    }
    if (!this.persist || !this.#boot || !this.#path) return;
    // Others may have added theirs meanwhile: theirs and ours.
    const merged = new Map<string, Entry>();
    for (const e of readStore(this.#path, this.#boot)) merged.set(this.#key(e), e);
    for (const [k, e] of this.#entries) merged.set(k, e);
    writeStore(this.#path, this.#boot, [...merged.values()].slice(-MAX_ENTRIES));
  }
}
