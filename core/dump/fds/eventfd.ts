/**
 * An eventfd's state: its counter (fdinfo) and its mode. Kernels from 6.6
 * show EFD_SEMAPHORE in fdinfo; on older ones (6.1) ppm learns it from a
 * copy of the descriptor (pidfd_getfd) while the process is frozen, by
 * reading and writing the counter back so that it ends as it was:
 *
 * - counter >= 2: a read returns 1 in semaphore mode, the whole counter
 *   otherwise; the same amount is written back.
 * - counter 0 or 1: 2 is added first (a read of 1 could mean either), a
 *   read returns 1 (semaphore, then one more read takes the rest of the 2
 *   away) or counter + 2 (then the counter is written back).
 *
 * Its description is made non-blocking meanwhile (and put back), so no call
 * can wait. The process, frozen, sees none of it; an epoll instance that
 * watches the eventfd would be woken, which only shows where it watches it
 * edge-triggered: such an eventfd is refused on those kernels instead.
 *
 * @module
 */
import { F, fcntl, readSome, writeSome } from "../../../ffi/fds.ts";
import { O } from "../../../ffi/libc.ts";
import { parseEventfdInfo } from "../fdinfo.ts";
import type { ObjectFd } from "./survey.ts";

const EPOLLIN = 0x1;
const EPOLLOUT = 0x4;

/**
 * Why an eventfd among `objs` cannot move: its fdinfo cannot be read, or
 * its mode is not shown and learning it would show (`edge`: descriptors
 * watched edge-triggered, with their events; see epoll.ts).
 */
export function eventfdReasons(objs: ObjectFd[], edge: Map<number, number>): string[] {
  const reasons: string[] = [];
  for (const o of objs) {
    if (o.kind !== "eventfd" || o.dupOf !== undefined) continue;
    const info = parseEventfdInfo(o.info);
    if (!info) {
      reasons.push(`fd ${o.fd}: an eventfd whose counter cannot be read`);
      continue;
    }
    const ev = edge.get(o.fd) ?? 0;
    if (info.semaphore === undefined && ((ev & EPOLLOUT) || ((ev & EPOLLIN) && info.count > 0n))) {
      reasons.push(
        `fd ${o.fd}: an eventfd watched edge-triggered by epoll, on a kernel that does not show ` +
          "whether it counts as a semaphore; finding out would wake the epoll instance " +
          "(Linux 6.6 and later show it)",
      );
    }
  }
  return reasons;
}

const u64 = (n: bigint) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, n, true);
  return b;
};

function read8(fd: number): bigint {
  const b = new Uint8Array(8);
  const n = readSome(fd, b);
  if (n !== 8) throw new Error("the eventfd could not be read");
  return new DataView(b.buffer).getBigUint64(0, true);
}

function write8(fd: number, n: bigint): void {
  if (writeSome(fd, u64(n)) !== 8) throw new Error("the eventfd could not be written");
}

/**
 * Whether the eventfd behind `copy` (ppm's copy of the process's
 * descriptor) is in semaphore mode, its counter being `count`; leaves the
 * counter and the flags as they were.
 */
export function probeSemaphore(copy: number, count: bigint): boolean {
  const flags = fcntl(copy, F.GETFL);
  if (!(flags & O.NONBLOCK)) fcntl(copy, F.SETFL, flags | O.NONBLOCK);
  try {
    if (count >= 2n) {
      const got = read8(copy);
      write8(copy, got);
      return got === 1n;
    }
    write8(copy, 2n);
    const got = read8(copy);
    if (got === 1n) {
      read8(copy);
      return true;
    }
    if (got > 2n) write8(copy, got - 2n);
    return false;
  } finally {
    if (!(flags & O.NONBLOCK)) fcntl(copy, F.SETFL, flags);
  }
}
