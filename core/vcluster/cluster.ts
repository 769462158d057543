/**
 * A virtual cluster's life: `up` boots N QEMU guests on a private bridge and
 * waits until each agent answers; `down` stops exactly those guests and
 * removes the network; `status` reports them. State lives in
 * /run/ppm/vcluster/NAME (sockets, pids, state.json); console logs in the
 * state directory, where they stay after `down`.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { EXIT, PpmError } from "../errors.ts";
import { bundleCli } from "../host/bundle.ts";
import { ensurePackages } from "../host/packages.ts";
import { isRoot } from "../host/run.ts";
import { buildModule } from "../module/build.ts";
import { ensureStub } from "../restore/stub.ts";
import { ensureDeputyBuilt } from "../deputy/binary.ts";
import { ensureDir, exists, PROJECT_ROOT, runRoot, stateDir } from "../paths.ts";
import { guestExec } from "./client.ts";
import { consoleTrouble, tail } from "./console.ts";
import { ensureInitramfs } from "./image.ts";
import { ensureKernel, HOST_PACKAGES } from "./kernels.ts";
import { createNetwork, deleteNetwork } from "./network.ts";
import { type GuestConfig, processName, startGuest } from "./qemu.ts";
import {
  type ClusterSpec,
  type GuestInit,
  guestPath,
  type KernelLine,
  netnsName,
  nodeAddress,
  nodeName,
} from "./spec.ts";

/** What is recorded about a running cluster. */
export interface ClusterState {
  /** Cluster name. */
  name: string;
  /** Kernel line and release. */
  kernel: { line: KernelLine; release: string };
  /** Guest memory, MiB. */
  memory: number;
  /** PID 1 of the guests (absent in states written before it existed: busybox). */
  init?: GuestInit;
  /** Network namespace holding the bridge. */
  netns: string;
  /** Runtime directory (sockets, pids). */
  runDir: string;
  /** Directory of the console logs. */
  logDir: string;
  /** The module built for the guests' kernel. */
  module: string;
  /** ISO time of `up`. */
  createdAt: string;
  /** Nodes. */
  nodes: { name: string; index: number; address: string; pid: number; console: string }[];
}

/** Where the runtime directories of clusters are. */
function clustersRoot(): string {
  return join(runRoot(), "vcluster");
}

/** Runtime directory of cluster `name`. */
export function runDir(name: string): string {
  return join(clustersRoot(), name);
}

function logDir(name: string): string {
  return join(stateDir(), "vcluster", name);
}

function requireRoot(): void {
  if (!isRoot()) {
    throw new PpmError(
      "the virtual cluster needs root",
      "it creates a network namespace, tap devices and installs packages",
      "run it as root (sudo)",
      EXIT.PERMISSION,
    );
  }
}

/** True when `pid` is a live QEMU process of node `i` of cluster `name`. */
export async function isOurGuest(pid: number, name: string, i: number): Promise<boolean> {
  try {
    const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`);
    return cmdline.includes(`process=${processName(name, i)}\0`) ||
      cmdline.includes(`${processName(name, i)},`);
  } catch {
    return false;
  }
}

/** Reads the state of cluster `name`, or undefined when there is none. */
export async function readState(name: string): Promise<ClusterState | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(join(runDir(name), "state.json")));
  } catch {
    return undefined;
  }
}

/** Reads the state of a running cluster, or throws an error that says how to start one. */
export async function requireState(name: string): Promise<ClusterState> {
  const s = await readState(name);
  if (!s) {
    throw new PpmError(
      `no virtual cluster named ${name}`,
      "it is not up",
      `start it with \`ppm vcluster up${name === "default" ? "" : ` --name ${name}`}\``,
      EXIT.MISSING,
    );
  }
  return s;
}

/** Names of clusters with a state file. */
export async function listClusters(): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(clustersRoot())) if (e.isDirectory) names.push(e.name);
  } catch { /* none */ }
  return names.sort();
}

/**
 * Writes the guests' `ppm` into `dir`: the compiled ppm when this is one, else
 * the CLI bundled into `dir`/js (under TCG, Deno resolving ~150 modules over
 * 9p takes seconds per command, a bundle a fraction of that; code-split, each
 * command loads only the chunks it uses), else the sources when bundling is
 * not possible here.
 */
async function writeGuestBin(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const exe = Deno.execPath();
  const compiled = !/^deno(\.exe)?$/.test(exe.split("/").pop() ?? "");
  const root = guestPath(PROJECT_ROOT);
  // An older ppm's single-file bundle.
  await Deno.remove(join(dir, "ppm.js")).catch(() => {});
  const bundle = compiled ? undefined : await bundleCli(join(dir, "js")).catch(() => undefined);
  const ppm = compiled
    ? `exec '${guestPath(exe)}' "$@"`
    : bundle
    ? await bundleRunner(guestPath(exe), root, bundle)
    : `exec '${guestPath(exe)}' run -A --config '${join(root, "deno.json")}' '${
      join(root, "cli", "main.ts")
    }' "$@"`;
  const script = `#!/bin/sh\n# ppm in a virtual-cluster guest (written by ppm vcluster up)\n` +
    `export PPM_STATE_DIR="\${PPM_STATE_DIR:-${guestPath(stateDir())}}"\n` +
    // The host's state directory is read-only there: what a guest keeps, it keeps itself.
    `export PPM_CACHE_DIR="\${PPM_CACHE_DIR:-/var/cache/ppm}"\n${ppm}\n`;
  await Deno.writeTextFile(join(dir, "ppm"), script, { mode: 0o755 });
  await Deno.remove(join(dir, "deno")).catch(() => {});
  if (!compiled) await Deno.symlink(guestPath(exe), join(dir, "deno"));
}

/**
 * The wrapper's lines that run the bundle whose entry is `entry` with the
 * Deno `exe` (guest paths). For root, the bundle is first copied into the
 * guest's memory (/run/ppm-cli/HASH, once per boot and bundle) and Deno
 * keeps its code cache there: under TCG, reading the chunks and the host's
 * code cache over 9p cost about 0.5 s of each command's 1.9 s. The line
 * `js='…'` names the bundle's folder on the host (the checkpoint test
 * copies it for another user).
 */
async function bundleRunner(exe: string, root: string, entry: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(entry));
  const hash = Array.from(
    new Uint8Array(digest).slice(0, 8),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
  const js = guestPath(dirname(entry));
  const main = entry.split("/").pop();
  return [
    `export PPM_ROOT='${root}'`,
    `js='${js}'`,
    `if [ "$(id -u)" = 0 ]; then`,
    `  c=/run/ppm-cli/${hash}`,
    `  if [ ! -f "$c/${main}" ]; then`,
    `    mkdir -p /run/ppm-cli && t=$(mktemp -d /run/ppm-cli/.new.XXXXXX) &&`,
    `      cp "$js"/* "$t"/ && chmod 755 "$t" && { [ -e "$c" ] || mv "$t" "$c"; }`,
    `    rm -rf "$t"`,
    `  fi`,
    `  [ -f "$c/${main}" ] && js=$c && export DENO_DIR="\${DENO_DIR:-/run/ppm-cli/deno}"`,
    `fi`,
    `exec '${exe}' run -A --no-config --no-lock "$js/${main}" "$@"`,
  ].join("\n");
}

async function readLog(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return "";
  }
}

/**
 * On a systemd guest whose agent answers: waits until systemd has finished
 * booting (`systemctl is-system-running --wait`) and returns "" when it runs
 * (degraded included: the failed units go to `progress`), or why not.
 */
async function waitSystemd(
  st: ClusterState,
  i: number,
  end: number,
  progress: (s: string) => void,
): Promise<string> {
  const sh = (script: string, timeoutMs: number) =>
    guestExec(st.runDir, i, ["sh", "-c", script], {
      cwd: "/",
      timeoutMs,
      connectTimeoutMs: Math.max(1000, Math.min(10_000, end - Date.now())),
    });
  const left = Math.max(1000, end - Date.now());
  const r = await sh("systemctl is-system-running --wait", left).catch((e) => ({
    code: -1,
    stdout: "",
    stderr: (e as Error).message,
  }));
  const state = r.stdout.trim();
  if (state === "running") return "";
  const failed = await sh("systemctl --no-pager --plain --no-legend --failed", 20_000)
    .then((f) => f.stdout.trim()).catch(() => "");
  if (state === "degraded") {
    progress(`${nodeName(i)}: systemd is degraded; failed units: ${failed.replace(/\n/g, "; ")}`);
    return "";
  }
  const jobs = await sh("systemctl --no-pager list-jobs", 20_000).then((j) => j.stdout.trim())
    .catch(() => "");
  return `systemd did not finish booting (${state || r.stderr.trim() || `exit ${r.code}`})` +
    (failed ? `; failed units: ${failed}` : "") + (jobs ? `; jobs: ${jobs}` : "");
}

/** Waits until node `i` runs a command; throws with the console log when it does not. */
async function waitReady(
  st: ClusterState,
  i: number,
  deadlineMs: number,
  progress: (s: string) => void = () => {},
): Promise<void> {
  const end = Date.now() + deadlineMs;
  let last = "";
  for (let attempt = 0; attempt < 100 && Date.now() < end; attempt++) {
    if (!(await isOurGuest(st.nodes[i - 1].pid, st.name, i))) {
      last = QEMU_EXITED;
      break;
    }
    const log = await readLog(st.nodes[i - 1].console);
    if (
      consoleTrouble(log).some((l) =>
        l.includes("ppm-guest-init: FAILED") || l.includes("Kernel panic")
      )
    ) {
      last = "the guest failed to boot";
      break;
    }
    try {
      const r = await guestExec(st.runDir, i, ["true"], {
        cwd: "/",
        timeoutMs: 20_000,
        connectTimeoutMs: Math.max(1000, Math.min(10_000, end - Date.now())),
      });
      if (r.code === 0 && st.init !== "systemd") return;
      if (r.code === 0) {
        last = await waitSystemd(st, i, end, progress);
        if (!last) return;
        break;
      }
      last = `true exited ${r.code}`;
    } catch (e) {
      last = (e as Error).message;
    }
  }
  const log = await readLog(st.nodes[i - 1].console);
  throw new PpmError(
    `${nodeName(i)} of cluster ${st.name} did not come up`,
    last,
    `read the whole console log: ${st.nodes[i - 1].console}`,
    EXIT.TIMEOUT,
    `--- console (last lines) ---\n${tail(log)}`,
  );
}

/** What waitReady says when a guest's QEMU is gone. */
const QEMU_EXITED = "QEMU exited";

/**
 * Waits for a guest (`wait`); when its QEMU died while it booted (Debian's
 * QEMU 7.2 under TCG has been seen to crash a second into a kernel's boot),
 * starts it once more (`restart`, after `say`) and waits again. A guest
 * that fails to boot otherwise is not tried again: that is a real failure.
 */
export async function bootAgain(
  wait: () => Promise<void>,
  restart: () => Promise<void>,
  say: (why: string) => void,
): Promise<void> {
  try {
    await wait();
  } catch (e) {
    if (!(e instanceof PpmError && e.why === QEMU_EXITED)) throw e;
    say(`its QEMU exited while it booted`);
    await restart();
    await wait();
  }
}

/** Options of {@link up}. */
export interface UpOptions {
  /** Progress lines. */
  progress?: (s: string) => void;
  /** Deadline for all nodes to answer (default 180 s). */
  readyTimeoutMs?: number;
}

/** Boots a cluster; returns its state once every node answers. */
export async function up(spec: ClusterSpec, opts: UpOptions = {}): Promise<ClusterState> {
  const progress = opts.progress ?? ((s: string) => console.error(`ppm: ${s}`));
  requireRoot();
  const existing = await readState(spec.name);
  if (existing) {
    const alive = await Promise.all(
      existing.nodes.map((n) => isOurGuest(n.pid, spec.name, n.index)),
    );
    if (alive.some(Boolean)) {
      throw new PpmError(
        `virtual cluster ${spec.name} is already up`,
        `${alive.filter(Boolean).length} of its guests are running`,
        `use it, or stop it first: ppm vcluster down${
          spec.name === "default" ? "" : ` --name ${spec.name}`
        }`,
        EXIT.BUSY,
      );
    }
    await down(spec.name);
  }
  await ensurePackages(HOST_PACKAGES, "the virtual cluster", progress);
  const kernel = await ensureKernel(spec.kernel, progress);
  progress(`building the ppm module for ${kernel.release}`);
  const mod = await buildModule({ kernelRelease: kernel.release });
  // The guests' agents find these built (gcc under TCG takes seconds each).
  await ensureStub();
  await ensureDeputyBuilt();
  const cache = join(stateDir(), "vcluster", "images");
  await ensureDir(cache);
  progress(`preparing the guest image for ${kernel.release}`);
  const initramfs = await ensureInitramfs(kernel, cache);

  const rd = runDir(spec.name), ld = logDir(spec.name);
  await Deno.remove(rd, { recursive: true }).catch(() => {});
  await ensureDir(rd);
  await ensureDir(ld);
  const guestBin = join(ld, "bin");
  await writeGuestBin(guestBin);

  const st: ClusterState = {
    name: spec.name,
    kernel: { line: spec.kernel, release: kernel.release },
    memory: spec.memory,
    ...(spec.init === "systemd" ? { init: spec.init } : {}),
    netns: netnsName(spec.name),
    runDir: rd,
    logDir: ld,
    module: mod.path,
    createdAt: new Date().toISOString(),
    nodes: [],
  };
  progress(
    `booting ${spec.nodes} node${spec.nodes > 1 ? "s" : ""} (kernel ${kernel.release}, ${
      spec.init === "systemd" ? "systemd, " : ""
    }${spec.memory} MiB each)`,
  );
  await createNetwork(st.netns, spec.nodes);
  const configs: GuestConfig[] = [];
  try {
    for (let i = 1; i <= spec.nodes; i++) {
      const consoleLog = join(ld, `${nodeName(i)}.console.log`);
      await Deno.writeTextFile(consoleLog, "");
      const g: GuestConfig = {
        cluster: spec.name,
        index: i,
        nodes: spec.nodes,
        memory: spec.memory,
        vmlinuz: kernel.vmlinuz,
        initramfs,
        runDir: rd,
        consoleLog,
        guestPath: guestPath(guestBin),
        init: spec.init,
      };
      configs.push(g);
      const pid = await startGuest(st.netns, g);
      st.nodes.push({
        name: nodeName(i),
        index: i,
        address: nodeAddress(i),
        pid,
        console: consoleLog,
      });
      await Deno.writeTextFile(join(rd, "state.json"), JSON.stringify(st, null, 2));
    }
    const t0 = performance.now();
    const deadline = Date.now() + (opts.readyTimeoutMs ?? 180_000);
    await Promise.all(st.nodes.map((n) =>
      bootAgain(
        // A guest booted again has a minute at least.
        () => waitReady(st, n.index, Math.max(60_000, deadline - Date.now()), progress),
        async () => {
          // Its console so far stays beside the new one.
          await Deno.rename(n.console, `${n.console}.crashed`).catch(() => {});
          await Deno.writeTextFile(n.console, "");
          n.pid = await startGuest(st.netns, configs[n.index - 1]);
          await Deno.writeTextFile(join(rd, "state.json"), JSON.stringify(st, null, 2));
        },
        (why) => progress(`${n.name}: ${why}; booting it once more`),
      )
    ));
    progress(
      `all ${spec.nodes} nodes answer (${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s after start)`,
    );
    return st;
  } catch (e) {
    await down(spec.name).catch(() => {});
    throw e;
  }
}

/** Stops the guests of cluster `name` (only those it started) and removes its network. */
export async function down(name: string): Promise<{ stopped: number }> {
  requireRoot();
  const st = await readState(name);
  let stopped = 0;
  if (st) {
    const ours = [];
    for (const n of st.nodes) if (await isOurGuest(n.pid, name, n.index)) ours.push(n);
    for (const n of ours) {
      try {
        Deno.kill(n.pid, "SIGTERM");
      } catch { /* gone */ }
    }
    for (const n of ours) {
      for (let k = 0; k < 50 && await isOurGuest(n.pid, name, n.index); k++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      if (await isOurGuest(n.pid, name, n.index)) {
        try {
          Deno.kill(n.pid, "SIGKILL");
        } catch { /* gone */ }
      }
      stopped++;
    }
  }
  await deleteNetwork(netnsName(name));
  await Deno.remove(runDir(name), { recursive: true }).catch(() => {});
  return { stopped };
}

/** Status of one cluster. */
export interface ClusterStatus {
  /** Cluster name. */
  name: string;
  /** Whether every node's QEMU runs. */
  up: boolean;
  /** Kernel release. */
  kernel: string;
  /** Per node: running or not, address, pid, console log, trouble lines. */
  nodes: {
    name: string;
    address: string;
    pid: number;
    running: boolean;
    console: string;
    trouble: string[];
  }[];
}

/** Reports cluster `name`. */
export async function status(name: string): Promise<ClusterStatus> {
  const st = await requireState(name);
  const nodes = await Promise.all(st.nodes.map(async (n) => ({
    name: n.name,
    address: n.address,
    pid: n.pid,
    running: await isOurGuest(n.pid, name, n.index),
    console: n.console,
    trouble: consoleTrouble(await readLog(n.console)),
  })));
  return { name, up: nodes.every((n) => n.running), kernel: st.kernel.release, nodes };
}

/** True when a state file exists for `name`. */
export function hasState(name: string): Promise<boolean> {
  return exists(join(runDir(name), "state.json"));
}
