/**
 * The module on Debian's 6.1 kernel, in a two-node virtual cluster: load,
 * status, idempotent load, unload (refused while /dev/ppm is open), and the
 * private bridge between the nodes, and a SYN-only redirect drop. Also `ppm vcluster` itself: exec's exit
 * codes and streams, concurrent execs, background processes, status.
 */
import { PPM_ABI_VERSION } from "../../ffi/uapi.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { withCluster } from "../support/cluster.ts";
import { ppm } from "../support/cli.ts";

Deno.test({
  name: "guest 6.1: two nodes, module lifecycle and networking",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    await withCluster({ name: "t61", nodes: 2, kernel: "6.1", memory: 1024 }, async (c) => {
      await t.step("vcluster exec returns stdout, stderr and the exit code", async () => {
        const r = await c.exec(1, ["sh", "-c", "hostname; echo oops >&2; exit 7"]);
        assertEquals([r.code, r.stdout, r.stderr], [7, "node1\n", "oops\n"]);
        const r2 = await c.exec(2, ["uname", "-r"]);
        assertMatch(r2.stdout, /^6\.1\./);
      });

      await t.step("vcluster exec from the CLI, and status --json", async () => {
        const r = await ppm([
          "vcluster",
          "exec",
          "--name",
          "t61",
          "node2",
          "--",
          "sh",
          "-c",
          "hostname; exit 3",
        ]);
        assertEquals([r.code, r.stdout], [3, "node2\n"]);
        const s = await ppm(["vcluster", "status", "--name", "t61", "--json"]);
        assertEquals(s.code, 0, s.stderr);
        const st = JSON.parse(s.stdout)[0];
        assertEquals(st.up, true);
        assertEquals(st.nodes.map((n: { name: string }) => n.name), ["node1", "node2"]);
      });

      await t.step(
        "several execs run at once, and a background process outlives its exec",
        async () => {
          const waiter = c.exec(1, [
            "sh",
            "-c",
            "i=0; while [ ! -e /tmp/flag ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; [ -e /tmp/flag ] && echo seen",
          ]);
          await c.ok(1, ["touch", "/tmp/flag"]);
          assertEquals((await waiter).stdout, "seen\n");
          const pid = (await c.ok(1, ["sh", "-c", "sleep 120 >/dev/null 2>&1 & echo $!"])).trim();
          assertEquals(
            (await c.exec(1, ["kill", "-0", pid])).code,
            0,
            "background process died with its exec",
          );
          await c.ok(1, ["kill", pid]);
        },
      );

      await t.step(
        "the nodes reach each other over the private bridge (ICMP and TCP)",
        async () => {
          await c.ok(1, ["busybox", "ping", "-c", "2", "-W", "5", "node2"]);
          await c.ok(2, ["busybox", "ping", "-c", "2", "-W", "5", "10.77.0.1"]);
          const listener = c.exec(2, [
            "busybox",
            "timeout",
            "60",
            "busybox",
            "nc",
            "-l",
            "-p",
            "5555",
          ]);
          let sent = false;
          for (let i = 0; i < 50 && !sent; i++) {
            sent =
              (await c.exec(1, ["sh", "-c", "echo over-the-bridge | busybox nc -w 5 node2 5555"]))
                .code === 0;
            if (!sent) await new Promise((r) => setTimeout(r, 200));
          }
          assert(sent, "could not connect node1 -> node2:5555");
          assertEquals((await listener).stdout, "over-the-bridge\n");
        },
      );

      await t.step(
        "ppm module load, then status --json on each node reports the matching ABI",
        async () => {
          const loads = await Promise.all([1, 2].map((i) => c.ppm(i, ["module", "load"])));
          for (const r of loads) {
            assertEquals(r.code, 0, r.stderr);
            assertMatch(
              r.stdout,
              new RegExp(
                `ppm module loaded from .*ppm\\.ko \\(version \\S+, ABI ${PPM_ABI_VERSION}\\)`,
              ),
            );
          }
          const stats = await Promise.all(
            [1, 2].map((i) => c.ppm(i, ["module", "status", "--json"])),
          );
          for (const r of stats) {
            assertEquals(r.code, 0, r.stderr);
            const s = JSON.parse(r.stdout);
            assertEquals([s.loaded, s.abi, s.toolAbi, s.device], [
              true,
              PPM_ABI_VERSION,
              PPM_ABI_VERSION,
              true,
            ]);
            assertMatch(s.kernel, /^6\.1\./);
            assertMatch(s.version, /^\d+\.\d+\.\d+$/);
            assert(s.features.includes("info"));
            assertEquals(s.useCount, 0);
          }
          const file = JSON.parse(stats[0].stdout).moduleFile.path;
          const mi = await c.ok(1, [
            "sh",
            "-c",
            `for f in description version license author; do modinfo -F $f ${file}; done`,
          ]);
          const [desc, ver, lic, author] = mi.trim().split("\n");
          assertMatch(desc, /migration/);
          assertMatch(ver, /^\d+\.\d+\.\d+$/);
          assertEquals(lic, "GPL");
          assert(author.length > 0);
        },
      );

      await t.step("loading twice is idempotent", async () => {
        const r = await c.ppm(1, ["module", "load"]);
        assertEquals(r.code, 0, r.stderr);
        assertMatch(r.stdout, /already loaded/);
      });

      await t.step(
        "a SYN-only drop holds back new connections to a listener, not established ones",
        async () => {
          // What a listener's freeze installs before it waits for half-done handshakes.
          const r = await c.deno(
            1,
            "tests/guest/support/syn_drop.ts",
            ["10.77.0.1", "7601"],
            120_000,
          );
          assertEquals(r.code, 0, r.stdout + r.stderr);
          const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
          console.log(`  ${JSON.stringify(out)}`);
        },
      );

      await t.step("unload is refused while /dev/ppm is open, then works", async () => {
        const holder =
          (await c.ok(1, ["sh", "-c", "sleep 300 < /dev/ppm > /dev/null 2>&1 & echo $!"])).trim();
        try {
          const refused = await c.ppm(1, ["module", "unload"]);
          assertEquals(refused.code, 6, refused.stderr);
          assertMatch(refused.stderr, /in use/);
          assertEquals((await c.exec(1, ["test", "-e", "/sys/module/ppm"])).code, 0);
        } finally {
          await c.ok(1, ["kill", holder]);
        }
        let r = await c.ppm(1, ["module", "unload"]);
        for (let i = 0; i < 5 && r.code === 6; i++) r = await c.ppm(1, ["module", "unload"]);
        assertEquals(r.code, 0, r.stderr);
        const s = JSON.parse(await c.ok(1, ["ppm", "module", "status", "--json"]));
        assertEquals([s.loaded, s.device], [false, false]);
        assertMatch(await c.ok(1, ["dmesg"]), /ppm: unloaded/);
      });
    });
  },
});
