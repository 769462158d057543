/**
 * `deno task build`: builds the kernel module and the single `dist/ppm`
 * executable.
 *
 *   deno task build [--kernel-release KVER]... [--no-module] [--no-binary]
 *
 * The module is built for each kernel named, else for the running kernel
 * when its headers are installed, else for every kernel whose headers are
 * (dist/kmod/KVER/ppm.ko). The binary comes from `deno compile`, which needs
 * the denort runtime: it is downloaded unless DENORT_BIN names one.
 *
 * @module
 */
import { join } from "node:path";
import { EXIT, PpmError } from "./core/errors.ts";
import { buildModule } from "./core/module/build.ts";
import { exists, PROJECT_ROOT } from "./core/paths.ts";

const DIST = join(PROJECT_ROOT, "dist");

async function kernelsWithHeaders(): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir("/lib/modules")) {
      if (await exists(join("/lib/modules", e.name, "build", "Makefile"))) out.push(e.name);
    }
  } catch { /* none */ }
  return out.sort();
}

async function buildModules(requested: string[]): Promise<void> {
  let kvers = requested;
  if (!kvers.length) {
    const running = Deno.osRelease();
    const all = await kernelsWithHeaders();
    kvers = all.includes(running) ? [running] : all;
  }
  if (!kvers.length) {
    throw new PpmError(
      "cannot build the ppm module",
      "no kernel headers are installed",
      `install linux-headers-${Deno.osRelease()} (Debian/Ubuntu) or kernel-devel (RHEL-likes), or pass --no-module`,
      EXIT.MISSING,
    );
  }
  for (const k of kvers) {
    const r = await buildModule({ kernelRelease: k, outDir: join(DIST, "kmod", k) });
    console.log(`module: ${r.path} (${(r.ms / 1000).toFixed(1)} s)`);
  }
}

async function buildBinary(): Promise<void> {
  const denort = Deno.env.get("DENORT_BIN");
  if (denort && !(await exists(denort))) {
    throw new PpmError(
      "cannot build dist/ppm",
      `DENORT_BIN=${denort} does not exist`,
      "point it at a denort binary",
      EXIT.MISSING,
    );
  }
  const args = [
    "compile",
    "-A",
    "--include",
    "kmod",
    "--include",
    "core/vcluster/guest",
    "--include",
    "core/restore/stub",
    "--output",
    join(DIST, "ppm"),
    "cli/main.ts",
  ];
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: PROJECT_ROOT,
    stdout: "inherit",
    stderr: "piped",
  })
    .output();
  const err = new TextDecoder().decode(out.stderr);
  Deno.stderr.writeSync(out.stderr);
  if (out.code !== 0) {
    const download = /denort|download|dl\.deno|error sending request|dns|connect/i.test(err);
    throw new PpmError(
      "cannot build dist/ppm",
      download && !denort
        ? "deno compile could not download its runtime (denort) from the internet"
        : `deno compile exited with ${out.code}`,
      download && !denort
        ? `point DENORT_BIN at a denort binary of the same Deno version (${Deno.version.deno}): ` +
          "DENORT_BIN=/path/to/denort deno task build; until then run ppm from source with `deno task ppm`"
        : "see deno compile's output above",
      EXIT.MISSING,
    );
  }
  console.log(`binary: ${join(DIST, "ppm")}`);
}

if (import.meta.main) {
  const args = Deno.args;
  const kvers = args.flatMap((a, i) =>
    a === "--kernel-release" && args[i + 1] ? [args[i + 1]] : []
  );
  try {
    if (!args.includes("--no-module")) await buildModules(kvers);
    if (!args.includes("--no-binary")) await buildBinary();
  } catch (e) {
    if (e instanceof PpmError) {
      console.error(e.render());
      Deno.exit(e.exitCode);
    }
    throw e;
  }
}
