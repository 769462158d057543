/**
 * Where a run happens: the host (CPU, cores, kernel, memory), the guests
 * (kernel, QEMU, accelerator), this checkout (ppm version, commit) and
 * CRIU's version, read from the machine itself.
 *
 * @module
 */
import { run } from "../../core/host/run.ts";
import { PROJECT_ROOT } from "../../core/paths.ts";
import { VERSION } from "../../core/version.ts";
import type { Environment } from "./types.ts";

/**
 * The Debian packages a run installs on the host (the guests run the host's
 * CRIU and nft; MPI workloads build their job with MPICH).
 */
export const BENCH_PACKAGES = {
  tools: ["criu", "nftables"],
  mpi: ["mpich", "libmpich-dev", "gcc"],
} as const;

/** The first `model name` of /proc/cpuinfo text. */
export function cpuModel(cpuinfo: string): string {
  return cpuinfo.match(/^model name\s*:\s*(.+)$/m)?.[1].trim() ?? "unknown CPU";
}

/** MemTotal of /proc/meminfo text, MiB. */
export function memTotalMiB(meminfo: string): number {
  return Math.round(Number(meminfo.match(/^MemTotal:\s+(\d+) kB/m)?.[1] ?? 0) / 1024);
}

/** The host's facts. */
export async function hostFacts(): Promise<Environment["machine"]> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const meminfo = await Deno.readTextFile("/proc/meminfo").catch(() => "");
  return {
    cpuModel: cpuModel(cpuinfo),
    cores: navigator.hardwareConcurrency,
    kernel: Deno.osRelease(),
    memoryMiB: memTotalMiB(meminfo),
  };
}

/** QEMU's version line. */
export async function qemuVersion(): Promise<string> {
  const r = await run("qemu-system-x86_64", ["--version"], { timeoutMs: 30_000 }).catch(() =>
    undefined
  );
  return r?.stdout.split("\n")[0].trim() || "unknown QEMU";
}

/** ppm's version and this checkout's commit. */
export async function ppmFacts(): Promise<Environment["ppm"]> {
  const git = (args: string[]) =>
    run("git", ["-C", PROJECT_ROOT, ...args], { timeoutMs: 30_000 }).catch(() => undefined);
  const head = await git(["rev-parse", "--short=12", "HEAD"]);
  const status = await git(["status", "--porcelain", "--untracked-files=no"]);
  return {
    version: VERSION,
    commit: head?.code === 0 ? head.stdout.trim() : "unknown (not a git checkout)",
    dirty: (status?.stdout.trim() ?? "") !== "",
  };
}
