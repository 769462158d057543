/**
 * The Debian packages in a fresh guest, as an admin installs them: dpkg
 * installs ppm-dkms (Debian's dkms builds the module for the guest's kernel)
 * and ppm; `modprobe ppm` loads the DKMS module; the packaged ppm (from
 * /usr/bin, not this tree) starts its agent and `ppm check` passes.
 */
import { join } from "node:path";
import { ensurePackages } from "../../core/host/packages.ts";
import { stateDir } from "../../core/paths.ts";
import { VERSION } from "../../core/version.ts";
import { guestPath } from "../../core/vcluster/spec.ts";
import { buildCliPackage, buildDkmsPackage } from "../../packaging/package.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { withCluster } from "../support/cluster.ts";

Deno.test({
  name:
    "guest 6.1: the ppm and ppm-dkms packages install, DKMS builds the module, ppm check passes",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    await ensurePackages(["dkms"], "the package test (Debian's dkms, seen by the guests)");
    const out = join(stateDir(), "test-packages");
    await Deno.remove(out, { recursive: true }).catch(() => {});
    await Deno.mkdir(out, { recursive: true });
    const debs = [
      await buildDkmsPackage(out, VERSION, "none"),
      await buildCliPackage(out, VERSION, "none"),
    ];
    try {
      await withCluster(
        { name: "tpkg", nodes: 1, kernel: "6.1", memory: 1536, init: "systemd" },
        async (c) => {
          const kver = (await c.ok(1, ["uname", "-r"])).trim();
          await t.step(
            "dpkg installs both; DKMS builds ppm.ko for the guest's kernel",
            async () => {
              // Only the guest's own kernel keeps its headers: under TCG each DKMS build takes
              // minutes, and the other kernel's would be the same build again.
              await c.ok(1, [
                "sh",
                "-c",
                'for k in /lib/modules/*; do [ "${k##*/}" = "$(uname -r)" ] || rm -f "$k/build"; done',
              ]);
              const t0 = Date.now();
              const r = await c.exec(1, ["dpkg", "-i", ...debs.map(guestPath)], 1_200_000);
              assertEquals(r.code, 0, `${r.stdout}\n${r.stderr}`);
              console.log(
                `  dpkg -i (with the DKMS build): ${((Date.now() - t0) / 1000).toFixed(0)} s`,
              );
              const status = await c.ok(1, ["dkms", "status", "ppm"]);
              assertMatch(
                status,
                new RegExp(`ppm/${VERSION.replaceAll(".", "\\.")}, ${kver}, .*installed`),
              );
              await c.ok(1, ["test", "-f", `/lib/modules/${kver}/updates/dkms/ppm.ko`]);
            },
          );

          await t.step("modprobe ppm loads it; the packaged ppm sees it", async () => {
            await c.ok(1, ["modprobe", "ppm"]);
            const s = JSON.parse(
              await c.ok(1, ["/usr/bin/ppm", "module", "status", "--json"], 300_000),
            );
            assertEquals([s.loaded, s.device, s.abi === s.toolAbi], [true, true, true]);
          });

          await t.step("the packaged agent starts and ppm check passes", async () => {
            await c.ok(1, ["/usr/bin/ppm", "secret", "generate", "-o", "/etc/ppm/secret"], 300_000);
            await c.ok(1, [
              "sh",
              "-c",
              "/usr/bin/ppm daemon --node-name node1 > /tmp/agent.log 2>&1 < /dev/null &",
            ]);
            await c.waitFor(1, "test -S /run/ppm/ppm.sock", 300);
            const r = await c.exec(
              1,
              ["/usr/bin/ppm", "check", "--min-peers", "0", "--json"],
              300_000,
            );
            const j = JSON.parse(r.stdout);
            const shown = j.checks.map((x: { name: string; level: string; detail: string }) =>
              `${x.level} ${x.name}: ${x.detail}`
            ).join("\n");
            console.log(shown.replace(/^/gm, "  "));
            assertEquals(r.code, 0, shown);
            assert(j.ok, shown);
          });
        },
      );
    } finally {
      await Deno.remove(out, { recursive: true }).catch(() => {});
    }
  },
});
