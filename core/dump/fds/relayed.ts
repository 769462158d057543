/**
 * The descriptors a migration relays (survey.ts finds them: a pipe or FIFO
 * end, a connected unix stream socket, or a TCP connection over loopback,
 * whose other end another process holds) as FILES entries: what each is, and for a socket its shutdown
 * state and SO_PASSCRED. Their unread bytes are not read: they stay in the
 * process's end at the source, where the relay reads them first
 * (core/relay/fds.ts), so a migration that fails loses none. A socket with
 * descriptors queued in it (SCM_RIGHTS) cannot be relayed: found by
 * peeking at its queue (from offset 0; credentials, security labels and
 * pidfds not asked for meanwhile; all put back after) with no room for any
 * control message, so the kernel installs no descriptor and says there
 * were some (MSG_CTRUNC).
 *
 * @module
 */
import { close } from "../../../ffi/libc.ts";
import { getsockoptInt, MSG, recvMsg, setsockoptInt, SO, SOL_SOCKET } from "../../../ffi/socket.ts";
import type { FdEntry } from "../../image/fds.ts";
import { MAX_QUEUED } from "../../image/fds.ts";
import { copyFds } from "../sockets.ts";
import type { RelayedFd } from "./survey.ts";

/** Less than one control message header: a descriptor never fits. */
const NO_CONTROL = 8;
const CHUNK = 256 * 1024;

/** A socket option set to `value`, and how to put it back. */
function swap(copy: number, opt: number, value: number): () => void {
  let old: number;
  try {
    old = getsockoptInt(copy, SOL_SOCKET, opt);
  } catch {
    return () => {};
  }
  if (old === value) return () => {};
  setsockoptInt(copy, SOL_SOCKET, opt, value);
  return () => setsockoptInt(copy, SOL_SOCKET, opt, old);
}

/** Whether descriptors (SCM_RIGHTS) wait in the receive queue of socket `copy`; it is left as it was. */
export function rightsQueued(copy: number): boolean {
  const undo = [
    swap(copy, SO.PEEK_OFF, 0),
    swap(copy, SO.PASSCRED, 0),
    swap(copy, SO.PASSSEC, 0),
    swap(copy, SO.PASSPIDFD, 0),
  ];
  try {
    for (let i = 0; i < MAX_QUEUED * 4; i++) {
      const r = recvMsg(copy, CHUNK, MSG.PEEK | MSG.DONTWAIT, NO_CONTROL);
      if (!r || r.data.length === 0) return false;
      if (r.flags & MSG.CTRUNC) return true;
    }
    return false;
  } finally {
    for (const u of undo.reverse()) u();
  }
}

/** The entries of the relayed descriptors `relayed` of the frozen process `pid`, or why not. */
export function dumpRelayed(
  pid: number,
  relayed: RelayedFd[],
): { entries: FdEntry[]; reasons: string[] } {
  const entries: FdEntry[] = [];
  const reasons: string[] = [];
  const sockets = relayed.filter((r) => r.end === "unix-stream");
  const copies = copyFds(pid, sockets.map((r) => r.fd));
  try {
    for (const r of relayed) {
      let shutdown = 0, passcred = false;
      if (r.end === "unix-stream") {
        const copy = copies.get(r.fd)!;
        if (rightsQueued(copy)) {
          reasons.push(
            `fd ${r.fd}: a unix socket (${r.target}) with descriptors queued in it (SCM_RIGHTS); ` +
              "passed descriptors cannot be relayed: let the process receive them first",
          );
          continue;
        }
        shutdown = (r.diag?.shutdown ?? 0) & 3;
        passcred = getsockoptInt(copy, SOL_SOCKET, SO.PASSCRED) !== 0;
      }
      entries.push({
        fd: r.fd,
        kind: "relayed",
        path: r.target,
        flags: r.flags,
        pos: 0n,
        relayed: { end: r.end, shutdown, passcred },
      });
    }
  } finally {
    for (const c of copies.values()) close(c);
  }
  return { entries, reasons };
}
