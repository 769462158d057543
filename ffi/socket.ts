/**
 * Socket system calls through Deno FFI, for socket migration: raw
 * descriptors, socket options as bytes, IPv4 socket addresses, and the
 * queue ioctls TCP repair needs. All synchronous, on the calling thread
 * (errno is read right after each call).
 *
 * @module
 */
import { addressOf, errno, ErrnoError } from "./libc.ts";

const symbols = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  accept4: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i64"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

let lib: Deno.DynamicLibrary<typeof symbols> | undefined;

function c(): Deno.DynamicLibrary<typeof symbols>["symbols"] {
  if (!lib) lib = Deno.dlopen("libc.so.6", symbols);
  return lib.symbols;
}

function check(r: number | bigint, call: string, subject: string | number): void {
  if (r < 0) throw new ErrnoError(call, errno(), String(subject));
}

/** Address families, types, levels and options used by socket migration. */
export const AF = { UNIX: 1, INET: 2, INET6: 10, NETLINK: 16 } as const;
/** Socket types. */
export const SOCK = { STREAM: 1, DGRAM: 2, SEQPACKET: 5 } as const;
/** IP protocol numbers. */
export const IPPROTO = { IP: 0, TCP: 6, UDP: 17 } as const;
/** SOL_SOCKET and its options. */
export const SOL_SOCKET = 1;
/** Socket-level options. */
export const SO = {
  REUSEADDR: 2,
  TYPE: 3,
  SNDBUF: 7,
  RCVBUF: 8,
  KEEPALIVE: 9,
  REUSEPORT: 15,
  PASSCRED: 16,
  PEERCRED: 17,
  RCVLOWAT: 18,
  RCVTIMEO: 20,
  SNDTIMEO: 21,
  ACCEPTCONN: 30,
  PASSSEC: 34,
  PROTOCOL: 38,
  DOMAIN: 39,
  PEEK_OFF: 42,
  PASSPIDFD: 76,
} as const;
/** IPPROTO_IP options. */
export const IP = { FREEBIND: 15, TRANSPARENT: 19 } as const;
/** IPPROTO_TCP options (linux/tcp.h). */
export const TCP = {
  NODELAY: 1,
  MAXSEG: 2,
  KEEPIDLE: 4,
  KEEPINTVL: 5,
  KEEPCNT: 6,
  INFO: 11,
  USER_TIMEOUT: 18,
  REPAIR: 19,
  REPAIR_QUEUE: 20,
  QUEUE_SEQ: 21,
  REPAIR_OPTIONS: 22,
  TIMESTAMP: 24,
  REPAIR_WINDOW: 29,
} as const;
/** TCP_REPAIR_QUEUE values. */
export const TCP_QUEUE = { NONE: 0, RECV: 1, SEND: 2 } as const;
/** TCP option codes for TCP_REPAIR_OPTIONS. */
export const TCPOPT = { MSS: 2, WINDOW: 3, SACK_PERM: 4, TIMESTAMP: 8 } as const;
/** Queue ioctls. */
export const SIOC = { INQ: 0x541b, OUTQ: 0x5411, OUTQNSD: 0x894b } as const;
/** recv/send flags. */
export const MSG = { PEEK: 2, CTRUNC: 8, TRUNC: 0x20, DONTWAIT: 0x40, NOSIGNAL: 0x4000 } as const;
/** fcntl commands. */
export const F = { GETFL: 3, SETFL: 4 } as const;

/** socket(2), close-on-exec (ppm's sockets never leak into the programs it starts). */
export function socket(domain: number, type: number, proto = 0): number {
  const SOCK_CLOEXEC = 0o2000000;
  const fd = c().socket(domain, type | SOCK_CLOEXEC, proto);
  check(fd, "socket", `${domain}/${type}`);
  return fd;
}

/** A sockaddr_un for `path` ("@name": the abstract name) and its length. */
function sockaddrUn(path: string): { sa: Uint8Array<ArrayBuffer>; len: number } {
  const name = new TextEncoder().encode(path);
  if (name.length === 0 || name.length > 107) {
    throw new ErrnoError("sockaddr_un", 36, /* ENAMETOOLONG */ path);
  }
  const sa = new Uint8Array(2 + name.length + 1);
  new DataView(sa.buffer).setUint16(0, AF.UNIX, true);
  sa.set(name, 2);
  if (path.startsWith("@")) sa[2] = 0;
  // An abstract name's length counts no terminating NUL.
  return { sa, len: path.startsWith("@") ? 2 + name.length : sa.length };
}

/** connect(2) to the unix socket at `path` ("@name": the abstract name). */
export function connectUnix(fd: number, path: string): void {
  const { sa, len } = sockaddrUn(path);
  check(c().connect(fd, sa, len), "connect", path);
}

/** bind(2) to the unix socket address `path`. */
export function bindUnix(fd: number, path: string): void {
  const { sa, len } = sockaddrUn(path);
  check(c().bind(fd, sa, len), "bind", path);
}

/** close(2). */
export function closeSocket(fd: number): void {
  c().close(fd);
}

/** getsockopt(2) into `size` bytes; returns the bytes the kernel filled. */
export function getsockoptBytes(fd: number, level: number, opt: number, size: number): Uint8Array {
  const buf = new Uint8Array(size);
  const len = new Uint32Array([size]);
  check(c().getsockopt(fd, level, opt, buf, len), "getsockopt", `${level}/${opt}`);
  return buf.subarray(0, len[0]);
}

/** getsockopt(2) of an int option. */
export function getsockoptInt(fd: number, level: number, opt: number): number {
  const b = getsockoptBytes(fd, level, opt, 4);
  return new DataView(b.buffer, b.byteOffset, 4).getInt32(0, true);
}

/** setsockopt(2) with raw bytes. */
export function setsockoptBytes(fd: number, level: number, opt: number, value: Uint8Array): void {
  const v = new Uint8Array(value);
  check(c().setsockopt(fd, level, opt, v, v.length), "setsockopt", `${level}/${opt}`);
}

/** setsockopt(2) of an int option. */
export function setsockoptInt(fd: number, level: number, opt: number, value: number): void {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, value, true);
  setsockoptBytes(fd, level, opt, b);
}

/** An IPv4 endpoint. */
export interface Inet4 {
  /** Dotted quad. */
  addr: string;
  /** Port. */
  port: number;
}

/** `struct sockaddr_in` for `a`. */
export function sockaddrIn(a: Inet4): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint16(0, AF.INET, true);
  v.setUint16(2, a.port, false);
  const parts = a.addr.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !(p >= 0 && p <= 255))) {
    throw new RangeError(`not an IPv4 address: ${a.addr}`);
  }
  b.set(parts, 4);
  return b;
}

function parseSockaddr(b: Uint8Array): Inet4 | { family: number } {
  const v = new DataView(b.buffer, b.byteOffset, b.length);
  const family = v.getUint16(0, true);
  if (family !== AF.INET) return { family };
  return { addr: [...b.subarray(4, 8)].join("."), port: v.getUint16(2, false) };
}

/** getsockname(2): the IPv4 endpoint, or the family of another kind of socket. */
export function sockName(fd: number): Inet4 | { family: number } {
  const b = new Uint8Array(128);
  const len = new Uint32Array([128]);
  check(c().getsockname(fd, b, len), "getsockname", fd);
  return parseSockaddr(b);
}

/** getpeername(2): the peer, or null when not connected. */
export function peerName(fd: number): Inet4 | { family: number } | null {
  const b = new Uint8Array(128);
  const len = new Uint32Array([128]);
  if (c().getpeername(fd, b, len) < 0) {
    const e = errno();
    if (e === 107) return null; // ENOTCONN
    throw new ErrnoError("getpeername", e, String(fd));
  }
  return parseSockaddr(b);
}

/** bind(2) to an IPv4 endpoint. */
export function bind4(fd: number, a: Inet4): void {
  check(c().bind(fd, sockaddrIn(a), 16), "bind", `${a.addr}:${a.port}`);
}

/** connect(2) to an IPv4 endpoint (in TCP repair mode: no SYN, just the state). */
export function connect4(fd: number, a: Inet4): void {
  check(c().connect(fd, sockaddrIn(a), 16), "connect", `${a.addr}:${a.port}`);
}

/** listen(2). */
export function listenSocket(fd: number, backlog: number): void {
  check(c().listen(fd, backlog), "listen", fd);
}

/** A unix socket peer's credentials, as the kernel took them when it connected. */
export interface PeerCred {
  /** Its process (as this process's PID namespace sees it). */
  pid: number;
  /** Its effective uid. */
  uid: number;
  /** Its effective gid. */
  gid: number;
}

/** getsockopt(2) SO_PEERCRED: who is at the other end of unix socket `fd`. */
export function peerCred(fd: number): PeerCred {
  const b = getsockoptBytes(fd, SOL_SOCKET, SO.PEERCRED, 12);
  if (b.length < 12) throw new ErrnoError("getsockopt", 22, "SO_PEERCRED");
  const v = new DataView(b.buffer, b.byteOffset, 12);
  return { pid: v.getInt32(0, true), uid: v.getUint32(4, true), gid: v.getUint32(8, true) };
}

/** Whether `fd` is readable (or at its end, or in error) now, without waiting. */
export function readableNow(fd: number): boolean {
  const pfd = new Uint8Array(8);
  const v = new DataView(pfd.buffer);
  v.setInt32(0, fd, true);
  v.setInt16(4, 1, true); // POLLIN
  return c().poll(pfd, 1n, 0) > 0 && v.getInt16(6, true) !== 0;
}

/** accept4(2) without waiting: a new descriptor, or null when the queue is empty. */
export function acceptNow(fd: number): number | null {
  const SOCK_NONBLOCK = 0o4000, SOCK_CLOEXEC = 0o2000000;
  // The listener may be a blocking one: look before accepting.
  const pfd = new Uint8Array(8);
  const v = new DataView(pfd.buffer);
  v.setInt32(0, fd, true);
  v.setInt16(4, 1, true); // POLLIN
  if (c().poll(pfd, 1n, 0) <= 0 || !(v.getInt16(6, true) & 1)) return null;
  const r = c().accept4(fd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (r >= 0) return r;
  const e = errno();
  if (e === 11) return null; // EAGAIN
  throw new ErrnoError("accept4", e, String(fd));
}

/** An int ioctl (SIOCINQ, SIOCOUTQ, SIOCOUTQNSD). */
export function ioctlInt(fd: number, request: number): number {
  const b = new Int32Array(1);
  check(c().ioctl(fd, BigInt(request), new Uint8Array(b.buffer)), "ioctl", request);
  return b[0];
}

/** recv(2) of up to `len` bytes with `flags`. */
export function recvBytes(fd: number, len: number, flags: number): Uint8Array {
  const buf = new Uint8Array(Math.max(1, len));
  const n = c().recv(fd, buf, BigInt(len), flags);
  check(n, "recv", fd);
  return buf.subarray(0, Number(n));
}

/** send(2) of all of `data` (in repair mode it fills the selected queue). */
export function sendAll(fd: number, data: Uint8Array, flags = 0): void {
  const buf = new Uint8Array(data);
  for (let off = 0; off < buf.length;) {
    const n = c().send(fd, buf.subarray(off), BigInt(buf.length - off), flags);
    check(n, "send", fd);
    off += Number(n);
  }
}

/** socketpair(2) of unix sockets of `type` (close-on-exec added). */
export function socketPair(type: number): [number, number] {
  const fds = new Int32Array(2);
  check(
    c().socketpair(AF.UNIX, type | 0o2000000, 0, new Uint8Array(fds.buffer)),
    "socketpair",
    type,
  );
  return [fds[0], fds[1]];
}

/** shutdown(2): `how` 0 reading, 1 writing, 2 both. */
export function shutdownSocket(fd: number, how: 0 | 1 | 2): void {
  check(c().shutdown(fd, how), "shutdown", fd);
}

/** fcntl(2) F_SETFL. */
export function setFl(fd: number, flags: number): void {
  check(c().fcntl(fd, F.SETFL, BigInt(flags)), "fcntl", fd);
}

/** fcntl(2) F_GETFL. */
export function getFl(fd: number): number {
  const r = c().fcntl(fd, F.GETFL, 0n);
  check(r, "fcntl", fd);
  return r;
}

/** What one recvmsg(2) got. */
export interface Received {
  /** Bytes copied into the buffer. */
  data: Uint8Array;
  /** With MSG_TRUNC in the flags asked: the message's full length from where it was read. */
  length: number;
  /** msg_flags (MSG_TRUNC, MSG_CTRUNC ...). */
  flags: number;
  /** The control messages' bytes (cmsghdr records). */
  control: Uint8Array;
}

/**
 * recvmsg(2) of up to `len` bytes with `flags`, and up to `controlLen`
 * bytes of control messages (0: none asked, so the kernel passes no
 * descriptor and sets MSG_CTRUNC when there was something to pass); null
 * for EAGAIN.
 */
export function recvMsg(fd: number, len: number, flags: number, controlLen = 0): Received | null {
  const buf = new Uint8Array(Math.max(1, len));
  const control = new Uint8Array(Math.max(1, controlLen));
  const iov = new BigUint64Array([addressOf(buf), BigInt(len)]);
  const iovBytes = new Uint8Array(iov.buffer);
  const hdr = new Uint8Array(56);
  const v = new DataView(hdr.buffer);
  v.setBigUint64(16, addressOf(iovBytes), true);
  v.setBigUint64(24, 1n, true);
  if (controlLen > 0) {
    v.setBigUint64(32, addressOf(control), true);
    v.setBigUint64(40, BigInt(controlLen), true);
  }
  const n = c().recvmsg(fd, hdr, flags);
  if (n < 0n) {
    const e = errno();
    if (e === 11) return null;
    throw new ErrnoError("recvmsg", e, String(fd));
  }
  const got = Math.min(Number(n), len);
  return {
    data: buf.slice(0, got),
    length: Number(n),
    flags: v.getInt32(48, true),
    control: control.slice(0, controlLen > 0 ? Number(v.getBigUint64(40, true)) : 0),
  };
}

/** SCM_RIGHTS: descriptors passed in a control message. */
const SCM_RIGHTS = 1;

/**
 * sendmsg(2) of `data` with the descriptors `fds` passed along
 * (SCM_RIGHTS; the receiver gets copies, these stay open here), once, with
 * `flags`: the bytes sent (the descriptors went with the first), or null
 * for EAGAIN.
 */
export function sendWithFds(
  fd: number,
  data: Uint8Array,
  fds: readonly number[],
  flags = 0,
): number | null {
  const buf = new Uint8Array(data);
  const iov = new BigUint64Array([addressOf(buf), BigInt(buf.length)]);
  const iovBytes = new Uint8Array(iov.buffer);
  const cmsgLen = 16 + 4 * fds.length;
  const control = new Uint8Array((cmsgLen + 7) & ~7);
  const cv = new DataView(control.buffer);
  cv.setBigUint64(0, BigInt(cmsgLen), true);
  cv.setInt32(8, SOL_SOCKET, true);
  cv.setInt32(12, SCM_RIGHTS, true);
  fds.forEach((f, i) => cv.setInt32(16 + 4 * i, f, true));
  const hdr = new Uint8Array(56);
  const v = new DataView(hdr.buffer);
  v.setBigUint64(16, addressOf(iovBytes), true);
  v.setBigUint64(24, 1n, true);
  if (fds.length) {
    v.setBigUint64(32, addressOf(control), true);
    v.setBigUint64(40, BigInt(control.length), true);
  }
  const n = c().sendmsg(fd, hdr, flags);
  if (n < 0n) {
    const e = errno();
    if (e === 11) return null;
    throw new ErrnoError("sendmsg", e, String(fd));
  }
  return Number(n);
}

/** send(2) once with `flags`: the bytes sent, or null for EAGAIN. */
export function sendSome(fd: number, data: Uint8Array, flags = 0): number | null {
  const buf = new Uint8Array(data);
  const n = c().send(fd, buf, BigInt(buf.length), flags);
  if (n < 0n) {
    const e = errno();
    if (e === 11) return null;
    throw new ErrnoError("send", e, String(fd));
  }
  return Number(n);
}
