/**
 * The guest kernels: which Debian kernel a line (6.1, 6.12) means on this
 * machine, and installing it with its headers when it is missing.
 *
 * @module
 */
import { EXIT, PpmError } from "../errors.ts";
import { aptUpdate, ensureBackports, ensurePackages, searchPackages } from "../host/packages.ts";
import { exists } from "../paths.ts";
import type { KernelLine } from "./spec.ts";

/** A guest kernel on this machine. */
export interface GuestKernel {
  /** Kernel line asked for. */
  line: KernelLine;
  /** Release, e.g. 6.1.0-56-amd64. */
  release: string;
  /** Path of the kernel image. */
  vmlinuz: string;
  /** The module tree. */
  modules: string;
  /** The Kbuild tree for building ppm.ko. */
  build: string;
}

/** Debian packages every cluster needs on the host. */
export const HOST_PACKAGES = [
  "qemu-system-x86",
  "busybox-static",
  "cpio",
  "kmod",
  "iproute2",
  "xz-utils",
  "gcc",
  "libc6-dev",
  "make",
];

const RELEASE_RE: Record<KernelLine, RegExp> = {
  "6.1": /^6\.1\.\d+-\d+-amd64$/,
  "6.12": /^6\.12\.\d+\+(deb12|bpo)-amd64$/,
};

function compareVersions(a: string, b: string): number {
  const pa = a.split(/[^0-9]+/).map(Number), pb = b.split(/[^0-9]+/).map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d) return d;
  }
  return 0;
}

/** The newest installed release of `line` with image, modules and headers, if any. */
export async function findInstalled(line: KernelLine): Promise<GuestKernel | undefined> {
  const found: string[] = [];
  try {
    for await (const e of Deno.readDir("/boot")) {
      const rel = e.name.match(/^vmlinuz-(.+)$/)?.[1];
      if (rel && RELEASE_RE[line].test(rel)) found.push(rel);
    }
  } catch { /* no /boot */ }
  found.sort(compareVersions).reverse();
  for (const release of found) {
    const k = {
      line,
      release,
      vmlinuz: `/boot/vmlinuz-${release}`,
      modules: `/lib/modules/${release}`,
      build: `/lib/modules/${release}/build`,
    };
    if (await exists(`${k.modules}/modules.dep`) && await exists(`${k.build}/Makefile`)) return k;
  }
  return undefined;
}

/** Returns the kernel of `line`, installing it and its headers when missing. */
export async function ensureKernel(
  line: KernelLine,
  progress: (s: string) => void,
): Promise<GuestKernel> {
  const have = await findInstalled(line);
  if (have) return have;
  if (line === "6.1") {
    await ensurePackages(
      ["linux-image-amd64", "linux-headers-amd64"],
      "the 6.1 guest kernel",
      progress,
    );
  } else {
    await ensureBackports(progress);
    const pattern = "^linux-image-6\\.12\\.[0-9]+\\+deb12-amd64-unsigned$";
    let names = await searchPackages(pattern);
    if (names.length === 0) {
      await aptUpdate(progress);
      names = await searchPackages(pattern);
    }
    const releases = names.map((n) => n.replace(/^linux-image-(.+)-unsigned$/, "$1")).sort(
      compareVersions,
    );
    const rel = releases.at(-1);
    if (!rel) {
      throw new PpmError(
        "cannot find a 6.12 kernel",
        "bookworm-backports offers no linux-image-6.12.*+deb12-amd64-unsigned",
        "check that bookworm-backports is reachable (apt-get update), or use --kernel 6.1",
        EXIT.MISSING,
      );
    }
    await ensurePackages(
      [`linux-image-${rel}-unsigned`, `linux-headers-${rel}`],
      "the 6.12 guest kernel",
      progress,
    );
  }
  const k = await findInstalled(line);
  if (!k) {
    throw new PpmError(
      `the ${line} kernel is still missing after installing it`,
      "no matching /boot/vmlinuz-* with modules and headers",
      "look at apt's output above",
      EXIT.MISSING,
    );
  }
  return k;
}
