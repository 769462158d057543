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
import { EXIT, PpmError } from "../errors.ts";
import { missingCpuFeatures, parseCpuFlags } from "../host/cpu.ts";
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
 * be this node's), for joining the group and sending on it. For null, the
 * choice of {@link chooseInterface} (null: the kernel's route chooses).
 * Throws a PpmError when there is no such interface, it has no IPv4
 * address, or none is given and the choice is ambiguous.
 */
export function interfaceAddress(
  iface: string | null,
  interfaces: Interfaces,
  routes: RouteEntry[] | (() => RouteEntry[]) = readRoutes,
): string | null {
  if (iface === null) {
    return chooseInterface(interfaces, typeof routes === "function" ? routes() : routes);
  }
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

/** One IPv4 route of /proc/net/route: its interface and destination/mask (host order). */
export interface RouteEntry {
  iface: string;
  destination: number;
  mask: number;
}

/** Parses /proc/net/route (addresses there are little-endian hex). Bad lines are skipped. */
export function parseRoutes(text: string): RouteEntry[] {
  const le = (h: string) => {
    const v = parseInt(h, 16) >>> 0;
    return (((v & 0xff) << 24) | ((v >>> 8 & 0xff) << 16) | ((v >>> 16 & 0xff) << 8) |
      (v >>> 24)) >>> 0;
  };
  const out: RouteEntry[] = [];
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || !/^[0-9A-Fa-f]{8}$/.test(f[1]) || !/^[0-9A-Fa-f]{8}$/.test(f[7])) continue;
    out.push({ iface: f[0], destination: le(f[1]), mask: le(f[7]) });
  }
  return out;
}

/** The IPv4 routes of this node's network namespace (none when /proc/net/route is unreadable). */
export function readRoutes(): RouteEntry[] {
  try {
    return parseRoutes(Deno.readTextFileSync("/proc/net/route"));
  } catch {
    return [];
  }
}

const GROUP_BASE = 0xe0000000; // 224.0.0.0: every multicast group is in 224.0.0.0/4

/**
 * The interface for discovery when none is configured: the kernel's choice
 * (null) when a route (a default route, or one for 224.0.0.0/4) covers the
 * multicast groups; else the one interface with a usable IPv4 address (a
 * vcluster guest, a node on one private network). Throws a PpmError naming
 * the flag when there are several, or none.
 */
export function chooseInterface(interfaces: Interfaces, routes: RouteEntry[]): string | null {
  const covers = routes.some((r) =>
    r.iface !== "lo" && ((GROUP_BASE & r.mask) >>> 0) === ((r.destination & r.mask) >>> 0)
  );
  if (covers) return null;
  const usable = interfaces.filter(isUsable);
  const names = [...new Set(usable.map((i) => i.name))];
  if (names.length === 1) return usable[0].address;
  const listed = usable.map((i) => `${i.name} (${i.address})`).join(", ");
  throw new PpmError(
    "cannot choose an interface for discovery",
    names.length === 0
      ? "this node has no IPv4 address besides loopback and link-local ones"
      : `no route covers the multicast groups and several interfaces could carry them: ${listed}`,
    names.length === 0
      ? "give the node an address on the cluster network, or --interface lo for a single-node test"
      : `give --interface NAME (or "interface" in the config file, or PPM_INTERFACE), e.g. --interface ${
        names[0]
      }`,
    EXIT.MISSING,
  );
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
