/**
 * The QEMU command line of one guest, and starting it detached inside the
 * cluster's network namespace.
 *
 * @module
 */
import { join } from "node:path";
import { runOk } from "../host/run.ts";
import {
  type GuestInit,
  LIMITS,
  macAddress,
  nodeAddress,
  nodeName,
  SUBNET_PREFIX,
} from "./spec.ts";
import { tapName } from "./network.ts";

/** Everything needed to start one guest. */
export interface GuestConfig {
  /** Cluster name. */
  cluster: string;
  /** Node index, 1-based. */
  index: number;
  /** Number of nodes in the cluster (for /etc/hosts). */
  nodes: number;
  /** Memory in MiB. */
  memory: number;
  /** Kernel image. */
  vmlinuz: string;
  /** initramfs. */
  initramfs: string;
  /** Directory for the agent sockets and the pid file. */
  runDir: string;
  /** Console log file. */
  consoleLog: string;
  /** Directory prepended to PATH in the guest (ppm and deno). */
  guestPath: string;
  /** PID 1 of the guest (default "busybox"). */
  init?: GuestInit;
}

/** The unix socket of agent port `p` of node `i`. */
export function portSocket(runDir: string, i: number, p: number): string {
  return join(runDir, `${nodeName(i)}.p${p}.sock`);
}

/** The pid file of node `i`. */
export function pidFile(runDir: string, i: number): string {
  return join(runDir, `${nodeName(i)}.pid`);
}

/** The process name QEMU takes, which identifies our guests. */
export function processName(cluster: string, i: number): string {
  return `ppm-${cluster}-${nodeName(i)}`;
}

/** The QEMU arguments for one guest. */
export function qemuArgs(g: GuestConfig): string[] {
  const hosts = Array.from(
    { length: g.nodes },
    (_, k) => `${nodeName(k + 1)}=${nodeAddress(k + 1)}`,
  ).join(",");
  const append = [
    "console=ttyS0",
    "panic=-1",
    "loglevel=5",
    `ppm.node=${nodeName(g.index)}`,
    `ppm.ip=${nodeAddress(g.index)}/${SUBNET_PREFIX}`,
    `ppm.hosts=${hosts}`,
    `ppm.path=${g.guestPath}`,
    `ppm.upper=${Math.max(128, Math.floor(g.memory / 2))}m`,
    ...(g.init === "systemd" ? ["ppm.init=systemd"] : []),
  ].join(" ");
  const args = [
    "-name",
    `${processName(g.cluster, g.index)},process=${processName(g.cluster, g.index)}`,
    "-nodefaults",
    "-display",
    "none",
    "-no-reboot",
    "-cpu",
    "max",
    "-accel",
    "tcg,thread=multi,tb-size=512",
    "-smp",
    "2",
    "-m",
    String(g.memory),
    "-kernel",
    g.vmlinuz,
    "-initrd",
    g.initramfs,
    "-append",
    append,
    "-chardev",
    `file,id=con,path=${g.consoleLog}`,
    "-serial",
    "chardev:con",
    "-netdev",
    `tap,id=n0,ifname=${tapName(g.index)},script=no,downscript=no`,
    "-device",
    `virtio-net-pci,netdev=n0,mac=${macAddress(g.index)}`,
    "-virtfs",
    "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
    "-device",
    "virtio-serial-pci,id=vser0",
  ];
  for (let p = 0; p < LIMITS.ports; p++) {
    args.push(
      "-chardev",
      `socket,id=p${p},path=${portSocket(g.runDir, g.index, p)},server=on,wait=off`,
      "-device",
      `virtserialport,bus=vser0.0,chardev=p${p},name=ppm.${p}`,
    );
  }
  args.push("-daemonize", "-pidfile", pidFile(g.runDir, g.index));
  return args;
}

/** Starts the guest detached in namespace `ns`; returns QEMU's pid. */
export async function startGuest(ns: string, g: GuestConfig): Promise<number> {
  await runOk(
    "ip",
    ["netns", "exec", ns, "qemu-system-x86_64", ...qemuArgs(g)],
    `cannot start QEMU for ${nodeName(g.index)}`,
    { timeoutMs: 60_000 },
  );
  return Number((await Deno.readTextFile(pidFile(g.runDir, g.index))).trim());
}
