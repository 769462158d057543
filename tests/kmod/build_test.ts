/**
 * The module builds with -Werror against Debian's 6.1 and 6.12 headers,
 * carries its modinfo, and every file of it is checkpatch --strict clean.
 */
import { join } from "node:path";
import { ensurePackages } from "../../core/host/packages.ts";
import { run } from "../../core/host/run.ts";
import { buildModule } from "../../core/module/build.ts";
import { readVermagic } from "../../core/module/manage.ts";
import { KMOD_SRC } from "../../core/paths.ts";
import { ensureKernel } from "../../core/vcluster/kernels.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { checkpatchPath } from "../support/checkpatch.ts";
import { TEST_PACKAGES } from "../support/packages.ts";

for (const line of ["6.1", "6.12"] as const) {
  Deno.test(`kmod: builds with -Werror for the ${line} kernel and carries modinfo`, async () => {
    await ensurePackages(TEST_PACKAGES.kmod, "building the module");
    const k = await ensureKernel(line, (s) => console.error(`  ${s}`));
    const out = await Deno.makeTempDir({ prefix: `ppm-kmod-${line}-` });
    try {
      const r = await buildModule({ kernelRelease: k.release, outDir: out });
      assertEquals(r.release, k.release);
      assertEquals((await readVermagic(r.path))?.split(" ")[0], k.release);
      const kbuild = await Deno.readTextFile(join(KMOD_SRC, "Kbuild"));
      assertMatch(kbuild, /-Werror/);
      const info = await run("modinfo", ["-F", "description", r.path]);
      assertMatch(info.stdout, /process migration/);
      for (const field of ["version", "license", "author", "ppm_abi"]) {
        const f = await run("modinfo", ["-F", field, r.path]);
        assert(f.stdout.trim().length > 0, `modinfo ${field} is empty`);
      }
      // Built again from the same sources: the module is kept, not rebuilt.
      const before = (await Deno.stat(r.path)).mtime?.getTime();
      await buildModule({ kernelRelease: k.release, outDir: out });
      assertEquals((await Deno.stat(r.path)).mtime?.getTime(), before, "rebuilt needlessly");
      // Another module file in its place (an older ppm's build there): built again.
      await Deno.writeTextFile(r.path, "not the module built from these sources");
      await buildModule({ kernelRelease: k.release, outDir: out });
      assertEquals((await readVermagic(r.path))?.split(" ")[0], k.release, "not rebuilt");
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  });
}

Deno.test("kmod: every file is checkpatch.pl --strict clean", async () => {
  const script = await checkpatchPath();
  const files: string[] = [];
  for (const sub of ["", "uapi"]) {
    for await (const e of Deno.readDir(join(KMOD_SRC, sub))) {
      if (e.isFile && /\.[ch]$/.test(e.name)) files.push(join(sub, e.name));
    }
  }
  assert(files.length >= 3);
  const r = await run("perl", [
    script,
    "--strict",
    "--no-tree",
    "--terse",
    "--show-types",
    "-f",
    ...files.sort(),
  ], {
    cwd: KMOD_SRC,
  });
  assertEquals(r.stdout.trim(), "", `checkpatch findings:\n${r.stdout}`);
  assertEquals(r.code, 0, r.stderr);
});
