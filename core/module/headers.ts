/**
 * Locating kernel headers (a Kbuild tree) for a kernel release, and naming
 * the package that provides them when they are missing.
 *
 * @module
 */
import { join } from "node:path";
import { EXIT, PpmError } from "../errors.ts";
import { exists } from "../paths.ts";

/** The distribution family, from /etc/os-release. */
export async function distroFamily(): Promise<"debian" | "rhel" | "other"> {
  let text = "";
  try {
    text = await Deno.readTextFile("/etc/os-release");
  } catch { /* unknown */ }
  const ids = (text.match(/^(ID|ID_LIKE)=(.*)$/gm) ?? []).join(" ").toLowerCase();
  if (/debian|ubuntu/.test(ids)) return "debian";
  if (/rhel|fedora|centos|rocky|alma/.test(ids)) return "rhel";
  return "other";
}

/** The package providing headers for `kver` on this distribution. */
export function headersPackage(family: string, kver: string): string {
  return family === "rhel" ? `kernel-devel-${kver}` : `linux-headers-${kver}`;
}

/** Resolved build tree. */
export interface KernelTree {
  /** Kernel release the tree builds for. */
  release: string;
  /** The Kbuild directory. */
  dir: string;
}

/**
 * Finds the Kbuild tree: `kernelDir` if given, else
 * `/lib/modules/<release>/build`. Throws a {@link PpmError} that names the
 * package to install when it is missing.
 */
export async function findKernelTree(release?: string, kernelDir?: string): Promise<KernelTree> {
  if (kernelDir) {
    if (!(await exists(join(kernelDir, "Makefile")))) {
      throw new PpmError(
        "cannot build the ppm module",
        `${kernelDir} is not a kernel build tree (no Makefile)`,
        "point --kernel-dir at /lib/modules/<release>/build or an installed headers directory",
        EXIT.MISSING,
      );
    }
    let rel = release ?? "";
    try {
      rel ||= (await Deno.readTextFile(join(kernelDir, "include/config/kernel.release"))).trim();
    } catch { /* unknown */ }
    if (!rel) {
      throw new PpmError(
        "cannot build the ppm module",
        `${kernelDir} does not say which kernel it is for (include/config/kernel.release)`,
        "pass --kernel-release too",
        EXIT.USAGE,
      );
    }
    return { release: rel, dir: kernelDir };
  }
  const rel = release ?? Deno.osRelease();
  const dir = `/lib/modules/${rel}/build`;
  if (!(await exists(join(dir, "Makefile")))) {
    const family = await distroFamily();
    const pkg = headersPackage(family, rel);
    const fix = family === "other"
      ? `install the headers for ${rel} (linux-headers-${rel} on Debian/Ubuntu, kernel-devel-${rel} on RHEL-likes), or pass --kernel-dir`
      : `install ${pkg} (${
        family === "rhel" ? "dnf" : "apt-get"
      } install ${pkg}), or pass --kernel-dir`;
    throw new PpmError(
      "cannot build the ppm module",
      `no kernel headers for ${rel} (${dir} is missing)`,
      fix,
      EXIT.MISSING,
    );
  }
  return { release: rel, dir };
}
