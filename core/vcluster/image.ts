/**
 * The guest's initramfs: busybox, the drivers the guest needs to reach the
 * host's root and the bridge, the init script, the guest agent, and the
 * files a systemd guest's init installs (guest/systemd, under /systemd). Built
 * once per kernel release and content, then reused.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { runOk } from "../host/run.ts";
import { PROJECT_ROOT } from "../paths.ts";
import type { GuestKernel } from "./kernels.ts";

/** Drivers loaded by the init script (with their dependencies, in order). */
export const GUEST_DRIVERS = [
  "virtio_pci",
  "virtio_net",
  "9pnet_virtio",
  "9p",
  "virtio_console",
  "overlay",
];

const GUEST_DIR = join(PROJECT_ROOT, "core", "vcluster", "guest");
const SYSTEMD_DIR = join(GUEST_DIR, "systemd");

/** The files of guest/systemd (units, configuration, lists), sorted by name. */
async function systemdFiles(): Promise<{ name: string; data: Uint8Array }[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(SYSTEMD_DIR)) if (e.isFile) names.push(e.name);
  names.sort();
  return await Promise.all(
    names.map(async (name) => ({ name, data: await Deno.readFile(join(SYSTEMD_DIR, name)) })),
  );
}

/** The module files to load for `drivers`, in dependency order (builtins skipped). */
export async function driverFiles(k: GuestKernel, drivers = GUEST_DRIVERS): Promise<string[]> {
  const out: string[] = [];
  for (const d of drivers) {
    const r = await runOk(
      "modprobe",
      ["-S", k.release, "--show-depends", d],
      `cannot resolve driver ${d}`,
    );
    for (const line of r.stdout.split("\n")) {
      const path = line.match(/^insmod (\S+)/)?.[1];
      if (path && !out.includes(path)) out.push(path);
    }
  }
  return out;
}

/** Builds (or reuses) the initramfs for `k` under `cacheDir`; returns its path. */
export async function ensureInitramfs(k: GuestKernel, cacheDir: string): Promise<string> {
  const init = await Deno.readFile(join(GUEST_DIR, "init.sh"));
  const agentSrc = await Deno.readFile(join(GUEST_DIR, "agent.c"));
  const sd = await systemdFiles();
  const h = createHash("sha256").update(init).update(agentSrc).update(k.release);
  for (const f of sd) h.update(`\0${f.name}\0${f.data.length}\0`).update(f.data);
  const hash = h.digest("hex").slice(0, 16);
  const out = join(cacheDir, `initramfs-${k.release}-${hash}.cpio`);
  try {
    await Deno.stat(out);
    return out;
  } catch { /* build it */ }

  const stage = await Deno.makeTempDir({ dir: cacheDir, prefix: "initramfs-" });
  try {
    for (const d of ["bin", "modules", "proc", "sys", "dev", "systemd"]) {
      await Deno.mkdir(join(stage, d));
    }
    for (const f of sd) await Deno.writeFile(join(stage, "systemd", f.name), f.data);
    await Deno.copyFile("/bin/busybox", join(stage, "bin", "busybox"));
    await Deno.writeFile(join(stage, "init"), init, { mode: 0o755 });
    await runOk(
      "gcc",
      [
        "-static",
        "-Os",
        "-Wall",
        "-Werror",
        "-o",
        join(stage, "ppm-guest-agent"),
        join(GUEST_DIR, "agent.c"),
      ],
      "cannot build the guest agent",
    );
    const order: string[] = [];
    for (const f of await driverFiles(k)) {
      const base = f.split("/").pop()!.replace(/\.(xz|zst|gz)$/, "");
      const dest = join(stage, "modules", base);
      if (f.endsWith(".xz")) {
        await runOk("sh", ["-c", `xz -dc '${f}' > '${dest}'`], `cannot unpack ${f}`);
      } else if (f.endsWith(".zst")) {
        await runOk("sh", ["-c", `zstd -dc '${f}' > '${dest}'`], `cannot unpack ${f}`);
      } else await Deno.copyFile(f, dest);
      order.push(base);
    }
    await Deno.writeTextFile(join(stage, "modules", "order"), order.join("\n") + "\n");
    await runOk(
      "sh",
      [
        "-c",
        `cd '${stage}' && find . -mindepth 1 | cpio --quiet -o -H newc -R 0:0 > '${stage}.cpio'`,
      ],
      "cannot pack the initramfs",
    );
    // Packed under the stage's own name: another process may be building the same image.
    await Deno.rename(`${stage}.cpio`, out);
    return out;
  } finally {
    await Deno.remove(stage, { recursive: true }).catch(() => {});
  }
}
