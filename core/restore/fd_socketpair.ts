/**
 * A unix socketpair made again by the restored process: socketpair(2) of
 * the same type, its buffer sizes, the messages that waited on each end
 * sent again from the other one in order (one send per message, so
 * datagram and seqpacket boundaries hold; with the sender's credentials
 * attached or not, as they were), its shutdown state, its options, and
 * each end's flags and number.
 *
 * @module
 */
import type { FdEntry } from "../image/schema.ts";
import { Calls, fdError, FL, NR, u64 } from "./fd_calls.ts";

const SOL_SOCKET = 1;
const SO = {
  SNDBUF: 7,
  RCVBUF: 8,
  PASSCRED: 16,
  RCVLOWAT: 18,
  RCVTIMEO: 20,
  SNDTIMEO: 21,
  PEEK_OFF: 42,
} as const;
const EAGAIN = 11n;

async function setOpt(c: Calls, fd: number, at: number, opt: number, value: Uint8Array) {
  c.must(fd, `setting socket option ${opt}`, NR.setsockopt, [
    at,
    SOL_SOCKET,
    opt,
    await c.small(value),
    value.length,
  ]);
}

const int = (n: number) => new Uint8Array(new Int32Array([n]).buffer);
const timeval = (us: number) => u64(BigInt(Math.floor(us / 1e6)), BigInt(us % 1e6));

/** Sends `msg` from `from` to the end whose number in the image is `fd`. */
async function send(c: Calls, fd: number, from: number, msg: Uint8Array, stream: boolean) {
  const at = await c.stage(fd, msg);
  for (let off = 0; off < msg.length || (off === 0 && !stream);) {
    const n = c.try(NR.sendto, [
      from,
      at + BigInt(off),
      msg.length - off,
      FL.MSG_DONTWAIT | FL.MSG_NOSIGNAL,
      0,
      0,
    ]);
    if (n === -EAGAIN) {
      throw fdError(
        fd,
        "queueing its messages again",
        "they do not fit in the socket buffers here",
        "raise net.core.wmem_max (or net.unix.max_dgram_qlen) on this node",
      );
    }
    if (n < 0n) throw fdError(fd, "queueing its messages again", `errno ${-n}`);
    if (!stream && n !== BigInt(msg.length)) {
      throw fdError(fd, "queueing a message", "a short send");
    }
    off += Number(n);
    if (!stream) break;
  }
}

/** Makes the socketpair whose two ends are `group` and puts each at its number. */
export async function makeSocketpair(c: Calls, group: FdEntry[]): Promise<void> {
  const byEnd = [0, 1].map((e) => group.find((f) => f.unix!.end === e)!);
  const type = byEnd[0].unix!.type;
  const SOCK_NONBLOCK = FL.O_NONBLOCK, SOCK_CLOEXEC = FL.O_CLOEXEC;
  const at = await c.small(new Uint8Array(8));
  c.must(byEnd[0].fd, "making its socketpair", NR.socketpair, [
    1,
    type | SOCK_NONBLOCK | SOCK_CLOEXEC,
    0,
    at,
  ]);
  const v = new DataView((await c.read(at, 8)).buffer);
  const sv = [v.getInt32(0, true), v.getInt32(4, true)];
  for (const e of [0, 1]) {
    const o = byEnd[e].unix!.options;
    // getsockopt shows twice what was asked: ask for half (best effort: the node's maximum rules).
    c.try(NR.setsockopt, [sv[e], SOL_SOCKET, SO.SNDBUF, await c.small(int(o.sndbuf >> 1)), 4]);
    c.try(NR.setsockopt, [sv[e], SOL_SOCKET, SO.RCVBUF, await c.small(int(o.rcvbuf >> 1)), 4]);
  }
  for (const e of [0, 1]) {
    const s = byEnd[e].unix!;
    let passcred = -1;
    for (const [i, msg] of s.queue.entries()) {
      // Credentials go with a message when the receiver asks for them (kernels that attach them on demand).
      const want = s.uncredited.includes(i) ? 0 : 1;
      if (want !== passcred) {
        await setOpt(c, byEnd[e].fd, sv[e], SO.PASSCRED, int(want));
        passcred = want;
      }
      await send(c, byEnd[e].fd, sv[1 - e], msg, type === 1);
    }
  }
  for (const e of [0, 1]) {
    const sh = byEnd[e].unix!.shutdown;
    if (sh) {
      c.must(byEnd[e].fd, "shutting it down", NR.shutdown, [
        sv[e],
        sh === 3 ? 2 : sh === 1 ? 0 : 1,
      ]);
    }
  }
  for (const e of [0, 1]) {
    const { fd, unix } = byEnd[e];
    const o = unix!.options;
    await setOpt(c, fd, sv[e], SO.PASSCRED, int(o.passcred ? 1 : 0));
    if (o.peekOff !== -1) await setOpt(c, fd, sv[e], SO.PEEK_OFF, int(o.peekOff));
    if (o.rcvlowat !== 1) await setOpt(c, fd, sv[e], SO.RCVLOWAT, int(o.rcvlowat));
    if (o.rcvtimeoUs) await setOpt(c, fd, sv[e], SO.RCVTIMEO, timeval(o.rcvtimeoUs));
    if (o.sndtimeoUs) await setOpt(c, fd, sv[e], SO.SNDTIMEO, timeval(o.sndtimeoUs));
  }
  for (const e of [0, 1]) {
    const f = byEnd[e];
    c.setFl(sv[e], f.flags);
    const live = [sv[1 - e]];
    c.place(sv[e], f.fd, f.flags, e === 0 ? live : []);
    if (e === 0) sv[1] = live[0];
  }
}
