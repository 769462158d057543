/**
 * A socketpair end's state, from ppm's copy of it (pidfd_getfd): its
 * options, and the messages queued for it, read with MSG_PEEK from offset
 * 0 on (SO_PEEK_OFF, put back afterwards) so the process finds every one
 * still there, in order, with its boundaries. SO_PASSCRED is on meanwhile
 * so each message shows who sent it: the restored process sends them again
 * itself, so a message from anyone but the process as it is now (its PID,
 * uid and gid) would arrive with other credentials, and stays. Newer
 * kernels attach no credentials where neither end asked for them (they
 * show as PID 0): such messages are marked, and sent again without. So does a
 * message carrying descriptors (SCM_RIGHTS): passing none asked for, the
 * kernel only says there were some (MSG_CTRUNC).
 *
 * @module
 */
import {
  getsockoptBytes,
  getsockoptInt,
  MSG,
  recvMsg,
  setsockoptInt,
  SO,
  SOCK,
  SOL_SOCKET,
} from "../../../ffi/socket.ts";
import type { UnixOptions } from "../../image/fds.ts";
import { MAX_QUEUED } from "../../image/fds.ts";

/** Who the restored process will be when it sends: its PID, real uid and gid. */
export interface Sender {
  /** PID (kept by a restore). */
  pid: number;
  /** Real uid. */
  uid: number;
  /** Real gid. */
  gid: number;
}

const SCM_CREDENTIALS = 2;
/** CMSG_SPACE(sizeof(struct ucred)): room for the credentials and not one descriptor more. */
const CRED_SPACE = 32;
const CHUNK = 256 * 1024;

/** The options a restore sets again. */
export function unixOptions(copy: number): UnixOptions {
  const int = (opt: number) => getsockoptInt(copy, SOL_SOCKET, opt);
  const timeo = (opt: number) => {
    const b = getsockoptBytes(copy, SOL_SOCKET, opt, 16);
    const v = new DataView(b.buffer, b.byteOffset, b.length);
    return Number(v.getBigInt64(0, true)) * 1e6 + Number(v.getBigInt64(8, true));
  };
  return {
    sndbuf: int(SO.SNDBUF),
    rcvbuf: int(SO.RCVBUF),
    passcred: int(SO.PASSCRED) !== 0,
    peekOff: int(SO.PEEK_OFF),
    rcvlowat: int(SO.RCVLOWAT),
    rcvtimeoUs: timeo(SO.RCVTIMEO),
    sndtimeoUs: timeo(SO.SNDTIMEO),
  };
}

/** The sender's credentials in a control buffer, if any. */
function credsOf(control: Uint8Array): Sender | undefined {
  const v = new DataView(control.buffer, control.byteOffset, control.length);
  for (let off = 0; off + 16 <= control.length;) {
    const len = Number(v.getBigUint64(off, true));
    if (len < 16 || off + len > control.length) break;
    if (
      v.getInt32(off + 8, true) === SOL_SOCKET && v.getInt32(off + 12, true) === SCM_CREDENTIALS &&
      len >= 28
    ) {
      return {
        pid: v.getInt32(off + 16, true),
        uid: v.getUint32(off + 20, true),
        gid: v.getUint32(off + 24, true),
      };
    }
    off += (len + 7) & ~7;
  }
  return undefined;
}

/** A socket option that may be set, put back afterwards; undefined where the kernel lacks it. */
function swap(copy: number, opt: number, value: number): (() => void) | undefined {
  let old: number;
  try {
    old = getsockoptInt(copy, SOL_SOCKET, opt);
  } catch {
    return undefined;
  }
  if (old === value) return () => {};
  setsockoptInt(copy, SOL_SOCKET, opt, value);
  return () => setsockoptInt(copy, SOL_SOCKET, opt, old);
}

/**
 * The messages queued on the socketpair end behind `copy` (of type
 * `type`), or why they cannot move; the end is left as it was. `shutRead`:
 * its receiving side is shut down (an empty read is then its end).
 */
export function peekQueue(
  copy: number,
  type: number,
  sender: Sender,
  shutRead: boolean,
): { queue: Uint8Array[]; uncredited: number[] } | { reason: string } {
  const undo = [swap(copy, SO.PEEK_OFF, 0), swap(copy, SO.PASSCRED, 1)];
  undo.push(swap(copy, SO.PASSSEC, 0), swap(copy, SO.PASSPIDFD, 0));
  try {
    const queue: Uint8Array[] = [];
    const uncredited: number[] = [];
    let parts: Uint8Array[] = [];
    for (let i = 0; i <= MAX_QUEUED * 4; i++) {
      const flags = MSG.PEEK | MSG.DONTWAIT | (type === SOCK.STREAM ? 0 : MSG.TRUNC);
      const r = recvMsg(copy, CHUNK, flags, CRED_SPACE);
      if (!r) break;
      if (r.flags & MSG.CTRUNC) {
        return { reason: "a message queued on it carries descriptors (SCM_RIGHTS)" };
      }
      const c = credsOf(r.control);
      const none = !c || c.pid === 0;
      if (!none && (c.pid !== sender.pid || c.uid !== sender.uid || c.gid !== sender.gid)) {
        return {
          reason:
            `a message queued on it comes from process ${c.pid} (uid ${c.uid}, gid ${c.gid}), ` +
            "not from the process as it is now; sent again, it would carry other credentials",
        };
      }
      if (type === SOCK.STREAM) {
        if (r.data.length === 0) break; // its end: the other side shut down
        if (none) uncredited.push(queue.length);
        queue.push(r.data);
        continue;
      }
      if (r.length === 0 && shutRead) break; // its end (an empty message looks the same)
      parts.push(r.data);
      if (r.length <= r.data.length) {
        if (none) uncredited.push(queue.length);
        const whole = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
        let off = 0;
        for (const p of parts) {
          whole.set(p, off);
          off += p.length;
        }
        queue.push(whole);
        parts = [];
      }
      if (queue.length > MAX_QUEUED) {
        return { reason: `more than ${MAX_QUEUED} messages are queued on it` };
      }
    }
    return { queue, uncredited };
  } finally {
    for (const u of undo.reverse()) u?.();
  }
}
