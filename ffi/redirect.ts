/**
 * Redirect entries of the module's netfilter hooks (`PPM_IOC_REDIRECT_*`):
 * the TypeScript form of `struct ppm_redirect`, and its encoding.
 *
 * @module
 */
import { decode, encode } from "./struct.ts";
import {
  PPM_RDR,
  PPM_RDR_F_ALIVE,
  PPM_RDR_F_SYN,
  PPM_RDR_ST_CLOSING,
  ppmRedirect,
} from "./uapi.ts";

/** An IPv4 endpoint; address "0.0.0.0" or port 0 means any (peers only). */
export interface Endpoint {
  /** Dotted-quad IPv4 address. */
  addr: string;
  /** Port, host order. */
  port: number;
}

/**
 * What a node does with a flow's packets (see PPM_RDR in kmod/uapi/ppm.h);
 * "drop-syn" is a TCP drop of new connections only (PPM_RDR_F_SYN).
 */
export type RedirectAction = "drop" | "drop-syn" | "peer" | "forward" | "answer";

/** A redirect to add. */
export interface Redirect {
  /** "tcp" or "udp". */
  proto: "tcp" | "udp";
  /** What to do. */
  action: RedirectAction;
  /** The endpoint the peers know (the process's on its old node). */
  old: Endpoint;
  /** The endpoint the process has now (not for "drop"). */
  new?: Endpoint;
  /** The other end; any when 0.0.0.0:0. */
  peer: Endpoint;
  /**
   * Seconds without a packet before the entry expires; 0 (default): the
   * longest, PPM_RDR_MAX_IDLE (a day). A TCP connection's entry that saw a
   * FIN goes after 120 s without a packet at most.
   */
  idleTimeout?: number;
  /**
   * A TCP connection's "drop" only: answer the peer's keepalive probes for the frozen socket, as
   * its own stack would (PPM_RDR_F_ALIVE), so that a freeze longer than the peer's keepalive
   * does not end the connection.
   */
  keepAlive?: boolean;
}

/** An entry of the table, with its counters. */
export interface RedirectEntry extends Redirect {
  /** Its id on this node. */
  id: number;
  /**
   * "open", or "closing" once TCP FINs both ways or a RST went through (a RST
   * from the network counts only with the exact expected sequence number).
   */
  state: "open" | "closing";
  /** Packets matched. */
  packets: number;
  /** Bytes matched. */
  bytes: number;
  /** Milliseconds since it was added. */
  ageMs: number;
  /** Milliseconds since its last packet. */
  idleMs: number;
}

const PROTO = { tcp: 6, udp: 17 } as const;
const ACTIONS: Record<Exclude<RedirectAction, "drop-syn">, number> = {
  drop: PPM_RDR.DROP,
  peer: PPM_RDR.PEER,
  forward: PPM_RDR.FORWARD,
  answer: PPM_RDR.ANSWER,
};

/** "10.0.0.1" as 4 bytes in network order; throws RangeError when it is not IPv4. */
export function addrBytes(addr: string): Uint8Array {
  const parts = addr.split(".");
  const nums = parts.map((p) => /^\d{1,3}$/.test(p) ? Number(p) : NaN);
  if (nums.length !== 4 || nums.some((n) => !(n >= 0 && n <= 255))) {
    throw new RangeError(`not an IPv4 address: ${addr}`);
  }
  return new Uint8Array(nums);
}

/** A port as 2 bytes in network order. */
export function portBytes(port: number): Uint8Array {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`not a port: ${port}`);
  }
  return new Uint8Array([port >> 8, port & 0xff]);
}

const addrOf = (b: Uint8Array) => [...b].join(".");
const portOf = (b: Uint8Array) => (b[0] << 8) | b[1];

/** `struct ppm_redirect` bytes for `r`. */
export function encodeRedirect(r: Redirect): Uint8Array<ArrayBuffer> {
  const syn = r.action === "drop-syn";
  return encode(ppmRedirect, {
    proto: PROTO[r.proto],
    action: syn ? PPM_RDR.DROP : ACTIONS[r.action as Exclude<RedirectAction, "drop-syn">],
    flags: (syn ? PPM_RDR_F_SYN : 0) | (r.keepAlive ? PPM_RDR_F_ALIVE : 0),
    old_addr: addrBytes(r.old.addr),
    old_port: portBytes(r.old.port),
    new_addr: addrBytes(r.new?.addr ?? "0.0.0.0"),
    new_port: portBytes(r.new?.port ?? 0),
    peer_addr: addrBytes(r.peer.addr),
    peer_port: portBytes(r.peer.port),
    idle_timeout: r.idleTimeout ?? 0,
  });
}

/** The entry in `struct ppm_redirect` bytes. */
export function decodeRedirect(buf: Uint8Array): RedirectEntry {
  const v = decode(ppmRedirect, buf);
  const known =
    (Object.keys(ACTIONS) as Exclude<RedirectAction, "drop-syn">[]).find((a) =>
      ACTIONS[a] === v.action
    ) ?? "drop";
  const action: RedirectAction = known === "drop" && (Number(v.flags) & PPM_RDR_F_SYN)
    ? "drop-syn"
    : known;
  const proto = v.proto === PROTO.udp ? "udp" : "tcp";
  const e: RedirectEntry = {
    id: Number(v.id),
    proto,
    action,
    old: { addr: addrOf(v.old_addr as Uint8Array), port: portOf(v.old_port as Uint8Array) },
    peer: { addr: addrOf(v.peer_addr as Uint8Array), port: portOf(v.peer_port as Uint8Array) },
    idleTimeout: v.idle_timeout as number,
    state: v.state === PPM_RDR_ST_CLOSING ? "closing" : "open",
    packets: Number(v.packets),
    bytes: Number(v.bytes),
    ageMs: Number(v.age_ms),
    idleMs: Number(v.idle_ms),
  };
  if (Number(v.flags) & PPM_RDR_F_ALIVE) e.keepAlive = true;
  if (action !== "drop" && action !== "drop-syn") {
    e.new = { addr: addrOf(v.new_addr as Uint8Array), port: portOf(v.new_port as Uint8Array) };
  }
  return e;
}
