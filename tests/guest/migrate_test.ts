/**
 * Migration between two 6.1 guests running `ppm daemon`: peers find each
 * other, a process moves while it runs and its output keeps reaching the
 * file it wrote on the source, with no gap and no repeat; a refused
 * migration leaves it running on the source; a wrong secret is refused.
 */
import { join } from "node:path";
import { stateDir } from "../../core/paths.ts";
import { generateSecret } from "../../core/security/secret.ts";
import { guestPath } from "../../core/vcluster/spec.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { withCluster } from "../support/cluster.ts";
import { buildPrograms } from "../support/programs.ts";

/** Checks that the tick lines of `out` run 0, 1, 2, ... with no gap and no repeat. */
function assertContinuous(out: string, upTo: number) {
  const ticks = out.split("\n").filter((l) => l.startsWith("tick ")).map((l) =>
    Number(l.split(" ")[1])
  );
  ticks.forEach((t, i) => assertEquals(t, i, `tick ${i} is ${t}: a gap or a repeat`));
  assert(ticks.length >= upTo, `only ${ticks.length} ticks`);
}

Deno.test({
  name: "guest 6.1: ppm daemon on two nodes, ppm migrate with output relayed back",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const bin = guestPath((await buildPrograms(join(stateDir(), "test-programs"))).heap_counter);
    const secret = join(stateDir(), "test-secret");
    await Deno.remove(secret).catch(() => {});
    await generateSecret(secret);
    await withCluster({ name: "tmig", nodes: 2, kernel: "6.1", memory: 1536 }, async (c) => {
      for (const n of [1, 2]) {
        assertEquals((await c.ppm(n, ["module", "load"])).code, 0);
        await c.ok(n, [
          "sh",
          "-c",
          `ppm daemon --secret-file ${guestPath(secret)} --interface eth0 --node-name node${n} ` +
          `--announce-interval 0.5 > /tmp/agent.log 2>&1 &`,
        ]);
      }

      await t.step("each node's ppm peers lists the other", async () => {
        for (const [n, other] of [[1, "node2"], [2, "node1"]] as const) {
          await c.waitFor(n, `ppm peers --json 2>/dev/null | grep -q '"name": "${other}"'`, 180);
          const st = JSON.parse(await c.ok(n, ["ppm", "peers", "--json"]));
          const p = st.peers.find((x: { name: string }) => x.name === other);
          assertEquals([p.state, p.abi], ["alive", 1]);
        }
      });

      await t.step(
        "a running process moves to node2; its output continues in node1's file, no gap or repeat",
        async () => {
          const pid =
            (await c.ok(1, ["sh", "-c", `cd /tmp; ${bin} 300 > /tmp/hc.out 2>&1 & echo $!`]))
              .trim();
          await c.waitFor(1, "grep -q '^tick 10 ' /tmp/hc.out", 120);
          const r = await c.ppm(1, ["migrate", pid, "--to", "node2", "--json"], 300_000);
          assertEquals(r.code, 0, r.stderr);
          const m = JSON.parse(r.stdout);
          assertEquals(String(m.pid), pid);
          console.log(
            `  migrated: frozen ${(m.timesUs.frozen / 1000).toFixed(0)} ms, ${m.bytes} bytes`,
          );
          // The source's copy is gone (a killed process may take a moment to be reaped).
          await c.waitFor(1, `! kill -0 ${pid} 2>/dev/null`, 30);
          assertEquals(
            (await c.exec(2, ["kill", "-0", pid])).code,
            0,
            "the process does not run on node2",
          );
          await c.waitFor(1, "grep -q '^ok heap_counter' /tmp/hc.out", 300);
          assertContinuous(await c.ok(1, ["cat", "/tmp/hc.out"]), 300);
          const ps1 = JSON.parse(await c.ok(1, ["ppm", "ps", "--json"]));
          assertEquals(ps1[0].current, { node: "node2", pid: Number(pid) });
          const ps2 = JSON.parse(await c.ok(2, ["ppm", "ps", "--json"]));
          assertEquals([ps2[0].direction, ps2[0].origin.node], ["arrived", "node1"]);
        },
      );

      await t.step(
        "a refused migration (file missing at the destination) leaves the process running at the source",
        async () => {
          await c.ok(1, ["cp", bin, "/tmp/local-hc"]);
          const pid =
            (await c.ok(1, ["sh", "-c", "cd /tmp; /tmp/local-hc 200 > /tmp/lc.out 2>&1 & echo $!"]))
              .trim();
          try {
            await c.waitFor(1, "grep -q '^tick 5 ' /tmp/lc.out", 120);
            const r = await c.ppm(1, ["migrate", pid, "--to", "node2"], 300_000);
            assertEquals(r.code, 1, r.stdout);
            assertMatch(r.stderr, /runs on here/);
            assertMatch(r.stderr, /local-hc does not exist/);
            assertEquals((await c.exec(1, ["kill", "-0", pid])).code, 0, "the process was lost");
            await c.waitFor(1, "grep -q '^ok heap_counter' /tmp/lc.out", 300);
            assertContinuous(await c.ok(1, ["cat", "/tmp/lc.out"]), 200);
          } finally {
            await c.exec(1, ["kill", pid]);
          }
        },
      );

      await t.step("a connection with the wrong secret is refused and logged", async () => {
        const r = await c.deno(
          2,
          "tests/guest/support/wrong_secret.ts",
          ["node1", "7378"],
          120_000,
        );
        assertEquals(r.code, 0, r.stdout + r.stderr);
        assert(JSON.parse(r.stdout.trim().split("\n").at(-1)!).refused);
        await c.waitFor(1, "grep -q 'refused a connection' /tmp/agent.log", 30);
      });
    });
  },
});
