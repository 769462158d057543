/**
 * `deno task package`: the Debian packages.
 *
 * - `ppm_VERSION_amd64.deb`: the CLI and agent (/usr/bin/ppm), the systemd
 *   unit, bash completions, the ppm(8) man page generated from --help, the
 *   restore stub built, and the sources ppm builds from at run time.
 *   /usr/bin/ppm is `dist/ppm` when `deno task build` made it (deno compile);
 *   else the CLI bundled (/usr/lib/ppm/js: an entry and the chunks commands
 *   load when they run) with the Deno runtime that runs it.
 * - `ppm-dkms_VERSION_all.deb`: the module's source under /usr/src with a
 *   dkms.conf; Debian's dkms builds it for every installed kernel and every
 *   kernel installed later, and `modprobe ppm` finds it.
 *
 *   deno task package [--out DIR]
 *
 * @module
 */
import { gzipSync } from "node:zlib";
import { basename, dirname, join, relative } from "node:path";
import { buildApp } from "../cli/app.ts";
import { bashScript, completionTable } from "../cli/completions.ts";
import { EXIT, PpmError } from "../core/errors.ts";
import { bundleCli } from "../core/host/bundle.ts";
import { exists, KMOD_SRC, PROJECT_ROOT } from "../core/paths.ts";
import { STUB_HELPER } from "../core/restore/stub.ts";
import { KEEPER_HELPER } from "../core/relay/keeper.ts";
import { DEPUTY_HELPER } from "../core/deputy/binary.ts";
import { PAGESTREAM_HELPER } from "../core/transport/pagestream.ts";
import { buildHelper, helperName, type HelperSource } from "../core/host/helper_binary.ts";
import { VERSION } from "../core/version.ts";
import { manPage } from "./manpage.ts";

const MAINTAINER = "ppm developers <ppm@localhost>";

/** The dkms.conf of the module's source package. */
export function dkmsConf(version: string): string {
  return [
    `PACKAGE_NAME="ppm"`,
    `PACKAGE_VERSION="${version}"`,
    `BUILT_MODULE_NAME[0]="ppm"`,
    `DEST_MODULE_LOCATION[0]="/updates/dkms"`,
    `MAKE[0]="make -C \${kernel_source_dir} M=\${dkms_tree}/\${PACKAGE_NAME}/\${PACKAGE_VERSION}/build modules"`,
    `CLEAN="make -C \${kernel_source_dir} M=\${dkms_tree}/\${PACKAGE_NAME}/\${PACKAGE_VERSION}/build clean"`,
    `AUTOINSTALL="yes"`,
    "",
  ].join("\n");
}

/** The static helpers the package ships built (the restore stub, relay keeper, deputy, page stream). */
export const HELPERS: readonly HelperSource[] = [
  STUB_HELPER,
  KEEPER_HELPER,
  DEPUTY_HELPER,
  PAGESTREAM_HELPER,
];

/**
 * Copies `h`'s source and headers under `lib` (the package's project root)
 * at their paths in this tree, and the helper built from them beside its
 * source, under the name ppm looks for (core/host/helper_binary.ts).
 */
async function shipHelper(h: HelperSource, lib: string): Promise<void> {
  for (const f of [h.src, ...h.headers ?? []]) {
    await write(join(lib, relative(PROJECT_ROOT, f)), await Deno.readFile(f), 0o644);
  }
  const built = await buildHelper(h);
  await write(
    join(lib, relative(PROJECT_ROOT, dirname(h.src)), await helperName(h)),
    await Deno.readFile(built),
    0o755,
  );
}

async function write(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  await Deno.mkdir(join(path, ".."), { recursive: true });
  if (typeof data === "string") await Deno.writeTextFile(path, data);
  else await Deno.writeFile(path, data);
  await Deno.chmod(path, mode);
}

async function copyTree(from: string, to: string, keep: (name: string) => boolean) {
  for await (const e of Deno.readDir(from)) {
    if (e.isDirectory) await copyTree(join(from, e.name), join(to, e.name), keep);
    else if (e.isFile && keep(e.name)) {
      await write(join(to, e.name), await Deno.readFile(join(from, e.name)));
    }
  }
}

async function duKiB(dir: string): Promise<number> {
  let bytes = 0;
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) bytes += (await duKiB(p)) * 1024;
    else bytes += (await Deno.lstat(p)).size;
  }
  return Math.ceil(bytes / 1024);
}

/** How the packages are compressed: xz for releases, none for tests. */
export type Compression = "xz" | "gzip" | "none";

async function dpkgDeb(stage: string, out: string, z: Compression): Promise<void> {
  await Deno.chmod(stage, 0o755);
  const r = await new Deno.Command("dpkg-deb", {
    args: ["--root-owner-group", `-Z${z}`, "--build", stage, out],
    stdout: "piped",
    stderr: "piped",
  }).output().catch((e) => {
    throw new PpmError(
      "cannot build the packages",
      `dpkg-deb: ${(e as Error).message}`,
      "apt-get install dpkg-dev",
      EXIT.MISSING,
    );
  });
  if (r.code !== 0) {
    throw new PpmError(
      `cannot build ${out}`,
      new TextDecoder().decode(r.stderr).trim(),
      "see dpkg-deb's message",
      EXIT.FAILURE,
    );
  }
}

function control(fields: Record<string, string>, description: string[]): string {
  return Object.entries(fields).map(([k, v]) => `${k}: ${v}`).join("\n") + "\n" +
    `Description: ${description[0]}\n` +
    description.slice(1).map((l) => ` ${l || "."}`).join("\n") +
    "\n";
}

/** Builds ppm-dkms_VERSION_all.deb in `outDir`; returns its path. */
export async function buildDkmsPackage(
  outDir: string,
  version = VERSION,
  z: Compression = "xz",
): Promise<string> {
  const stage = await Deno.makeTempDir({ prefix: "ppm-dkms-deb-" });
  try {
    const src = join(stage, "usr", "src", `ppm-${version}`);
    await copyTree(KMOD_SRC, src, (n) => /(\.[ch]|^Kbuild|^Makefile)$/.test(n));
    await write(join(src, "dkms.conf"), dkmsConf(version));
    await write(
      join(stage, "DEBIAN", "control"),
      control({
        Package: "ppm-dkms",
        Version: version,
        Architecture: "all",
        Maintainer: MAINTAINER,
        Depends: "dkms (>= 2.1.0.0)",
        Section: "kernel",
        Priority: "optional",
        "Installed-Size": String(await duKiB(join(stage, "usr"))),
      }, [
        "ppm kernel module (DKMS source)",
        "The ppm process migration module, built by DKMS for every installed kernel",
        "and rebuilt when a new kernel is installed. Load it with modprobe ppm.",
      ]),
    );
    // Debian's own DKMS helpers, as dh_dkms writes them.
    await write(
      join(stage, "DEBIAN", "postinst"),
      `#!/bin/sh\nset -e\nif [ "$1" = configure ]; then\n` +
        `\t/usr/lib/dkms/common.postinst ppm ${version} "" "" "$2"\nfi\n`,
      0o755,
    );
    await write(
      join(stage, "DEBIAN", "prerm"),
      `#!/bin/sh\nset -e\ncase "$1" in\nremove|upgrade|deconfigure)\n` +
        `\tif [ "$(dkms status -m ppm -v ${version})" ]; then\n` +
        `\t\tdkms remove -m ppm -v ${version} --all\n\tfi\n\t;;\nesac\n`,
      0o755,
    );
    const out = join(outDir, `ppm-dkms_${version}_all.deb`);
    await dpkgDeb(stage, out, z);
    return out;
  } finally {
    await Deno.remove(stage, { recursive: true });
  }
}

/** Builds ppm_VERSION_amd64.deb in `outDir`; returns its path. */
export async function buildCliPackage(
  outDir: string,
  version = VERSION,
  z: Compression = "xz",
): Promise<string> {
  const stage = await Deno.makeTempDir({ prefix: "ppm-deb-" });
  try {
    const lib = join(stage, "usr", "lib", "ppm");
    // What ppm reads at run time: the module source, the stub's, keeper's and deputy's, the guest init.
    await copyTree(KMOD_SRC, join(lib, "kmod"), (n) => /(\.[ch]|^Kbuild|^Makefile)$/.test(n));
    await copyTree(
      join(PROJECT_ROOT, "core", "vcluster", "guest"),
      join(lib, "core/vcluster/guest"),
      () => true,
    );
    // The helpers: their sources where ppm looks for them, each built beside its source.
    for (const h of HELPERS) await shipHelper(h, lib);

    const compiled = join(PROJECT_ROOT, "dist", "ppm");
    const bin = join(stage, "usr", "bin", "ppm");
    let runtime: string;
    if (await exists(compiled)) {
      await write(join(lib, "ppm"), await Deno.readFile(compiled), 0o755);
      runtime = "the single ppm executable (deno compile)";
      await write(bin, `#!/bin/sh\nPPM_ROOT=/usr/lib/ppm exec /usr/lib/ppm/ppm "$@"\n`, 0o755);
    } else {
      const entry = await bundleCli(join(lib, "js"));
      await write(join(lib, "deno"), await Deno.readFile(Deno.execPath()), 0o755);
      runtime = `the bundled CLI and the Deno ${Deno.version.deno} runtime`;
      await write(
        bin,
        "#!/bin/sh\nexport PPM_ROOT=/usr/lib/ppm DENO_NO_UPDATE_CHECK=1\n" +
          'export DENO_DIR="${DENO_DIR:-/var/cache/ppm/deno}"\n' +
          `exec /usr/lib/ppm/deno run -A --no-config --no-lock /usr/lib/ppm/js/${
            basename(entry)
          } "$@"\n`,
        0o755,
      );
    }
    const app = buildApp();
    await write(
      join(stage, "lib", "systemd", "system", "ppm.service"),
      await Deno.readTextFile(join(PROJECT_ROOT, "packaging", "ppm.service")),
    );
    await write(
      join(stage, "usr", "share", "bash-completion", "completions", "ppm"),
      bashScript(completionTable(app)),
    );
    const today = new Date().toISOString().slice(0, 10);
    await write(
      join(stage, "usr", "share", "man", "man8", "ppm.8.gz"),
      gzipSync(new TextEncoder().encode(manPage(app, version, today)), { level: 9 }),
    );
    const doc = join(stage, "usr", "share", "doc", "ppm");
    for (
      const f of ["systemd.md", "install.md", "cli.md", "config.md", "security.md", "secret.md"]
    ) {
      const p = join(PROJECT_ROOT, "docs", f);
      if (await exists(p)) await write(join(doc, f), await Deno.readFile(p));
    }
    await write(join(doc, "copyright"), "ppm: the kernel module is GPL-2.0; see the sources.\n");
    await write(
      join(stage, "DEBIAN", "control"),
      control({
        Package: "ppm",
        Version: version,
        Architecture: "amd64",
        Maintainer: MAINTAINER,
        Recommends: "ppm-dkms (= " + version + ")",
        Section: "admin",
        Priority: "optional",
        "Installed-Size": String(await duKiB(join(stage, "usr")) + await duKiB(join(stage, "lib"))),
      }, [
        "preemptive process migration for Linux clusters",
        "Moves running processes between nodes with their TCP connections,",
        "listeners and UDP sockets. This package holds the ppm command and the",
        `agent (ppm.service); it ships ${runtime}.`,
        "",
        "The kernel module comes with ppm-dkms.",
      ]),
    );
    // Enabled like any Debian service; it starts once /etc/ppm/secret exists
    // (ConditionPathExists). An upgrade does not restart a running agent.
    await write(
      join(stage, "DEBIAN", "postinst"),
      '#!/bin/sh\nset -e\nif [ "$1" = configure ]; then\n' +
        "\tmkdir -p -m 0700 /var/lib/ppm /etc/ppm\n" +
        "\tif [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi\n" +
        "\tif command -v deb-systemd-helper >/dev/null; then deb-systemd-helper enable ppm.service || true; fi\n" +
        "fi\n",
      0o755,
    );
    await write(
      join(stage, "DEBIAN", "prerm"),
      '#!/bin/sh\nset -e\nif [ "$1" = remove ] && [ -d /run/systemd/system ]; then\n' +
        "\tsystemctl stop ppm.service || true\nfi\n",
      0o755,
    );
    await write(
      join(stage, "DEBIAN", "postrm"),
      '#!/bin/sh\nset -e\nif [ "$1" = purge ] && command -v deb-systemd-helper >/dev/null; then\n' +
        "\tdeb-systemd-helper purge ppm.service || true\nfi\n",
      0o755,
    );
    const out = join(outDir, `ppm_${version}_amd64.deb`);
    await dpkgDeb(stage, out, z);
    return out;
  } finally {
    await Deno.remove(stage, { recursive: true });
  }
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--out");
  const outDir = i >= 0 ? Deno.args[i + 1] : join(PROJECT_ROOT, "dist");
  try {
    await Deno.mkdir(outDir, { recursive: true });
    for (const p of [await buildDkmsPackage(outDir), await buildCliPackage(outDir)]) {
      console.log(`package: ${p}`);
    }
  } catch (e) {
    if (e instanceof PpmError) {
      console.error(e.render());
      Deno.exit(e.exitCode);
    }
    throw e;
  }
}
