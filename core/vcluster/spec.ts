/**
 * What a virtual cluster is made of, and validation of the user's choices.
 * Pure: tested on the host without QEMU.
 *
 * @module
 */
import { EXIT, PpmError } from "../errors.ts";

/** Kernel lines a cluster can boot. */
export const KERNEL_LINES = ["6.1", "6.12"] as const;
/** One of {@link KERNEL_LINES}. */
export type KernelLine = typeof KERNEL_LINES[number];

/**
 * What runs as PID 1 of a guest: "busybox" (the default) hands over from the
 * initramfs straight to the guest agent; "systemd" boots the host's systemd,
 * which starts the agent as a service and can manage services, scopes and
 * cgroups (see docs/vcluster.md).
 */
export const GUEST_INITS = ["busybox", "systemd"] as const;
/** One of {@link GUEST_INITS}. */
export type GuestInit = typeof GUEST_INITS[number];

/** Limits of `vcluster up`. */
export const LIMITS = {
  nodes: { min: 1, max: 8, default: 2 },
  memory: { min: 256, max: 16384, default: 1024 },
  ports: 8,
} as const;

/** The default cluster name. */
export const DEFAULT_NAME = "default";

/** A validated request for a cluster. */
export interface ClusterSpec {
  /** Cluster name: [a-z][a-z0-9-]{0,11}. */
  name: string;
  /** Number of nodes. */
  nodes: number;
  /** Kernel line. */
  kernel: KernelLine;
  /** Guest memory in MiB. */
  memory: number;
  /** PID 1 of the guests (default "busybox"). */
  init?: GuestInit;
}

function usage(why: string, fix: string): PpmError {
  return new PpmError("invalid vcluster arguments", why, fix, EXIT.USAGE);
}

/** Validates a cluster name. */
export function validateName(name: string): string {
  if (!/^[a-z][a-z0-9-]{0,11}$/.test(name)) {
    throw usage(
      `bad cluster name ${JSON.stringify(name)}`,
      "use 1-12 characters: a lowercase letter, then lowercase letters, digits or '-'",
    );
  }
  return name;
}

function intIn(label: string, raw: string | number, min: number, max: number): number {
  const n = typeof raw === "number" ? raw : Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw usage(
      `${label} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`,
      `pass --${label} N`,
    );
  }
  return n;
}

/** Validates `vcluster up` options into a {@link ClusterSpec}. */
export function parseSpec(o: {
  name?: string;
  nodes?: string | number;
  kernel?: string;
  memory?: string | number;
  init?: string;
}): ClusterSpec {
  const kernel = o.kernel ?? "6.1";
  if (!(KERNEL_LINES as readonly string[]).includes(kernel)) {
    throw usage(
      `unknown kernel line ${JSON.stringify(kernel)}`,
      `use one of ${KERNEL_LINES.join(", ")}`,
    );
  }
  const init = o.init ?? "busybox";
  if (!(GUEST_INITS as readonly string[]).includes(init)) {
    throw usage(
      `unknown guest init ${JSON.stringify(init)}`,
      `use one of ${GUEST_INITS.join(", ")}`,
    );
  }
  return {
    name: validateName(o.name ?? DEFAULT_NAME),
    nodes: intIn("nodes", o.nodes ?? LIMITS.nodes.default, LIMITS.nodes.min, LIMITS.nodes.max),
    kernel: kernel as KernelLine,
    memory: intIn(
      "memory",
      o.memory ?? LIMITS.memory.default,
      LIMITS.memory.min,
      LIMITS.memory.max,
    ),
    init: init as GuestInit,
  };
}

/** Node names are node1 ... nodeN. */
export function nodeName(i: number): string {
  return `node${i}`;
}

/** Parses a node argument ("node2" or "2") against a cluster of `n` nodes. */
export function parseNode(raw: string, n: number): number {
  const m = raw.match(/^(?:node)?(\d+)$/);
  const i = m ? Number(m[1]) : NaN;
  if (!(i >= 1 && i <= n)) {
    throw usage(`no node ${JSON.stringify(raw)} in this cluster`, `use node1 ... node${n}`);
  }
  return i;
}

/** The private subnet's address of node `i` (10.77.0.i). */
export function nodeAddress(i: number): string {
  return `10.77.0.${i}`;
}

/** The prefix length of the private subnet. */
export const SUBNET_PREFIX = 24;

/** The network namespace that holds a cluster's bridge and taps. */
export function netnsName(cluster: string): string {
  return `ppm-${cluster}`;
}

/** A guest MAC address, unique per node within a cluster. */
export function macAddress(i: number): string {
  return `52:54:00:77:00:${i.toString(16).padStart(2, "0")}`;
}

/** Where the guests see the host's /tmp (their own /tmp is a tmpfs). */
export const GUEST_HOST_TMP = "/run/host/tmp";

/**
 * The path under which a guest sees host path `p`: the same path, except
 * for the host's /tmp, which guests see under {@link GUEST_HOST_TMP}.
 */
export function guestPath(p: string): string {
  return p === "/tmp" || p.startsWith("/tmp/") ? GUEST_HOST_TMP + p.slice(4) : p;
}
