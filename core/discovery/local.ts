/**
 * Facts about this node that go into its announcements: a fresh id, the
 * addresses and interface to use, CPU features and the load. Parsing is
 * pure; the functions that read /proc or the interface list say so.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { instantLoad } from "../balance/load.ts";
import { readLoadSample } from "../balance/read.ts";
import type { Announcement, LoadSample } from "../balance/types.ts";
import { ipv4Bytes } from "../config/values.ts";
import { parseCpuFlags } from "../dump/proc.ts";
import { EXIT, PpmError } from "../errors.ts";
import { missingCpuFeatures } from "../restore/compat.ts";
import {
  type CpuFeatures,
  type LoadVector,
  MAX_ADDRESSES,
  MAX_CPU_FLAG_BYTES,
  MAX_CPU_FLAGS,
} from "./announcement.ts";

/** A new random agent id: 16 hex digits. */
export function newNodeId(): string {
  const b = crypto.getRandomValues(new Uint8Array(8));
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * The CPU features of a /proc/cpuinfo text: the hash of every flag and the
 * user-visible ones, as many as fit {@link MAX_CPU_FLAG_BYTES}.
 */
export function cpuFeatures(cpuinfo: string): CpuFeatures {
  const all = parseCpuFlags(cpuinfo);
  const hash = createHash("sha256").update(all.join(" ")).digest("hex").slice(0, 16);
  const flags: string[] = [];
  let bytes = 0;
  for (const f of missingCpuFeatures(all, [])) {
    if (!/^[a-z0-9_.]{1,24}$/.test(f) || flags.length >= MAX_CPU_FLAGS) continue;
    if (bytes + f.length + 1 > MAX_CPU_FLAG_BYTES) break;
    flags.push(f);
    bytes += f.length + 1;
  }
  return { hash, flags };
}

/** The interfaces as Deno.networkInterfaces() lists them. */
export type Interfaces = Deno.NetworkInterfaceInfo[];

function isUsable(i: Deno.NetworkInterfaceInfo): boolean {
  const b = ipv4Bytes(i.address);
  return i.family === "IPv4" && !!b && b[0] !== 127 && !(b[0] === 169 && b[1] === 254);
}

/**
 * The IPv4 address of `iface` (an interface name, or an address that must
 * be this node's), for joining the group and sending on it; null for null
 * (the kernel chooses). Throws a PpmError when there is no such interface or
 * it has no IPv4 address.
 */
export function interfaceAddress(iface: string | null, interfaces: Interfaces): string | null {
  if (iface === null) return null;
  const v4 = interfaces.filter((i) => i.family === "IPv4");
  if (ipv4Bytes(iface)) {
    if (v4.some((i) => i.address === iface)) return iface;
    throw new PpmError(
      `cannot use interface address ${iface} for discovery`,
      "no interface of this node has that address",
      `give one of: ${v4.map((i) => `${i.address} (${i.name})`).join(", ") || "none"}`,
      EXIT.MISSING,
    );
  }
  const mine = v4.filter((i) => i.name === iface);
  if (mine.length === 0) {
    const names = [...new Set(interfaces.map((i) => i.name))];
    throw new PpmError(
      `cannot use interface ${iface} for discovery`,
      names.includes(iface) ? "it has no IPv4 address" : "there is no such interface",
      `check \`ip -4 addr\`; interfaces with IPv4: ${
        [...new Set(v4.map((i) => i.name))].join(", ") || "none"
      }`,
      EXIT.MISSING,
    );
  }
  return mine[0].address;
}

/**
 * The addresses to announce: the advertised one if set, else the
 * interface's address, else every IPv4 address of the node except loopback
 * and link-local ones; at most {@link MAX_ADDRESSES}.
 */
export function announcedAddresses(
  advertise: string | null,
  ifaceAddress: string | null,
  interfaces: Interfaces,
): string[] {
  if (advertise) return [advertise];
  if (ifaceAddress) return [ifaceAddress];
  return [...new Set(interfaces.filter(isUsable).map((i) => i.address))].slice(0, MAX_ADDRESSES);
}

/** The load vector of the balancing announcement of `sample` (from LoadTracker). */
export function loadVector(announcement: Announcement, sample: LoadSample): LoadVector {
  const { id: _id, ...rest } = announcement;
  const out: LoadVector = { ...rest, runnable: sample.runnable, loadavg: sample.loadavg };
  if (sample.cpuPressure !== undefined) out.cpuPressure = sample.cpuPressure;
  return out;
}

/** The load vector of a sample without the balancing filters: the instant load. */
export function instantLoadVector(sample: LoadSample, drain = false): LoadVector {
  return loadVector({
    id: "",
    load: instantLoad(sample),
    cpus: sample.cpus,
    speed: sample.speed,
    memTotal: sample.memTotal,
    memAvailable: sample.memAvailable,
    drain,
    at: sample.at,
  }, sample);
}

/** Reads /proc and returns the instant load vector of this node (at: seconds since the epoch). */
export function readLoadVector(speed = 1): Promise<LoadVector> {
  return Promise.resolve(instantLoadVector(readLoadSample(speed)));
}
