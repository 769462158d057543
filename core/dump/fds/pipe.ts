/**
 * A pipe's (or FIFO's) unread bytes, read without taking them: tee(2)
 * copies the pipe's buffers from a copy of the process's read end
 * (pidfd_getfd) into a pipe of ppm's own, which ppm then reads. The
 * process's pipe is left exactly as it was. In packet mode (O_DIRECT)
 * every packet stays one item.
 *
 * @module
 */
import { closeFd, F, fcntl, pipe2, readSome, tee } from "../../../ffi/fds.ts";
import { O } from "../../../ffi/libc.ts";
import { ioctlInt } from "../../../ffi/socket.ts";
import type { PipeState } from "../../image/fds.ts";

/** FIONREAD: bytes waiting in a pipe. */
const FIONREAD = 0x541b;
/** A packet is at most a page (PIPE_BUF). */
const PACKET_MAX = 4096;

/** Bytes queued in the pipe behind `copy`, and its capacity. */
export function pipeFill(copy: number): { queued: number; size: number } {
  return { queued: ioctlInt(copy, FIONREAD), size: fcntl(copy, F.GETPIPE_SZ) };
}

/**
 * The contents of the pipe behind `copy` (a readable copy of one of its
 * ends), as packets when `packets` (a writer has O_DIRECT), else as one
 * item; the pipe keeps them.
 */
export function pipeContents(copy: number, packets: boolean): PipeState {
  const { queued, size } = pipeFill(copy);
  if (queued === 0) return { size, data: [] };
  const [r, w] = pipe2(O.NONBLOCK);
  try {
    if (fcntl(w, F.GETPIPE_SZ) < size) fcntl(w, F.SETPIPE_SZ, size);
    // One tee copies every buffer: it always starts at the head, so a second would repeat it.
    const n = tee(copy, w, queued);
    if (n !== queued) throw new Error(`tee copied ${n} of the ${queued} bytes in the pipe`);
    const data: Uint8Array[] = [];
    const buf = new Uint8Array(packets ? PACKET_MAX : queued);
    for (let got = 0; got < queued;) {
      const k = readSome(r, buf);
      if (!k) throw new Error(`the copy of the pipe ended after ${got} of ${queued} bytes`);
      data.push(buf.slice(0, k));
      got += k;
    }
    return { size, data };
  } finally {
    closeFd(r);
    closeFd(w);
  }
}
