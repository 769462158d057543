/**
 * `ppm check`: each check's outcome from the facts it sees, and the whole
 * report's verdict (warnings pass, a failure does not).
 */
import type { DiscoveryStatus } from "../../core/discovery/service.ts";
import type { ModuleStatus } from "../../core/module/manage.ts";
import { type CheckDeps, renderChecks, runChecks } from "../../core/preflight/check.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { ppm } from "../support/cli.ts";

const MODULE: ModuleStatus = {
  loaded: true,
  abi: 4,
  toolAbi: 4,
  version: "0.4.0",
  kernel: "6.1.0-57-amd64",
  features: ["info", "redirect"],
  device: true,
  useCount: 1,
  moduleFile: { path: "/var/lib/ppm/kmod/6.1.0-57-amd64/ppm.ko", exists: true },
};

function peers(list: { name: string; state: "alive" | "stale"; abi: number }[]): DiscoveryStatus {
  return {
    self: { name: "node1", addresses: ["10.77.0.1"], abi: 4 },
    peers: list,
  } as unknown as DiscoveryStatus;
}

function deps(over: Partial<CheckDeps> = {}): CheckDeps {
  return {
    uid: 0,
    module: () => Promise.resolve(MODULE),
    peers: () => Promise.resolve(peers([{ name: "node2", state: "alive", abi: 4 }])),
    secret: () => Promise.resolve(),
    readProc: (p) => Promise.resolve(p.endsWith("pid_max") ? "4194304\n" : ""),
    exists: () => Promise.resolve(true),
    processCount: () => Promise.resolve(120),
    ...over,
  };
}

const level = async (d: CheckDeps, name: string, minPeers?: number) =>
  (await runChecks(d, { minPeers })).checks.find((c) => c.name === name)?.level;

Deno.test("ppm check: a ready node passes every check", async () => {
  const r = await runChecks(deps());
  assert(r.ok, renderChecks(r));
  assertEquals(r.checks.map((c) => c.level), r.checks.map(() => "ok"));
  assertEquals(r.checks.map((c) => c.name), [
    "kernel",
    "privilege",
    "module",
    "secret",
    "agent",
    "peers",
    "pids",
  ]);
  assertMatch(renderChecks(r), /this node is ready for ppm$/);
});

Deno.test("ppm check: each missing piece fails with its fix", async () => {
  const cases: [Partial<CheckDeps>, string, RegExp][] = [
    [
      { exists: (p) => Promise.resolve(!p.includes("ns_last_pid")) },
      "kernel",
      /CHECKPOINT_RESTORE/,
    ],
    [{ module: () => Promise.resolve({ ...MODULE, loaded: false }) }, "module", /modprobe ppm/],
    [
      {
        module: () =>
          Promise.resolve({ ...MODULE, loaded: false, moduleFile: { path: "x", exists: false } }),
      },
      "module",
      /--build/,
    ],
    [{ module: () => Promise.resolve({ ...MODULE, device: false }) }, "module", /devtmpfs/],
    [{ module: () => Promise.resolve({ ...MODULE, abi: 3 }) }, "module", /unload/],
    [{ secret: () => Promise.reject(new Error("no secret")) }, "secret", /secret generate/],
    [{ peers: () => Promise.reject(new Error("no agent listens")) }, "agent", /systemctl/],
    [{ peers: () => Promise.resolve(peers([])) }, "peers", /same secret/],
    [
      { peers: () => Promise.resolve(peers([{ name: "n2", state: "stale", abi: 4 }])) },
      "peers",
      /multicast/,
    ],
    [{ processCount: () => Promise.resolve(3_000_000) }, "pids", /pid_max/],
  ];
  for (const [over, name, fix] of cases) {
    const r = await runChecks(deps(over));
    const c = r.checks.find((x) => x.name === name)!;
    assertEquals([r.ok, c.level], [false, "fail"], `${name}: ${renderChecks(r)}`);
    assertMatch(c.fix, fix);
  }
});

Deno.test("ppm check: warnings pass; --min-peers 0 for a single node", async () => {
  assertEquals(await level(deps({ uid: 1000 }), "privilege"), "warn");
  assertEquals(
    await level(deps({ readProc: () => Promise.resolve("32768") }), "pids"),
    "warn",
  );
  assertEquals(
    await level(
      deps({ module: () => Promise.resolve({ ...MODULE, features: ["info"] }) }),
      "module",
    ),
    "warn",
  );
  const mixed = deps({
    peers: () =>
      Promise.resolve(
        peers([{ name: "n2", state: "alive", abi: 4 }, { name: "n3", state: "alive", abi: 5 }]),
      ),
  });
  assertEquals(await level(mixed, "peers"), "warn");
  assert((await runChecks(mixed)).ok);
  const alone = deps({ peers: () => Promise.resolve(peers([])) });
  assertEquals(await level(alone, "peers", 0), "ok");
});

Deno.test("ppm check: exit 1 with the reasons, JSON under --json; usage errors exit 2", async () => {
  const env = { PPM_STATE_DIR: "/nonexistent/ppm-check" };
  const r = await ppm(["check", "--json", "--control-socket", "/nonexistent/ppm.sock"], env);
  assertEquals(r.code, 1, r.stderr);
  const j = JSON.parse(r.stdout);
  assertEquals(j.ok, false);
  assertEquals(j.checks.find((c: { name: string }) => c.name === "agent").level, "fail");
  const bad = await ppm(["check", "--min-peers", "x"]);
  assertEquals(bad.code, 2, bad.stderr);
});
