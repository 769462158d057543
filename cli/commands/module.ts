/**
 * `ppm module`: build, load, unload and inspect the kernel module.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { PPM_ABI_VERSION } from "../../ffi/uapi.ts";
import { progress, report } from "../output.ts";

/** The `module` command tree. */
export function moduleCommand(): Command {
  const cmd = new Command("module").description(
    "build, load, unload and inspect the ppm kernel module",
  );

  cmd.command("build")
    .description("build kmod/ with Kbuild for the running kernel or the headers named")
    .option("--kernel-release <kver>", "kernel release to build for (default: running kernel)")
    .option("--kernel-dir <dir>", "Kbuild tree to build against (default: /lib/modules/KVER/build)")
    .option("--out <dir>", "output directory (default: the state directory's kmod/KVER)")
    .option("--json", "print the result as JSON")
    .action(async (o) => {
      const { buildModule } = await import("../../core/module/build.ts");
      const r = await buildModule({
        kernelRelease: o.kernelRelease,
        kernelDir: o.kernelDir,
        outDir: o.out,
      });
      report(o.json, r, (d) => `built ${d.path} for ${d.release} in ${(d.ms / 1000).toFixed(1)} s`);
    });

  cmd.command("load")
    .description("load the module with finit_module(2); does nothing if it is already loaded")
    .option("--build", "build the module for the running kernel first")
    .option("--module <path>", "module file (default: $PPM_MODULE or the state directory's)")
    .option("--json", "print the result as JSON")
    .action(async (o) => {
      if (o.build) progress(`building the module for ${Deno.osRelease()}`);
      const { loadModule } = await import("../../core/module/manage.ts");
      const r = await loadModule({ path: o.module, build: o.build });
      report(
        o.json,
        { ...r, abi: r.info.abi },
        (d) =>
          d.alreadyLoaded
            ? `ppm module already loaded (version ${d.info.version}, ABI ${d.info.abi})`
            : `ppm module loaded from ${d.path} (version ${d.info.version}, ABI ${d.info.abi})`,
      );
    });

  cmd.command("unload")
    .description("unload the module; refused while /dev/ppm is in use")
    .option("--json", "print the result as JSON")
    .action(async (o) => {
      const { unloadModule } = await import("../../core/module/manage.ts");
      const unloaded = await unloadModule();
      report(
        o.json,
        { unloaded },
        (d) => d.unloaded ? "ppm module unloaded" : "ppm module is not loaded",
      );
    });

  cmd.command("status")
    .description("show whether the module is loaded, its version, ABI, features and use count")
    .option("--json", "print the status as JSON")
    .action(async (o) => {
      const { moduleStatus } = await import("../../core/module/manage.ts");
      const s = await moduleStatus();
      report(o.json, s, (d) =>
        [
          `module:    ${d.loaded ? "loaded" : "not loaded"}`,
          `version:   ${d.version ?? "-"}`,
          `abi:       ${d.abi ?? "-"} (this ppm: ${PPM_ABI_VERSION})`,
          `features:  ${d.features.join(", ") || "-"}`,
          `kernel:    ${d.kernel}`,
          `device:    ${d.device ? "/dev/ppm present" : "/dev/ppm absent"}`,
          `use count: ${d.useCount ?? "-"}`,
          `file:      ${d.moduleFile.path}${d.moduleFile.exists ? "" : " (not built)"}`,
        ].join("\n"));
    });

  return cmd as unknown as Command;
}
