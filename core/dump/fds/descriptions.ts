/**
 * Which descriptors of a process are copies (dup) of one open file
 * description: they share its flags, its position and, for a pipe end,
 * the end itself, so a restore makes them with dup, not anew. kcmp(2)
 * compares the descriptions; only descriptors that could be the same
 * (same kind of anonymous object, same inode) are compared.
 *
 * @module
 */
import { ErrnoError } from "../../../ffi/libc.ts";
import { sameFile } from "../../../ffi/fds.ts";
import type { ObjectFd } from "./survey.ts";

/** What only the same open file can share: the kind, and the inode where there is one. */
function identity(o: ObjectFd): string {
  if (o.kind === "eventfd" || o.kind === "timerfd" || o.kind === "signalfd" || o.kind === "epoll") {
    return o.kind;
  }
  return `${o.kind}:${o.id?.dev ?? ""}:${o.id?.ino ?? o.target}`;
}

/**
 * Marks each descriptor of `objs` (of process `pid`) that shares its open
 * file with a lower one (`dupOf`: the lowest); returns reasons when kcmp
 * cannot tell.
 */
export function groupDescriptions(pid: number, objs: ObjectFd[]): string[] {
  const groups = new Map<string, ObjectFd[]>();
  for (const o of objs) groups.set(identity(o), [...groups.get(identity(o)) ?? [], o]);
  const reasons: string[] = [];
  for (const g of groups.values()) {
    const own: ObjectFd[] = [];
    for (const o of [...g].sort((a, b) => a.fd - b.fd)) {
      try {
        const first = own.find((p) => sameFile(pid, p.fd, pid, o.fd));
        if (first) o.dupOf = first.fd;
        else own.push(o);
      } catch (e) {
        const why = e instanceof ErrnoError && e.code === "ENOSYS"
          ? "this kernel has no kcmp(2), which tells copies (dup) apart"
          : (e as Error).message;
        reasons.push(`fd ${o.fd}: ppm cannot tell which descriptors share its open file (${why})`);
        own.push(o);
      }
    }
  }
  return reasons;
}
