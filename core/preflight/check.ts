/**
 * `ppm check`: one pre-flight for node health scripts and job prologues.
 * Each check says what it looked at, whether it passed, and what to do when
 * it did not; a failed check makes the node unfit for migration, a warning
 * does not. The facts come through {@link CheckDeps}, so every outcome is
 * testable without a module or an agent.
 *
 * @module
 */
import type { DiscoveryStatus } from "../discovery/service.ts";
import type { ModuleStatus } from "../module/manage.ts";

/** How one check ended. */
export type CheckLevel = "ok" | "warn" | "fail";

/** One check's result. */
export interface CheckResult {
  /** Short name: kernel, privilege, module, agent, peers, pids, secret. */
  name: string;
  /** Its outcome. */
  level: CheckLevel;
  /** What was found. */
  detail: string;
  /** What to do about it (empty when it passed). */
  fix: string;
}

/** The whole pre-flight. */
export interface CheckReport {
  /** True when no check failed (warnings allowed). */
  ok: boolean;
  /** Every check, in order. */
  checks: CheckResult[];
}

/** What the checks look at. */
export interface CheckDeps {
  /** Effective UID of this process. */
  uid: number;
  /** The module's state. */
  module: () => Promise<ModuleStatus>;
  /** The agent's peers (and its own identity); throws when the agent does not answer. */
  peers: () => Promise<DiscoveryStatus>;
  /** The agent's secret file: throws when it cannot be used. */
  secret: () => Promise<void>;
  /** Reads a /proc file; throws when it is not there. */
  readProc: (path: string) => Promise<string>;
  /** Whether a path exists. */
  exists: (path: string) => Promise<boolean>;
  /** The number of processes (threads count once per process) on this node. */
  processCount: () => Promise<number>;
}

/** What the caller can tune. */
export interface CheckOptions {
  /** Alive peers needed (default 1: a node that sees none can neither send nor take work). */
  minPeers?: number;
}

/** The kernel facilities restore and socket migration rely on, as /proc files. */
const KERNEL_FILES: { path: string; what: string }[] = [
  { path: "/proc/sys/kernel/ns_last_pid", what: "choosing a restored process's PID" },
  { path: "/proc/self/map_files", what: "dumping mappings (CONFIG_CHECKPOINT_RESTORE)" },
  { path: "/proc/sys/net/ipv4/tcp_mtu_probing", what: "TCP" },
];

/** Below this pid_max, a moving process's PID is more likely taken on the destination. */
export const MIN_PID_MAX = 65536;

const ok = (name: string, detail: string): CheckResult => ({ name, level: "ok", detail, fix: "" });

async function kernelCheck(d: CheckDeps): Promise<CheckResult> {
  const missing: string[] = [];
  for (const f of KERNEL_FILES) {
    if (!await d.exists(f.path)) missing.push(`${f.path} (${f.what})`);
  }
  if (missing.length === 0) return ok("kernel", "checkpoint/restore interfaces present");
  return {
    name: "kernel",
    level: "fail",
    detail: `missing: ${missing.join(", ")}`,
    fix: "use a kernel built with CONFIG_CHECKPOINT_RESTORE (Debian's are), with /proc mounted",
  };
}

function privilegeCheck(d: CheckDeps): CheckResult {
  if (d.uid === 0) return ok("privilege", "running as root");
  return {
    name: "privilege",
    level: "warn",
    detail: `running as UID ${d.uid}: the module, PIDs and TCP repair need root`,
    fix: "run ppm check as root to check what the agent can do",
  };
}

async function moduleCheck(d: CheckDeps): Promise<CheckResult> {
  let m: ModuleStatus;
  try {
    m = await d.module();
  } catch (e) {
    return {
      name: "module",
      level: "fail",
      detail: `cannot read its state: ${(e as Error).message}`,
      fix: "run as root",
    };
  }
  if (!m.loaded) {
    return {
      name: "module",
      level: "fail",
      detail: `not loaded on ${m.kernel}${
        m.moduleFile.exists ? ` (built: ${m.moduleFile.path})` : " (not built for this kernel)"
      }`,
      fix: m.moduleFile.exists
        ? "ppm module load (or modprobe ppm with the ppm-dkms package)"
        : "ppm module load --build (or install the ppm-dkms package)",
    };
  }
  if (!m.device) {
    return {
      name: "module",
      level: "fail",
      detail: "loaded, but /dev/ppm is missing",
      fix: "mount devtmpfs on /dev, or reload: ppm module unload && ppm module load",
    };
  }
  if (m.abi !== m.toolAbi) {
    return {
      name: "module",
      level: "fail",
      detail: `loaded with ABI ${m.abi ?? "unknown"}; this ppm speaks ABI ${m.toolAbi}`,
      fix: "ppm module unload, then load this version's module",
    };
  }
  const need = ["redirect"];
  const lacking = need.filter((f) => !m.features.includes(f));
  if (lacking.length) {
    return {
      name: "module",
      level: "warn",
      detail: `version ${m.version}, ABI ${m.abi}, without ${lacking.join(", ")}`,
      fix: "sockets cannot move; rebuild the module for this kernel",
    };
  }
  return ok("module", `version ${m.version}, ABI ${m.abi}, features ${m.features.join(" ")}`);
}

async function agentChecks(d: CheckDeps, minPeers: number): Promise<CheckResult[]> {
  let st: DiscoveryStatus;
  try {
    st = await d.peers();
  } catch (e) {
    return [{
      name: "agent",
      level: "fail",
      detail: (e as Error).message.split("\n")[0],
      fix: "start it: systemctl start ppm (or ppm daemon)",
    }];
  }
  const self = `${st.self.name} on ${st.self.addresses.join(", ") || "no address"}`;
  const alive = st.peers.filter((p) => p.state === "alive");
  const names = alive.map((p) => p.name).join(", ") || "none";
  const otherAbi = alive.filter((p) => p.abi !== st.self.abi);
  const peers: CheckResult = alive.length < minPeers
    ? {
      name: "peers",
      level: "fail",
      detail: `${alive.length} alive (${st.peers.length} known), ${minPeers} needed`,
      fix: "check that the other agents run with the same secret, group and port, and that " +
        "multicast reaches this node on its interface (ppm peers)",
    }
    : otherAbi.length
    ? {
      name: "peers",
      level: "warn",
      detail: `${alive.length} alive (${names}); module ABI differs on ${
        otherAbi.map((p) => `${p.name} (ABI ${p.abi})`).join(", ")
      }, ours is ${st.self.abi}`,
      fix: "processes move only between nodes of one ABI: finish the upgrade (docs/install.md)",
    }
    : ok("peers", `${alive.length} alive: ${names}`);
  return [ok("agent", `answers: ${self}`), peers];
}

async function pidCheck(d: CheckDeps): Promise<CheckResult> {
  let max: number;
  try {
    max = Number((await d.readProc("/proc/sys/kernel/pid_max")).trim());
  } catch {
    return {
      name: "pids",
      level: "fail",
      detail: "no /proc/sys/kernel/pid_max",
      fix: "mount /proc",
    };
  }
  const used = await d.processCount().catch(() => 0);
  const detail = `pid_max ${max}, ${used} processes`;
  if (used > max / 2) {
    return {
      name: "pids",
      level: "fail",
      detail: `${detail}: over half the PID space is taken`,
      fix: "raise kernel.pid_max (sysctl -w kernel.pid_max=4194304)",
    };
  }
  if (max < MIN_PID_MAX) {
    return {
      name: "pids",
      level: "warn",
      detail: `${detail}: arriving processes keep their PIDs, which collide more often here`,
      fix: "sysctl -w kernel.pid_max=4194304 (systemd's default) on every node",
    };
  }
  return ok("pids", detail);
}

async function secretCheck(d: CheckDeps): Promise<CheckResult> {
  try {
    await d.secret();
    return ok("secret", "readable, root's, mode 0600");
  } catch (e) {
    const lines = (e as Error).message.split("\n");
    return {
      name: "secret",
      level: "fail",
      detail: lines[0],
      fix: lines.find((l) => l.includes("what to do:"))?.replace(/^\s*what to do:\s*/, "") ??
        "ppm secret generate -o /etc/ppm/secret, and copy it to every node",
    };
  }
}

/** Runs every check; the report is ok when none failed. */
export async function runChecks(d: CheckDeps, opts: CheckOptions = {}): Promise<CheckReport> {
  const checks = [
    await kernelCheck(d),
    privilegeCheck(d),
    await moduleCheck(d),
    await secretCheck(d),
    ...await agentChecks(d, opts.minPeers ?? 1),
    await pidCheck(d),
  ];
  return { ok: checks.every((c) => c.level !== "fail"), checks };
}

/** The report as text: one line per check, with the fix under what failed or warned. */
export function renderChecks(r: CheckReport): string {
  const lines = r.checks.map((c) => {
    const head = `${c.level.padEnd(4)}  ${c.name.padEnd(9)} ${c.detail}`;
    return c.fix ? `${head}\n${" ".repeat(16)}what to do: ${c.fix}` : head;
  });
  lines.push(r.ok ? "this node is ready for ppm" : "this node is NOT ready for ppm");
  return lines.join("\n");
}
