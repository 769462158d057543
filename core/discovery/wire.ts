/**
 * The announcement packet:
 *
 *     "PPMA" | version (1 byte) | msgpack body | HMAC-SHA256 (32 bytes)
 *
 * The MAC is taken under `deriveKey(secret, "announce")` over everything
 * before it (magic, version and body), so neither the body nor the version
 * can be changed without the secret. A packet is at most
 * {@link MAX_PACKET_BYTES}, well under a 1500-byte Ethernet MTU with IP and
 * UDP headers: announcements are never fragmented.
 *
 * @module
 */
import { deriveKey, hmac, macEqual } from "../security/secret.ts";
import { EXIT, PpmError } from "../errors.ts";
import {
  decodeAnnouncement,
  encodeAnnouncement,
  MalformedAnnouncement,
  type PeerAnnouncement,
} from "./announcement.ts";

/** The first four bytes of every packet. */
export const MAGIC: Uint8Array = new TextEncoder().encode("PPMA");
/** The packet format version this ppm writes and reads. */
export const WIRE_VERSION = 1;
/** Bytes before the body: magic and version. */
export const HEADER_BYTES = MAGIC.length + 1;
/** Bytes of the MAC at the end. */
export const MAC_BYTES = 32;
/** The largest packet sent or accepted. */
export const MAX_PACKET_BYTES = 1200;

/** Why a packet was not accepted by {@link openPacket}. */
export type PacketFault = "oversized" | "malformed" | "version" | "forged";

/** The outcome of {@link openPacket}. */
export type OpenedPacket =
  | { ok: true; announcement: PeerAnnouncement }
  | { ok: false; reason: PacketFault; detail: string };

/** The key announcements are authenticated with, derived from the cluster secret. */
export function announceKey(secret: Uint8Array): Uint8Array {
  return deriveKey(secret, "announce");
}

/**
 * The packet for `a` under `key` (from {@link announceKey}). Throws a
 * PpmError when it would exceed {@link MAX_PACKET_BYTES} (names or CPU flags
 * too long) and {@link MalformedAnnouncement} for a field peers would refuse.
 */
export function sealPacket(a: PeerAnnouncement, key: Uint8Array): Uint8Array {
  const body = encodeAnnouncement(a);
  const size = HEADER_BYTES + body.length + MAC_BYTES;
  if (size > MAX_PACKET_BYTES) {
    throw new PpmError(
      "cannot announce this node",
      `the announcement is ${size} bytes, more than the ${MAX_PACKET_BYTES} allowed`,
      "use a shorter node name or hostname",
      EXIT.FAILURE,
    );
  }
  const packet = new Uint8Array(size);
  packet.set(MAGIC, 0);
  packet[MAGIC.length] = WIRE_VERSION;
  packet.set(body, HEADER_BYTES);
  packet.set(hmac(key, packet.subarray(0, HEADER_BYTES + body.length)), size - MAC_BYTES);
  return packet;
}

/** True when `packet` starts with {@link MAGIC}. */
function hasMagic(packet: Uint8Array): boolean {
  return packet.length >= MAGIC.length && MAGIC.every((b, i) => packet[i] === b);
}

/**
 * Checks and decodes a received packet: size, magic, version, MAC, then the
 * body. Never throws; a refused packet gives the reason to count.
 */
export function openPacket(packet: Uint8Array, key: Uint8Array): OpenedPacket {
  if (packet.length > MAX_PACKET_BYTES) {
    return { ok: false, reason: "oversized", detail: `${packet.length} bytes` };
  }
  if (packet.length < HEADER_BYTES + 1 + MAC_BYTES || !hasMagic(packet)) {
    return { ok: false, reason: "malformed", detail: "not a ppm announcement" };
  }
  if (packet[MAGIC.length] !== WIRE_VERSION) {
    return { ok: false, reason: "version", detail: `format version ${packet[MAGIC.length]}` };
  }
  const end = packet.length - MAC_BYTES;
  if (!macEqual(hmac(key, packet.subarray(0, end)), packet.subarray(end))) {
    return { ok: false, reason: "forged", detail: "the MAC does not match" };
  }
  try {
    return { ok: true, announcement: decodeAnnouncement(packet.subarray(HEADER_BYTES, end)) };
  } catch (e) {
    if (e instanceof MalformedAnnouncement) {
      return { ok: false, reason: "malformed", detail: e.message };
    }
    throw e;
  }
}

/**
 * The sender id and sequence number of a packet, read WITHOUT checking the
 * MAC: for diagnostics (and the replay test) only, never to trust a packet.
 */
export function peekPacket(packet: Uint8Array): { id: string; seq: number } | null {
  if (packet.length > MAX_PACKET_BYTES || !hasMagic(packet)) return null;
  if (packet.length < HEADER_BYTES + 1 + MAC_BYTES) return null;
  try {
    const a = decodeAnnouncement(packet.subarray(HEADER_BYTES, packet.length - MAC_BYTES));
    return { id: a.id, seq: a.seq };
  } catch {
    return null;
  }
}
