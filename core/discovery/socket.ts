/**
 * UDP sockets for discovery, through node:dgram (stable in Deno 2, with the
 * multicast socket options Deno.listenDatagram lacks without
 * --unstable-net: IP_MULTICAST_IF, IP_MULTICAST_TTL, IP_MULTICAST_LOOP,
 * IP_ADD_MEMBERSHIP).
 *
 * The receiving socket is bound to 0.0.0.0:port with SO_REUSEADDR and joins
 * the group on the chosen interface. The sending socket is bound to an
 * ephemeral port and sends on the chosen interface (IP_MULTICAST_IF), so
 * announcements go out on the cluster network only, whatever the routing
 * table says; without an interface the kernel's route to the group decides.
 *
 * @module
 */
import dgram from "node:dgram";
import { EXIT, PpmError } from "../errors.ts";

/** Options of {@link openReceiver}. */
export interface ReceiverOptions {
  /** UDP port. */
  port: number;
  /** Group to join, or null to receive unicast only (tests on loopback). */
  group: string | null;
  /** IPv4 address of the interface to join on; null lets the kernel choose. */
  interfaceAddress: string | null;
  /** Address to bind; default 0.0.0.0. */
  bind?: string;
}

/** Options of {@link openSender}. */
export interface SenderOptions {
  /** IPv4 address of the interface to send multicast on; null lets the kernel choose. */
  interfaceAddress: string | null;
  /** Multicast TTL (1 keeps packets on the local network). */
  ttl: number;
  /** Loop multicast back to sockets on this node (other agents here). */
  loopback: boolean;
}

/** A received datagram's handler: the bytes and "address:port". */
export type DatagramHandler = (packet: Uint8Array, from: string) => void;

function socketError(what: string, e: unknown): PpmError {
  const err = e as { code?: string; message?: string } | undefined;
  const code = err?.code ?? "";
  const fix = code === "EADDRINUSE"
    ? "another program holds the port; choose another port"
    : code === "EACCES" || code === "EPERM"
    ? "run the agent as root"
    : code === "ENODEV" || code === "EADDRNOTAVAIL" || code === "EINVAL"
    ? "check the interface setting: the address must be on an interface that is up"
    : "";
  return new PpmError(what, err?.message ?? String(e), fix, EXIT.FAILURE, { cause: e });
}

function bind(sock: dgram.Socket, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    sock.once("error", onError);
    sock.bind(port, address, () => {
      sock.off("error", onError);
      resolve();
    });
  });
}

/** Closes `sock`; harmless when it is closed already. */
export function closeSocket(sock: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      sock.close(() => resolve());
    } catch {
      resolve();
    }
  });
}

/**
 * Opens the receiving socket and calls `onPacket` for every datagram until
 * it is closed. Errors after opening go to `onError`.
 */
export async function openReceiver(
  options: ReceiverOptions,
  onPacket: DatagramHandler,
  onError: (e: Error) => void,
): Promise<dgram.Socket> {
  const sock = dgram.createSocket({ type: "udp4", reuseAddr: true });
  try {
    await bind(sock, options.port, options.bind ?? "0.0.0.0");
    if (options.group) {
      if (options.interfaceAddress) sock.addMembership(options.group, options.interfaceAddress);
      else sock.addMembership(options.group);
    }
  } catch (e) {
    await closeSocket(sock);
    const on = options.interfaceAddress ? ` on ${options.interfaceAddress}` : "";
    throw socketError(
      `cannot listen for announcements on port ${options.port}${
        options.group ? ` (group ${options.group}${on})` : ""
      }`,
      e,
    );
  }
  sock.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
    onPacket(
      new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength),
      `${rinfo.address}:${rinfo.port}`,
    );
  });
  sock.on("error", onError);
  return sock;
}

/** Opens the sending socket. */
export async function openSender(options: SenderOptions): Promise<dgram.Socket> {
  const sock = dgram.createSocket({ type: "udp4" });
  try {
    await bind(sock, 0, "0.0.0.0");
    if (options.interfaceAddress) sock.setMulticastInterface(options.interfaceAddress);
    sock.setMulticastTTL(options.ttl);
    sock.setMulticastLoopback(options.loopback);
  } catch (e) {
    await closeSocket(sock);
    throw socketError("cannot open the socket for announcements", e);
  }
  return sock;
}

/** Sends `packet` to `address:port`; rejects on a send error. */
export function sendPacket(
  sock: dgram.Socket,
  packet: Uint8Array,
  port: number,
  address: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    sock.send(packet, port, address, (e: Error | null) => (e ? reject(e) : resolve()));
  });
}
