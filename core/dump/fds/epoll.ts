/**
 * An epoll instance's watched descriptors, checked: the kernel keys each by
 * file and descriptor number, so a restore adds each under the same number,
 * which must still be that file in the process (kcmp KCMP_EPOLL_TFD; where
 * the kernel has no kcmp, the inode the fdinfo line names). Also: which
 * descriptors an epoll instance watches edge-triggered (a wake-up would
 * show there).
 *
 * @module
 */
import { ErrnoError } from "../../../ffi/libc.ts";
import { epollTargetIs } from "../../../ffi/fds.ts";
import { type EpollItem, parseEpollInfo } from "../fdinfo.ts";
import type { ObjectFd } from "./survey.ts";

/** EPOLLET. */
export const EPOLLET = 0x80000000;
/** Event bits the kernel keeps for itself; an item with none but these is disabled (EPOLLONESHOT fired). */
const EP_PRIVATE_BITS = 0x10000000 | 0x40000000 | 0x80000000 | 0x20000000;

/** Whether the file at `fd` of `pid` is the one epoll `epfd` watches under `tfd` (the inode `it` names where kcmp is missing). */
function watches(pid: number, epfd: number, it: EpollItem): boolean | "gone" {
  try {
    return epollTargetIs(pid, it.fd, epfd, it.fd);
  } catch (e) {
    if (!(e instanceof ErrnoError)) throw e;
    if (e.code === "EBADF") return "gone";
    if (e.code !== "ENOSYS") throw e;
  }
  try {
    return BigInt(Deno.statSync(`/proc/${pid}/fd/${it.fd}`).ino ?? -1) === it.ino;
  } catch {
    return "gone";
  }
}

/** The reasons an epoll instance of `objs` (of `pid`) cannot move. */
export function checkEpolls(pid: number, objs: ObjectFd[]): string[] {
  const reasons: string[] = [];
  for (const o of objs) {
    if (o.kind !== "epoll" || o.dupOf !== undefined) continue;
    const items = parseEpollInfo(o.info);
    if (!items) {
      reasons.push(`fd ${o.fd}: an epoll instance whose watched descriptors cannot be read`);
      continue;
    }
    for (const it of items) {
      let w: boolean | "gone";
      try {
        w = watches(pid, o.fd, it);
      } catch (e) {
        reasons.push(
          `fd ${o.fd}: an epoll instance whose target ${it.fd} cannot be checked (${
            (e as Error).message
          })`,
        );
        continue;
      }
      if (w !== true) {
        reasons.push(
          `fd ${o.fd}: an epoll instance watching descriptor ${it.fd}, ` +
            (w === "gone"
              ? "which the process has closed (the file lives on elsewhere)"
              : "whose number now names another file") +
            "; a restore can only add it under a number that names it",
        );
      }
    }
  }
  return reasons;
}

/**
 * The descriptors (their lowest numbers, see `dupOf`) that an epoll
 * instance among `objs` watches edge-triggered and enabled, with the
 * events it watches them for.
 */
export function edgeWatched(objs: ObjectFd[]): Map<number, number> {
  const out = new Map<number, number>();
  const primary = (fd: number) => objs.find((x) => x.fd === fd)?.dupOf ?? fd;
  for (const o of objs) {
    if (o.kind !== "epoll" || o.dupOf !== undefined) continue;
    for (const it of parseEpollInfo(o.info) ?? []) {
      if ((it.events & EPOLLET) && (it.events & ~EP_PRIVATE_BITS)) {
        out.set(primary(it.fd), (out.get(primary(it.fd)) ?? 0) | it.events);
      }
    }
  }
  return out;
}
