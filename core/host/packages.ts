/**
 * Installing the Debian packages ppm needs (QEMU, kernels, headers), as
 * root, with a progress line. Everything the project needs on a fresh
 * machine goes through here, so nothing depends on a hand-made install.
 *
 * @module
 */
import { EXIT, PpmError } from "../errors.ts";
import { withHostLock } from "./lock.ts";
import { isRoot, run, runOk } from "./run.ts";

const BACKPORTS_LIST = "/etc/apt/sources.list.d/ppm-bookworm-backports.list";

/** True when the Debian package `name` is installed. */
export async function isInstalled(name: string): Promise<boolean> {
  const r = await run("dpkg-query", ["-W", "-f=${Status}", name]);
  return r.code === 0 && r.stdout.includes("install ok installed");
}

let updated = false;

/** apt waits this long for a lock another apt or dpkg holds, instead of failing at once. */
const APT_LOCK_WAIT = ["-o", "DPkg::Lock::Timeout=900"];

/**
 * Runs `apt-get update` once per process (again after sources changed),
 * one ppm process at a time.
 */
export async function aptUpdate(progress: (s: string) => void): Promise<void> {
  if (updated) return;
  await withHostLock("apt", async () => {
    progress("apt-get update");
    await runOk(
      "apt-get",
      ["update", "-o", "Acquire::Retries=3", ...APT_LOCK_WAIT],
      "cannot update the package lists",
      {
        timeoutMs: 300_000,
      },
    );
  });
  updated = true;
}

/** The packages of `names` that are not installed. */
async function missingOf(names: readonly string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const n of names) if (!(await isInstalled(n))) missing.push(n);
  return missing;
}

/**
 * Installs whichever of `names` are missing. Needs root and Debian; other
 * systems get an error naming the packages.
 */
export async function ensurePackages(
  names: readonly string[],
  reason: string,
  progress: (s: string) => void = (s) => console.error(`ppm: ${s}`),
): Promise<void> {
  const missing = await missingOf(names);
  if (missing.length === 0) return;
  if (!isRoot()) {
    throw new PpmError(
      `${reason} needs packages that are not installed`,
      missing.join(", "),
      `as root: apt-get install ${missing.join(" ")}`,
      EXIT.MISSING,
    );
  }
  await aptUpdate(progress);
  // One install at a time; another ppm process may have installed them meanwhile.
  await withHostLock("apt", async () => {
    const still = await missingOf(missing);
    if (still.length === 0) return;
    progress(`installing ${still.join(" ")} (for ${reason})`);
    await runOk(
      "apt-get",
      ["install", "-y", "--no-install-recommends", ...APT_LOCK_WAIT, ...still],
      `cannot install ${still.join(" ")}`,
      { env: { DEBIAN_FRONTEND: "noninteractive" }, timeoutMs: 1_200_000 },
    );
  });
}

/** Adds bookworm-backports to apt's sources when it is missing. */
export async function ensureBackports(progress: (s: string) => void): Promise<void> {
  try {
    await Deno.stat(BACKPORTS_LIST);
    return;
  } catch { /* add it */ }
  const sources = await run("sh", [
    "-c",
    "cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null",
  ]);
  if (/bookworm-backports/.test(sources.stdout)) return;
  if (!isRoot()) {
    throw new PpmError("cannot add bookworm-backports", "not root", "run as root", EXIT.PERMISSION);
  }
  progress("adding bookworm-backports to apt sources");
  await Deno.writeTextFile(
    BACKPORTS_LIST,
    "deb http://deb.debian.org/debian bookworm-backports main\n",
  );
  updated = false;
}

/** Names of available packages matching an apt-cache regular expression. */
export async function searchPackages(regex: string): Promise<string[]> {
  const r = await run("apt-cache", ["search", "--names-only", regex]);
  return r.stdout.split("\n").map((l) => l.split(" ")[0]).filter(Boolean);
}
