/**
 * `deno task package`: the two Debian packages hold what they must (DKMS
 * source with its dkms.conf; the CLI that runs on its own, the unit, the
 * completions, the man page from --help, the built restore stub, relay
 * keeper, deputy and page stream helper with their sources), with maintainer scripts that use Debian's own dkms
 * and systemd helpers.
 */
import { dirname, join, relative } from "node:path";
import { gunzipSync } from "node:zlib";
import { roffEscape } from "../../packaging/manpage.ts";
import { buildCliPackage, buildDkmsPackage, dkmsConf, HELPERS } from "../../packaging/package.ts";
import { helperName } from "../../core/host/helper_binary.ts";
import { PROJECT_ROOT } from "../../core/paths.ts";
import { VERSION } from "../../core/version.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

async function run(cmd: string, args: string[], env: Record<string, string> = {}) {
  const r = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

Deno.test("package: dkms.conf builds ppm.ko out of tree into updates/dkms, for every kernel", () => {
  const c = dkmsConf("1.2.3");
  assertMatch(c, /^PACKAGE_NAME="ppm"$/m);
  assertMatch(c, /^PACKAGE_VERSION="1\.2\.3"$/m);
  assertMatch(c, /^BUILT_MODULE_NAME\[0\]="ppm"$/m);
  assertMatch(c, /^DEST_MODULE_LOCATION\[0\]="\/updates\/dkms"$/m);
  assertMatch(c, /^AUTOINSTALL="yes"$/m);
  assertMatch(c, /^MAKE\[0\]="make -C \$\{kernel_source_dir\} M=/m);
});

Deno.test("package: the man page escapes roff syntax in help texts", () => {
  assertEquals(roffEscape(".TH evil\n'x\na\\b"), "\\&.TH evil\n\\&'x\na\\eb");
});

Deno.test({
  name: "package: ppm-dkms and ppm hold what they must; the packaged CLI runs on its own",
  sanitizeResources: false,
  fn: async () => {
    const out = await Deno.makeTempDir({ prefix: "ppm-pkg-" });
    try {
      const dkms = await buildDkmsPackage(out, VERSION, "none");
      const info = await run("dpkg-deb", ["-I", dkms]);
      assertMatch(info.stdout, /Package: ppm-dkms/);
      assertMatch(info.stdout, /Depends: dkms/);
      const files = (await run("dpkg-deb", ["-c", dkms])).stdout;
      for (const f of ["dkms.conf", "Kbuild", "ppm_main.c", "uapi/ppm.h"]) {
        assert(files.includes(`./usr/src/ppm-${VERSION}/${f}`), `${f} missing:\n${files}`);
      }
      const x = join(out, "x-dkms");
      await run("dpkg-deb", ["-e", dkms, x]);
      assertMatch(
        await Deno.readTextFile(join(x, "postinst")),
        /\/usr\/lib\/dkms\/common\.postinst ppm/,
      );

      const cli = await buildCliPackage(out, VERSION, "none");
      const root = join(out, "root");
      assertEquals((await run("dpkg-deb", ["-x", cli, root])).code, 0);
      const c = await run("dpkg-deb", ["-I", cli]);
      assertMatch(c.stdout, /Package: ppm\n/);
      assertMatch(c.stdout, /Recommends: ppm-dkms/);
      const unit = await Deno.readTextFile(join(root, "lib/systemd/system/ppm.service"));
      assertMatch(unit, /^Type=notify$/m);
      assertMatch(unit, /^ExecStartPre=-\/sbin\/modprobe ppm$/m);
      assert(!/NoNewPrivileges|PrivateTmp|ProtectSystem|SystemCallFilter/.test(unit), unit);
      const man = new TextDecoder().decode(
        gunzipSync(await Deno.readFile(join(root, "usr/share/man/man8/ppm.8.gz"))),
      );
      assertMatch(man, /^\.TH PPM 8 /);
      for (const cmd of ["ppm migrate", "ppm check", "ppm daemon", "ppm config show"]) {
        assert(man.includes(`.SS "${cmd}"`), `${cmd} missing from the man page`);
      }
      assertMatch(
        await Deno.readTextFile(join(root, "usr/share/bash-completion/completions/ppm")),
        /complete .*ppm/,
      );
      // Each helper: its source and every header its name hashes, where the packaged ppm looks,
      // and the helper built under the name those files give (else the agent cannot start it).
      assertEquals(HELPERS.length, 4);
      for (const h of HELPERS) {
        const at = (f: string) => join(root, "usr/lib/ppm", relative(PROJECT_ROOT, f));
        const shipped = { ...h, src: at(h.src), headers: (h.headers ?? []).map(at) };
        const name = await helperName(shipped).catch((e) => `${h.what}: ${e}`);
        const built = join(dirname(shipped.src), name);
        assert((await Deno.stat(built).catch(() => null))?.isFile, `${built} is not shipped`);
      }
      // The packaged CLI needs nothing from this tree or the network.
      const lib = join(root, "usr/lib/ppm");
      const js = join(lib, "js", "main.js");
      const argv = (await Deno.stat(js).catch(() => null))
        ? [join(lib, "deno"), ["run", "-A", "--no-config", "--no-lock", js]] as const
        : [join(lib, "ppm"), []] as const;
      const v = await run(argv[0], [...argv[1], "--version"], {
        PPM_ROOT: lib,
        DENO_DIR: join(out, "denodir"),
        HOME: out,
      });
      assertEquals(v.code, 0, v.stderr);
      assertEquals(
        v.stdout.trim(),
        `ppm ${VERSION} (ABI ${(/ABI (\d+)/.exec(v.stdout) ?? [])[1]})`,
      );
      const check = await run(argv[0], [...argv[1], "check", "--help"], {
        PPM_ROOT: lib,
        HOME: out,
      });
      assertMatch(check.stdout, /--min-peers/);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});
