/**
 * A guest booted with systemd as PID 1 (`init: "systemd"`): systemd really
 * manages it, as the tests that run the ppm agent as a unit and Slurm need:
 * the boot finishes, cgroup v2, journald, transient scopes (systemd-run and
 * D-Bus StartTransientUnit through busctl), transient and installed
 * services started, restarted and stopped.
 */
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { withCluster } from "../support/cluster.ts";

/** Units the later tests rely on: none of them may fail. */
const NEEDED = [
  "ppm-guest-agent.service",
  "sysinit.target",
  "basic.target",
  "sockets.target",
  "systemd-journald.service",
  "systemd-journald.socket",
  "dbus.socket",
];

Deno.test({
  name: "guest 6.1 with systemd: boots, and manages services, scopes and cgroups",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const t0 = performance.now();
    await withCluster(
      { name: "tsd", nodes: 1, kernel: "6.1", memory: 1024, init: "systemd" },
      async (c) => {
        console.error(`  [tsd] up in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
        const sh = (script: string, timeoutMs?: number) =>
          c.exec(1, ["sh", "-c", script], timeoutMs);
        const ok = (script: string, timeoutMs?: number) => c.ok(1, ["sh", "-c", script], timeoutMs);

        await t.step("PID 1 is systemd; the agent runs as its service", async () => {
          assertEquals((await ok("cat /proc/1/comm")).trim(), "systemd");
          assertMatch(await ok("cat /proc/self/cgroup"), /^0::\/.*ppm-guest-agent\.service$/m);
          assertEquals((await ok("hostname")).trim(), "node1");
          assertMatch(await ok("ip -o -4 addr show dev eth0"), /10\.77\.0\.1\/24/);
          assertMatch((await ok("command -v ppm")).trim(), /\/ppm$/);
        });

        await t.step(
          "the boot finished: running or degraded, with nothing needed failed",
          async () => {
            const r = await sh("systemctl is-system-running --wait", 120_000);
            const state = r.stdout.trim();
            assert(state === "running" || state === "degraded", `system state: ${state}`);
            if (state === "degraded") {
              console.error(
                `  [tsd] degraded; failed units:\n${await ok(
                  "systemctl --no-pager --plain --no-legend --failed",
                )}`,
              );
            }
            const active = await sh(`systemctl is-active ${NEEDED.join(" ")}`);
            const states = active.stdout.trim().split("\n");
            const bad = NEEDED.filter((_, k) => states[k] !== "active");
            assertEquals(bad, [], `not active: ${bad.join(", ")}\n${active.stdout}`);
            assertEquals((await ok("stat -fc %T /sys/fs/cgroup")).trim(), "cgroup2fs");
          },
        );

        await t.step("journald takes messages", async () => {
          await ok("echo ppm-journal-check | systemd-cat -t tsdcheck");
          await c.waitFor(
            1,
            "journalctl -b -t tsdcheck --no-pager | grep -q ppm-journal-check",
            20,
          );
        });

        await t.step("systemd-run --scope puts the command in its own scope", async () => {
          const out = await ok(
            "systemd-run --quiet --scope --unit=t1 sh -c " +
              `'cg=$(cut -d: -f3 /proc/self/cgroup); echo "$cg"; ` +
              `grep -qx $$ /sys/fs/cgroup$cg/cgroup.procs && echo listed; sleep 1'`,
            60_000,
          );
          const [cg, listed] = out.trim().split("\n");
          assertMatch(cg, /^\/(.+\/)?t1\.scope$/);
          assertEquals(listed, "listed");
          await c.waitFor(1, "! systemctl is-active -q t1.scope", 20);
        });

        await t.step("D-Bus StartTransientUnit (busctl) moves a process into a scope", async () => {
          const out = await ok(
            "sleep 60 & pid=$!; " +
              "busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 " +
              "org.freedesktop.systemd1.Manager StartTransientUnit 'ssa(sv)a(sa(sv))' " +
              `t3.scope fail 1 PIDs au 1 $pid 0 >/dev/null || exit 1; ` +
              "n=0; while ! grep -q t3.scope /proc/$pid/cgroup && [ $n -lt 100 ]; do " +
              "sleep 0.1; n=$((n+1)); done; cat /proc/$pid/cgroup; kill $pid",
            60_000,
          );
          assertMatch(out, /^0::\/(.+\/)?t3\.scope$/m);
          await c.waitFor(1, "! systemctl is-active -q t3.scope", 20);
        });

        await t.step("a transient service starts and stops", async () => {
          await ok("systemd-run --quiet --unit=t2 sleep 30", 60_000);
          await c.waitFor(1, "systemctl is-active -q t2.service", 20);
          const pid = (await ok("systemctl show -P MainPID t2.service")).trim();
          assert(Number(pid) > 1, `MainPID ${pid}`);
          assertMatch(await ok(`cat /proc/${pid}/cgroup`), /t2\.service$/m);
          await ok("systemctl stop t2.service", 60_000);
          const r = await sh("systemctl is-active t2.service");
          assert(r.code !== 0, `t2 still ${r.stdout.trim()}`);
          assert((await sh(`kill -0 ${pid}`)).code !== 0, "the sleep survived systemctl stop");
        });

        await t.step(
          "an installed unit starts, restarts with a new process, and stops",
          async () => {
            await ok(
              "printf '%s\\n' '[Unit]' 'Description=tsd demo' '[Service]' " +
                "'ExecStart=/bin/sleep 600' > /etc/systemd/system/tsd-demo.service && " +
                "systemctl daemon-reload && systemctl start tsd-demo",
              90_000,
            );
            const p1 = (await ok("systemctl show -P MainPID tsd-demo")).trim();
            await ok("systemctl restart tsd-demo", 60_000);
            const p2 = (await ok("systemctl show -P MainPID tsd-demo")).trim();
            assert(Number(p1) > 1 && Number(p2) > 1 && p1 !== p2, `MainPID ${p1} then ${p2}`);
            await ok("systemctl stop tsd-demo", 60_000);
            assert(
              (await sh("systemctl is-active -q tsd-demo")).code !== 0,
              "tsd-demo still active",
            );
          },
        );
      },
    );
  },
});
