/**
 * A relayed descriptor made again (core/relay/fds.ts): the restored
 * process makes a new pipe, or a unix stream socketpair (a TCP connection
 * over loopback: see makeTcpRelayed), keeps the end the
 * image names at its number with its flags (a socket its SO_PASSCRED and
 * its shutdown of writing), and the agent takes the other end
 * (pidfd_getfd) before the process closes it: the agent's end is where the
 * relay reads what the process writes and writes what comes for it. A FIFO
 * becomes a pipe (the relay is its other end).
 *
 * @module
 */
import { close, pidfdGetfd, pidfdOpen } from "../../ffi/libc.ts";
import {
  acceptNow,
  AF,
  bind4,
  closeSocket,
  type Inet4,
  IPPROTO,
  listenSocket,
  peerName,
  SOCK,
  sockaddrIn,
  socket,
  sockName,
  TCP,
} from "../../ffi/socket.ts";
import type { FdEntry } from "../image/schema.ts";
import { Calls, fdError, FL, NR } from "./fd_calls.ts";

const EINPROGRESS = 115n;

const SOL_SOCKET = 1, SO_PASSCRED = 16, AF_UNIX = 1, SOCK_STREAM = 1;

/**
 * Makes relayed descriptor `f` in the process and returns the agent's
 * descriptor of its other end (the caller owns it).
 */
export async function makeRelayed(c: Calls, f: FdEntry): Promise<number> {
  const r = f.relayed!;
  if (r.end === "tcp-stream") return await makeTcpRelayed(c, f);
  const at = await c.small(new Uint8Array(8));
  if (r.end === "unix-stream") {
    c.must(f.fd, "making its socketpair", NR.socketpair, [
      AF_UNIX,
      SOCK_STREAM | FL.O_NONBLOCK | FL.O_CLOEXEC,
      0,
      at,
    ]);
  } else c.must(f.fd, "making its pipe", NR.pipe2, [at, FL.O_CLOEXEC | FL.O_NONBLOCK]);
  const v = new DataView((await c.read(at, 8)).buffer);
  const pair = [v.getInt32(0, true), v.getInt32(4, true)];
  // A pipe: the process reads [0] or writes [1]; a socketpair: the process has [0].
  const mine = r.end === "pipe-write" ? 1 : 0;
  const own = pair[mine];
  const far = [pair[1 - mine]];
  let agent = -1;
  try {
    const pidfd = pidfdOpen(c.pid);
    try {
      agent = pidfdGetfd(pidfd, far[0]);
    } finally {
      close(pidfd);
    }
    if (r.end === "unix-stream") {
      const one = await c.small(new Uint8Array(new Int32Array([1]).buffer));
      if (r.passcred) {
        c.must(f.fd, "setting SO_PASSCRED", NR.setsockopt, [own, SOL_SOCKET, SO_PASSCRED, one, 4]);
      }
      // Its writing shut down stays so; a shut reading is the relay's end of file.
      if (r.shutdown & 2) c.must(f.fd, "shutting down its writing", NR.shutdown, [own, 1]);
    }
    c.setFl(own, f.flags);
    c.place(own, f.fd, f.flags, far);
  } catch (e) {
    if (agent >= 0) close(agent);
    throw e;
  } finally {
    c.close(far[0]);
  }
  return agent;
}

/**
 * Bounded wait for the process's connection to reach the agent's listener
 * (loopback: at once; a second if a stranger's filled the queue first).
 */
const ACCEPT_MS = 5000;

/**
 * The connection from `want` accepted on `listener`, within `ms`; -1 when
 * none came. Any local process may dial a listener on 127.0.0.1: the other
 * connections are closed.
 */
export async function acceptFrom(listener: number, want: Inet4, ms: number): Promise<number> {
  for (let waited = 0; waited < ms; waited += 10) {
    const got = acceptNow(listener);
    if (got === null) {
      await new Promise((res) => setTimeout(res, 10));
      continue;
    }
    const from = peerName(got);
    if (from && "addr" in from && from.addr === want.addr && from.port === want.port) return got;
    closeSocket(got);
  }
  return -1;
}

/** The local end of the process's socket `fd` (read through a copy of it). */
function endOf(pid: number, fd: number): Inet4 {
  const pidfd = pidfdOpen(pid);
  try {
    const copy = pidfdGetfd(pidfd, fd);
    try {
      return sockName(copy) as Inet4;
    } finally {
      close(copy);
    }
  } finally {
    close(pidfd);
  }
}

/**
 * A TCP connection over loopback, relayed: the process connects a new
 * socket to a listener the agent opens on 127.0.0.1 for it alone, and the
 * agent keeps the accepted end. The process's descriptor is a TCP socket
 * again (its ends' addresses are new).
 */
async function makeTcpRelayed(c: Calls, f: FdEntry): Promise<number> {
  const listener = socket(AF.INET, SOCK.STREAM, IPPROTO.TCP);
  let agent = -1;
  let own = -1;
  try {
    bind4(listener, { addr: "127.0.0.1", port: 0 });
    listenSocket(listener, 8);
    const at = await c.small(sockaddrIn(sockName(listener) as Inet4));
    own = Number(
      c.must(f.fd, "making its TCP socket", NR.socket, [
        AF.INET,
        SOCK.STREAM | FL.O_NONBLOCK | FL.O_CLOEXEC,
        IPPROTO.TCP,
      ]),
    );
    const r = c.try(NR.connect, [own, at, 16]);
    if (r < 0n && r !== -EINPROGRESS) throw fdError(f.fd, "connecting it", `errno ${-r}`);
    agent = await acceptFrom(listener, endOf(c.pid, own), ACCEPT_MS);
    if (agent < 0) throw fdError(f.fd, "connecting it", "the agent's listener saw no connection");
    const one = await c.small(new Uint8Array(new Int32Array([1]).buffer));
    c.must(f.fd, "setting TCP_NODELAY", NR.setsockopt, [own, IPPROTO.TCP, TCP.NODELAY, one, 4]);
    c.setFl(own, f.flags);
    c.place(own, f.fd, f.flags);
    own = -1;
    return agent;
  } catch (e) {
    if (agent >= 0) close(agent);
    if (own >= 0) c.close(own);
    throw e;
  } finally {
    closeSocket(listener);
  }
}
