/**
 * The balancing commands without an agent: parsing and usage errors, the
 * `balance` config object, `ppm run`'s exit code, and the text of
 * `ppm balance --once` and `ppm ps` for real records of the policy.
 */
import { Balancer } from "../../core/agent/balancer.ts";
import { ProcessTable } from "../../core/agent/processes.ts";
import { resolveBalanceConfig } from "../../core/balance/settings.ts";
import { EXIT, PpmError } from "../../core/errors.ts";
import { renderPs, renderReport } from "../../cli/balance_text.ts";
import { runExitCode } from "../../cli/commands/run.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "../support/assert.ts";
import { ppm } from "../support/cli.ts";

Deno.test("balance cli: usage errors exit 2 (125 for ppm run); no agent fails before anything starts", async () => {
  const sock = ["--control-socket", "/nonexistent/ppm.sock"];
  for (
    const args of [
      ["balance", ...sock],
      ["manage", "abc", ...sock],
      ["unmanage", "0", ...sock],
      ["drain", "--timeout", "-1", ...sock],
    ]
  ) {
    const r = await ppm(args);
    assertEquals(r.code, EXIT.USAGE, `ppm ${args.join(" ")}: ${r.stderr}`);
  }
  // ppm run keeps 125 for its own failures, so that a command's own codes stay its own.
  const usage = await ppm(["run", ...sock]);
  assertEquals(usage.code, EXIT.RUN_FAILED, usage.stderr);
  const marker = await Deno.makeTempFile();
  await Deno.remove(marker);
  const r = await ppm(["run", ...sock, "--", "touch", marker]);
  assertEquals(r.code, EXIT.RUN_FAILED, r.stderr);
  assertMatch(r.stderr, /cannot reach the ppm agent/);
  assert(!(await Deno.stat(marker).then(() => true, () => false)), "the command ran anyway");
  const help = await ppm(["run", "--help"]);
  assertMatch(help.stdout, /Usage: ppm run \[options\] -- <command> \[args\.\.\.\]/);
  const daemon = await ppm(["daemon", "--help"]);
  assertMatch(daemon.stdout, /--balance/);
});

Deno.test("balance cli: the balance object of the config: enabled and the settings", () => {
  assertEquals(resolveBalanceConfig(undefined).enabled, false);
  const c = resolveBalanceConfig({ enabled: true, interval: 0.5, minResidency: "30" });
  assertEquals([c.enabled, c.settings.interval, c.settings.minResidency, c.settings.speed], [
    true,
    0.5,
    30,
    1,
  ]);
  for (const bad of [{ enabled: "yes" }, { intervall: 1 }, { speed: 0 }, []]) {
    assertThrows(
      () => resolveBalanceConfig(bad),
      (e) => e instanceof PpmError && e.exitCode === EXIT.USAGE,
    );
  }
});

Deno.test("balance cli: ppm run's exit code, here or after the process moved", () => {
  const exit = (e: { code?: number; signal?: number }) => ({ ...e, node: "n2", at: "t" });
  const killed = { code: 137, signal: "SIGKILL" };
  assertEquals(runExitCode({ code: 3, signal: null }, null), { code: 3 });
  assertEquals(runExitCode(killed, { state: "here" }), { code: 137 });
  assertEquals(runExitCode(killed, { state: "unknown" }), { code: 137 });
  assertEquals(runExitCode(killed, { state: "exited", exit: exit({ code: 4 }) }), { code: 4 });
  assertEquals(runExitCode(killed, { state: "exited", exit: exit({ signal: 15 }) }), { code: 143 });
  const unknown = runExitCode(killed, { state: "exited", exit: exit({}) });
  assertEquals(unknown.code, EXIT.RUN_FAILED);
  const lost = runExitCode(killed, { state: "ended", node: "n2" });
  assertEquals(lost.code, EXIT.RUN_FAILED);
  assertMatch(lost.note!, /did not come back/);
});

Deno.test("balance cli: the text of a round and of ppm ps shows loads, cost, benefit and why", async () => {
  const GiB = 2 ** 30;
  const now = 1000;
  const b = new Balancer({
    node: "n1",
    settings: resolveBalanceConfig({}).settings,
    enabled: true,
    now: () => now,
    sample: () =>
      Promise.resolve({
        at: now,
        runnable: 6,
        cpus: 1,
        speed: 1,
        loadavg: [6, 6, 6] as [number, number, number],
        memTotal: 4 * GiB,
        memAvailable: 3 * GiB,
      }),
    peers: () =>
      ["n2", "n3"].map((id) => ({
        id,
        load: 0,
        cpus: 1,
        speed: 1,
        memTotal: 4 * GiB,
        memAvailable: 3 * GiB,
        drain: false,
        at: now - 0.5,
      })),
    processes: () =>
      Promise.resolve([1, 2, 3, 4, 5, 6].map((pid) => ({
        pid,
        managed: pid !== 6,
        demand: 1,
        memory: 8 << 20,
        startedAt: 900,
        arrivedAt: 900,
        moves: 0,
      }))),
    move: (pid) => Promise.resolve({ pid }),
    draining: () => false,
    incoming: () => ({ load: 0, memory: 0 }),
    log: () => {},
  });
  await b.measure();
  const r = await b.round({ dryRun: true });
  const text = renderReport(r);
  assertMatch(text, /^n1 \(dry run\): overloaded: load 2\.25/);
  assertMatch(text, /n[23] +load 0\.00 expected [01]\.00 \(0\.50 s old\)/);
  assertMatch(text, /decision 1: process \d -> n[23] \(load\): would move/);
  assertMatch(text, /margin: 0\.00 \+ 1\.3 × 1\.00 = 1\.30 < 2\.25/);
  assertMatch(text, /cost: [\d.]+ CPU-s \([\d.]+ s to send 8\.0 MiB\)/);
  assertMatch(text, /benefit: [\d.]+ CPU-s \(rate 0\.44 -> 1\.00 over 100\.00 s\); ratio/);
  assertMatch(text, /candidates:\n +\d +8\.0 MiB net +[\d.]+ CPU-s +chosen/);
  assertMatch(text, /not candidates: 1 unmanaged/);

  const t = new ProcessTable("n1", () => now);
  t.manage({ pid: 1, name: "job", startedAt: 900, startTicks: 1, by: "run" });
  const d = r.decisions[0];
  t.left(1, d.to, 1, { kind: "balance", mode: d.mode, record: d.record }, "job");
  const ps = renderPs(t.list());
  assertMatch(ps, /^n1:1 -> n[23]:1 {2}left +managed {2}job {2}moves 1/);
  assertMatch(ps, /moved by the balancer \(load\)/);
  assertMatch(ps, /margin: 0\.00 \+ 1\.3/);
  assertEquals(renderPs([]), "no managed or migrated processes");
});
