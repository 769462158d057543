/**
 * Unix sockets as the kernel's sock_diag netlink interface shows them
 * (linux/unix_diag.h): type, state, the peer's inode, the bound name, the
 * shutdown state. Only sock_diag tells which socket is another's peer.
 * It answers for sockets of ppm's own network namespace.
 *
 * @module
 */
import { ErrnoError } from "./libc.ts";
import { AF, closeSocket, MSG, recvBytes, sendAll, SOCK, socket } from "./socket.ts";

const NETLINK_SOCK_DIAG = 4;
const SOCK_DIAG_BY_FAMILY = 20;
const NLMSG_ERROR = 2;
const NLM_F_REQUEST = 1;
/** UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN. */
const SHOW = 0x1 | 0x4 | 0x10;
const ATTR = { NAME: 0, PEER: 2, RQLEN: 4, SHUTDOWN: 6 } as const;

/** A unix socket, as sock_diag reports it. */
export interface UnixDiag {
  /** Its inode. */
  ino: number;
  /** SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET. */
  type: number;
  /** TCP-style state (1: established, 10: listening, 7: unconnected). */
  state: number;
  /** The peer's inode, 0 for none. */
  peer: number;
  /** The bound name: a path, "@..." for an abstract one, undefined when unnamed. */
  name?: string;
  /** sk_shutdown: 1 receive side shut, 2 send side shut. */
  shutdown: number;
  /** Bytes queued to be read (stream, seqpacket) or the first datagram's length. */
  rqueue: number;
}

/** The request for the unix socket with inode `ino`. */
export function unixDiagRequest(ino: number, seq = 1): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(16 + 24);
  const v = new DataView(b.buffer);
  v.setUint32(0, b.length, true);
  v.setUint16(4, SOCK_DIAG_BY_FAMILY, true);
  v.setUint16(6, NLM_F_REQUEST, true);
  v.setUint32(8, seq, true);
  b[16] = AF.UNIX;
  v.setUint32(20, 0xffffffff, true); // every state
  v.setUint32(24, ino >>> 0, true);
  v.setUint32(28, SHOW, true);
  v.setUint32(32, 0xffffffff, true); // no cookie: look up by inode
  v.setUint32(36, 0xffffffff, true);
  return b;
}

/**
 * Parses the kernel's answer to {@link unixDiagRequest}: the socket, null
 * when there is no such unix socket (here), or throws on a reply out of
 * shape (every length is checked against the bytes received).
 */
export function parseUnixDiag(reply: Uint8Array): UnixDiag | null {
  const v = new DataView(reply.buffer, reply.byteOffset, reply.length);
  if (reply.length < 16) throw new Error("sock_diag: a short reply");
  const len = v.getUint32(0, true);
  const type = v.getUint16(4, true);
  if (len < 16 || len > reply.length) throw new Error("sock_diag: a reply of a wrong length");
  if (type === NLMSG_ERROR) {
    const err = len >= 20 ? -v.getInt32(16, true) : 0;
    if (err === 2) return null; // ENOENT: not a unix socket of this namespace
    throw new ErrnoError("sock_diag", err);
  }
  if (type !== SOCK_DIAG_BY_FAMILY || len < 32) throw new Error("sock_diag: an unexpected reply");
  const d: UnixDiag = {
    ino: v.getUint32(20, true),
    type: reply[17],
    state: reply[18],
    peer: 0,
    shutdown: 0,
    rqueue: 0,
  };
  for (let off = 32; off + 4 <= len;) {
    const alen = v.getUint16(off, true);
    const atype = v.getUint16(off + 2, true);
    if (alen < 4 || off + alen > len) throw new Error("sock_diag: an attribute out of bounds");
    const body = reply.subarray(off + 4, off + alen);
    if (atype === ATTR.PEER && body.length >= 4) d.peer = v.getUint32(off + 4, true);
    else if (atype === ATTR.SHUTDOWN && body.length >= 1) d.shutdown = body[0];
    else if (atype === ATTR.RQLEN && body.length >= 8) d.rqueue = v.getUint32(off + 4, true);
    else if (atype === ATTR.NAME) {
      d.name = body[0] === 0
        ? "@" + new TextDecoder().decode(body.subarray(1))
        : new TextDecoder().decode(
          body.subarray(0, body.indexOf(0) < 0 ? body.length : body.indexOf(0)),
        );
    }
    off += (alen + 3) & ~3;
  }
  return d;
}

/**
 * Looks up the unix sockets with inodes `inos` through sock_diag; a socket
 * that is not a unix socket of this network namespace is left out.
 */
export function unixDiag(inos: number[]): Map<number, UnixDiag> {
  const out = new Map<number, UnixDiag>();
  if (!inos.length) return out;
  const nl = socket(AF.NETLINK, SOCK.DGRAM, NETLINK_SOCK_DIAG);
  try {
    for (const [i, ino] of inos.entries()) {
      sendAll(nl, unixDiagRequest(ino, i + 1));
      // The kernel answers within the send: the reply is queued already.
      const d = parseUnixDiag(recvBytes(nl, 8192, MSG.DONTWAIT));
      if (d && d.ino === ino) out.set(ino, d);
    }
  } finally {
    closeSocket(nl);
  }
  return out;
}
