/**
 * ppm under systemd, in guests whose PID 1 is systemd: the packaged unit
 * (packaging/ppm.service) starts the agent with Type=notify; a process that
 * arrives leaves the agent's cgroup for a scope of its own; `systemctl
 * restart ppm` and `systemctl stop ppm` on the node it runs on leave it
 * running, and it keeps writing (an echo server whose client, on that node,
 * keeps streaming through it); a process whose output is relayed to the
 * node it came from keeps it going there through the restart and the stop,
 * every line once and in order (its keeper holds its FIFOs meanwhile, and
 * the next agent takes the relay up).
 */
import { join } from "node:path";
import { PROJECT_ROOT, stateDir } from "../../core/paths.ts";
import { generateSecret } from "../../core/security/secret.ts";
import { guestPath } from "../../core/vcluster/spec.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { highPids, type TestCluster, withCluster } from "../support/cluster.ts";
import { buildPrograms } from "../support/programs.ts";

const NODES = [1, 2];

/** Installs the unit with a drop-in for this guest's ppm and starts it; waits for READY. */
async function installUnit(c: TestCluster, n: number, secret: string): Promise<void> {
  const unit = guestPath(join(PROJECT_ROOT, "packaging", "ppm.service"));
  await c.ok(n, [
    "sh",
    "-c",
    `set -e; install -m 0644 ${unit} /etc/systemd/system/ppm.service; ` +
    "mkdir -p -m 0700 /etc/ppm /etc/systemd/system/ppm.service.d; " +
    `install -m 0600 ${guestPath(secret)} /etc/ppm/secret; ` +
    `printf '[Service]\\nExecStart=\\nExecStart=%s daemon --node-name node${n} --announce-interval 1\\n' ` +
    `"$(command -v ppm)" > /etc/systemd/system/ppm.service.d/test.conf; ` +
    "systemctl daemon-reload",
  ]);
  // Type=notify: start returns once the agent said READY=1 (its control socket is up).
  await c.ok(n, ["systemctl", "start", "ppm"], 300_000);
  assertEquals((await c.ok(n, ["systemctl", "is-active", "ppm"])).trim(), "active");
  await c.ok(n, ["test", "-S", "/run/ppm/ppm.sock"]);
}

async function ticks(c: TestCluster, n: number, out: string): Promise<number> {
  const r = await c.exec(n, ["sh", "-c", `grep -c '^tick ' ${out}`]);
  return Number(r.stdout.trim() || "0");
}

Deno.test({
  name: "guest 6.1 with systemd: the ppm unit; arrived processes survive agent restarts",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const progs = await buildPrograms(join(stateDir(), "test-programs"));
    const echo = guestPath(progs.echo_server), client = guestPath(progs.stream_client);
    const sleeper = guestPath(progs.sleeper);
    const secret = join(stateDir(), "test-secret-systemd");
    await Deno.remove(secret).catch(() => {});
    await generateSecret(secret);
    const spec = { name: "tsysd", nodes: 2, kernel: "6.1", memory: 1024, init: "systemd" } as const;
    await withCluster(spec, async (c) => {
      for (const n of NODES) assertEquals((await c.ppm(n, ["module", "load"])).code, 0);

      await t.step(
        "systemctl start ppm returns once the agent is ready (Type=notify)",
        async () => {
          for (const n of NODES) await installUnit(c, n, secret);
          const show = await c.ok(1, [
            "systemctl",
            "show",
            "-p",
            "Type,NotifyAccess,MainPID",
            "ppm",
          ]);
          assertMatch(show, /^Type=notify$/m);
          await c.waitFor(1, 'ppm peers --json | grep -q \'"name": "node2"\'', 120);
        },
      );

      let server = "", ticker = "";
      await t.step("a process that arrives runs in a scope of its own", async () => {
        // The server's output is /dev/null: nothing of it is relayed by the agents.
        server = (await c.ok(1, [
          "sh",
          "-c",
          `${highPids()}cd /tmp; ${echo} 7100 > /dev/null 2>&1 < /dev/null & echo $!`,
        ])).trim();
        await c.waitFor(1, "ss -ltn | grep -q ':7100 '", 60);
        await c.ok(2, [
          "sh",
          "-c",
          `cd /tmp; ${client} 10.77.0.1 7100 400 64 > /tmp/sc.out 2>&1 < /dev/null &`,
        ]);
        await c.waitFor(2, "grep -q '^tick 3 ' /tmp/sc.out", 120);
        const r = await c.ppm(1, ["migrate", server, "--to", "node2"], 300_000);
        assertEquals(r.code, 0, r.stderr);
        await c.waitFor(2, `kill -0 ${server}`, 30);
        await c.waitFor(
          2,
          `grep -q '/ppm-${server}-[0-9a-f]*\\.scope$' /proc/${server}/cgroup`,
          60,
        );
        assertMatch(
          await c.ok(2, ["systemctl", "status", "--no-pager", `ppm-${server}-*.scope`]),
          /ppm: process \d+ \(echo_server\) from node1/,
        );
        // A process whose output is relayed: its stdout is a file on node1.
        ticker = (await c.ok(1, [
          "sh",
          "-c",
          `${highPids()}cd /tmp; ${sleeper} 100000 > /tmp/tk.out 2> /tmp/tk.err < /dev/null & echo $!`,
        ])).trim();
        await c.waitFor(1, "grep -q '^tick 2 ' /tmp/tk.out", 60);
        const m = await c.ppm(1, ["migrate", ticker, "--to", "node2"], 300_000);
        assertEquals(m.code, 0, m.stderr);
        // Its relay keeper shares its scope.
        await c.waitFor(
          2,
          `for k in $(pgrep -x ppm-keeper); do grep -q "ppm-${ticker}-" /proc/$k/cgroup && ` +
            `grep -q "ppm-${ticker}-" /proc/${ticker}/cgroup && exit 0; done; exit 1`,
          60,
        );
      });

      await t.step("systemctl restart ppm, then stop: it runs on and keeps writing", async () => {
        const agentBefore =
          (await c.ok(2, ["systemctl", "show", "-p", "MainPID", "--value", "ppm"])).trim();
        await c.ok(2, ["systemctl", "restart", "ppm"], 300_000);
        const agentAfter = (await c.ok(2, ["systemctl", "show", "-p", "MainPID", "--value", "ppm"]))
          .trim();
        assert(agentAfter !== agentBefore && agentAfter !== "0", `${agentBefore} → ${agentAfter}`);
        await c.ok(2, ["kill", "-0", server]);
        let before = await ticks(c, 2, "/tmp/sc.out");
        await c.waitFor(2, `[ $(grep -c '^tick ' /tmp/sc.out) -ge ${before + 5} ]`, 120);
        await c.ok(2, ["systemctl", "stop", "ppm"], 120_000);
        await c.ok(2, ["kill", "-0", server]);
        before = await ticks(c, 2, "/tmp/sc.out");
        await c.waitFor(2, `[ $(grep -c '^tick ' /tmp/sc.out) -ge ${before + 5} ]`, 120);
        const out = await c.ok(2, ["cat", "/tmp/sc.out"]);
        assert(!/^FAIL/m.test(out), out.slice(-1500));
        // The relayed process waited for an agent (its output in its FIFO), and runs.
        await c.ok(2, ["kill", "-0", ticker]);
        const relayed = await ticks(c, 1, "/tmp/tk.out");
        await c.ok(2, ["systemctl", "start", "ppm"], 300_000);
        // The new agent takes its relay up: node1's file goes on, every line once, in order.
        await c.waitFor(1, `[ $(grep -c '^tick ' /tmp/tk.out) -ge ${relayed + 10} ]`, 180);
        const lines = (await c.ok(1, ["sh", "-c", "grep '^tick ' /tmp/tk.out | cut -d' ' -f2"]))
          .trim().split("\n").map(Number);
        assertEquals(lines, lines.map((_, i) => i), "tick lines lost, doubled or out of order");
        assertEquals((await c.ok(1, ["cat", "/tmp/tk.err"])).trim(), "");
        assertMatch(
          await c.ok(2, ["journalctl", "-u", "ppm", "--no-pager", "-o", "cat"]),
          /relay of process \d+ taken up again by node1/,
        );
        console.log(
          `  ${await ticks(
            c,
            2,
            "/tmp/sc.out",
          )} ticks; the server ran through a restart and a stop`,
        );
      });
    });
  },
});
