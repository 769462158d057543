/**
 * Kernel objects another process holds too (inherited across fork, or
 * passed over a unix socket): moving one process would split them, so
 * they stay. Every other process's descriptors are looked at once: a pipe
 * or socket by its inode, a FIFO or memfd by its path and inode, an
 * anonymous object (eventfd, timerfd, signalfd, epoll) with kcmp. Files in
 * /dev/shm are files: others may hold them, the image carries a copy.
 *
 * @module
 */
import { sameFile } from "../../../ffi/fds.ts";
import type { ObjectFd } from "./survey.ts";

const ANON = new Set(["eventfd", "timerfd", "signalfd", "epoll"]);

/** The numeric entries of /proc: every process. */
function processes(): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (/^[1-9][0-9]*$/.test(e.name)) out.push(Number(e.name));
  }
  return out;
}

function inoOf(path: string): bigint | undefined {
  try {
    const st = Deno.statSync(path);
    return BigInt(st.ino ?? -1) * 65536n + BigInt(st.dev);
  } catch {
    return undefined;
  }
}

/**
 * For each object of `objs` (descriptors of `pid`) that another process
 * (not ppm) holds too: its descriptor and that process.
 */
export function heldElsewhere(
  pid: number,
  objs: ObjectFd[],
  byFile: ReadonlySet<number> = new Set(),
): Map<number, number> {
  const out = new Map<number, number>();
  const mine = objs.filter((o) => o.dupOf === undefined && o.kind !== "shm");
  if (!mine.length) return out;
  const byLink = new Map<string, ObjectFd[]>();
  for (const o of mine) byLink.set(o.target, [...byLink.get(o.target) ?? [], o]);
  const myIno = new Map(
    mine.filter((o) => o.kind === "fifo" || o.kind === "memfd").map((
      o,
    ) => [o.fd, inoOf(`/proc/${pid}/fd/${o.fd}`)]),
  );
  for (const other of processes()) {
    if (other === pid || other === Deno.pid) continue;
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(`/proc/${other}/fd`)];
    } catch {
      continue; // gone, or not ours to look at
    }
    for (const e of entries) {
      let link: string;
      try {
        link = Deno.readLinkSync(`/proc/${other}/fd/${e.name}`);
      } catch {
        continue;
      }
      const same = byLink.get(link);
      if (!same) continue;
      for (const o of same) {
        if (out.has(o.fd)) continue;
        let shared = false;
        if (ANON.has(o.kind) || byFile.has(o.fd)) {
          try {
            shared = sameFile(pid, o.fd, other, Number(e.name));
          } catch { /* not permitted or gone: nothing to compare */ }
        } else if (o.kind === "fifo" || o.kind === "memfd") {
          shared = inoOf(`/proc/${other}/fd/${e.name}`) === myIno.get(o.fd);
        } else shared = true; // pipe:[ino], socket:[ino]: the inode is the object
        if (shared) out.set(o.fd, other);
      }
    }
  }
  return out;
}
