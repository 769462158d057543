/**
 * Discovery with real multicast, in network namespaces: three agents
 * (tests/support/discovery_agent.ts) on one bridge announce every 250 ms and
 * must see each other; an intruder with another secret and a replay of
 * captured packets from a fourth namespace must be ignored and counted; a
 * clean stop must be seen at once and a killed agent must expire after 3
 * intervals. All traffic stays inside the test's namespaces. Needs root;
 * skipped with a message otherwise.
 */
import { join } from "node:path";
import { PROJECT_ROOT } from "../../core/paths.ts";
import { generateSecret } from "../../core/security/secret.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { Netns, type NsProcess } from "../support/netns.ts";
import { netnsUnavailable } from "../support/netns.ts";

const INTERVAL = 250;
const AGENT = join(PROJECT_ROOT, "tests/support/discovery_agent.ts");
/** Agents start a Deno each; allow for a slow, busy machine. */
const START_TIMEOUT_MS = 20_000;

const skip = await netnsUnavailable();
if (skip) console.log(`discovery_netns_test: skipped: ${skip}`);

type Line = Record<string, unknown>;

function names(p: NsProcess, type: string): string[] {
  return p.lines.filter((l) => l.value.type === type).map((l) => String(l.value.name));
}

function lastCounters(p: NsProcess): { forged: number; replay: number; self: number } {
  const c = p.lines.filter((l) => l.value.type === "counters").at(-1)?.value.counters as
    | { ignored: { forged: number; replay: number; self: number } }
    | undefined;
  return c?.ignored ?? { forged: 0, replay: 0, self: 0 };
}

Deno.test({
  name: "discovery in namespaces: join, intruders ignored, leave at once, expiry after 3 intervals",
  ignore: skip !== null,
  async fn() {
    const t0 = Date.now();
    const dir = await Deno.makeTempDir({ prefix: "ppm-discovery-" });
    let net: Netns | undefined;
    try {
      const secret = join(dir, "secret");
      const wrong = join(dir, "wrong-secret");
      await generateSecret(secret);
      await generateSecret(wrong);
      const config = join(dir, "ppm.json");
      await Deno.writeTextFile(config, JSON.stringify({ port: 7377, ttl: 1, peerExpiry: 3 }));
      net = await Netns.createBridged(4);
      const n = net;
      const args = (name: string, secretFile: string) => [
        "--config",
        config,
        "--node-name",
        name,
        "--secret-file",
        secretFile,
        "--interface",
        "eth0",
        "--announce-interval",
        `${INTERVAL}ms`,
        "--max-seconds",
        "55",
        "--exit-on-eof",
      ];
      const spawn = (i: number, extra: string[]) =>
        n.spawnDeno(n.nodes[i].ns, AGENT, extra, { cwd: PROJECT_ROOT, stdin: "piped" });
      const agents = ["node0", "node1", "node2"].map((name, i) => spawn(i, args(name, secret)));
      const [a, b, c] = agents;
      const isReady = (v: Line) => v.type === "ready";
      const ready = await Promise.all(agents.map((p) => p.waitFor(isReady, START_TIMEOUT_MS)));
      for (const [i, r] of ready.entries()) {
        assertEquals(r.value.addresses, [n.nodes[i].address]);
        assertEquals(r.value.interface, n.nodes[i].address);
      }
      const allReady = Math.max(...ready.map((r) => Number(r.value.t)));

      // Every node sees the two others within 3 intervals of the last start.
      const joinDelays: number[] = [];
      for (const [i, p] of agents.entries()) {
        for (const [j, other] of ["node0", "node1", "node2"].entries()) {
          if (i === j) continue;
          const hit = await p.waitFor((v) => v.type === "join" && v.name === other, 3 * INTERVAL);
          joinDelays.push(Math.max(0, Number(hit.value.t) - allReady));
        }
      }
      assert(Math.max(...joinDelays) <= 3 * INTERVAL, `joins after ${joinDelays} ms`);

      // A replay of captured packets (the first of each node's, sent again unchanged) ...
      const replayer = spawn(3, ["--config", config, "--interface", "eth0", "--replay", "3"]);
      assertEquals((await replayer.stop(START_TIMEOUT_MS)).code, 0, replayer.stderr);
      const replayed = replayer.lines.filter((l) => l.value.type === "replayed");
      assertEquals(replayed.length, 3, replayer.stderr);
      // ... and an intruder announcing with another secret.
      const intruder = spawn(3, args("intruder", wrong));
      await intruder.waitFor(isReady, START_TIMEOUT_MS);
      // Wait (bounded) until every agent counted a forged and a replayed packet.
      const deadline = Date.now() + 5_000;
      while (
        Date.now() < deadline &&
        agents.some((p) => lastCounters(p).forged < 1 || lastCounters(p).replay < 1)
      ) {
        await new Promise((r) => setTimeout(r, 20));
      }
      for (const p of agents) {
        const ignored = lastCounters(p);
        assert(ignored.forged >= 1, `${p.ns}: forged ${JSON.stringify(ignored)}\n${p.stderr}`);
        assert(ignored.replay >= 1, `${p.ns}: replay ${JSON.stringify(ignored)}\n${p.stderr}`);
        assertEquals(names(p, "join").filter((x) => x === "intruder"), []);
        assertEquals(names(p, "join").length, 2, `${p.ns} joins: ${names(p, "join")}`);
        assertEquals(names(p, "leave"), []);
      }
      intruder.kill("SIGTERM");
      await intruder.stop();

      // A clean stop (SIGTERM to its PID) sends a leave message: gone at once.
      const tStop = Date.now();
      c.kill("SIGTERM");
      const leaveDelays: number[] = [];
      for (const p of [a, b]) {
        const hit = await p.waitFor(
          (v) => v.type === "leave" && v.name === "node2" && v.reason === "left",
          INTERVAL * 2,
        );
        leaveDelays.push(Number(hit.value.t) - tStop);
      }
      assert(Math.max(...leaveDelays) < INTERVAL, `leave seen after ${leaveDelays} ms`);
      assertEquals((await c.stop()).code, 0, c.stderr);
      await c.waitFor((v) => v.type === "stopped", 1000);

      // A killed agent (SIGKILL, no leave message) expires after 3 missed intervals.
      const tKill = Date.now();
      b.kill("SIGKILL");
      const gone = await a.waitFor(
        (v) => v.type === "leave" && v.name === "node1",
        6 * INTERVAL,
      );
      assertEquals(gone.value.reason, "expired");
      const afterLast = Number(gone.value.t) - Number(gone.value.lastSeen);
      const afterKill = Number(gone.value.t) - tKill;
      assert(afterLast > 3 * INTERVAL && afterLast <= 4 * INTERVAL, `${afterLast} ms`);
      assert(afterKill <= 4 * INTERVAL, `${afterKill} ms after the kill`);
      await b.stop();

      // Nothing else left or joined on the survivor.
      assertEquals(names(a, "leave").sort(), ["node1", "node2"]);
      a.kill("SIGTERM");
      assertEquals((await a.stop()).code, 0, a.stderr);
      console.log(
        `joins within ${Math.max(...joinDelays)} ms of the last start; leave seen after ${
          Math.max(...leaveDelays)
        } ms; expiry ${afterLast} ms after the last announcement (${afterKill} ms after the kill); ` +
          `ignored at node0: ${JSON.stringify(lastCounters(a))}; replayed ${replayed.length}; ` +
          `whole test ${Date.now() - t0} ms`,
      );
    } finally {
      await net?.cleanup();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "discovery in namespaces: a veth pair with the kernel's route; a missing interface",
  ignore: skip !== null,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "ppm-discovery-" });
    let net: Netns | undefined;
    try {
      const secret = join(dir, "secret");
      await generateSecret(secret);
      const config = join(dir, "ppm.json");
      await Deno.writeTextFile(config, "{}");
      net = await Netns.createVethPair();
      const n = net;
      // No interface: the kernel sends by its route to 224.0.0.0/4 (eth0 here).
      const args = (name: string) => [
        "--config",
        config,
        "--node-name",
        name,
        "--secret-file",
        secret,
        "--announce-interval",
        `${INTERVAL}ms`,
        "--max-seconds",
        "30",
        "--exit-on-eof",
      ];
      const agents = [0, 1].map((i) =>
        n.spawnDeno(n.nodes[i].ns, AGENT, args(`veth${i}`), { cwd: PROJECT_ROOT, stdin: "piped" })
      );
      const ready = await Promise.all(
        agents.map((p) => p.waitFor((v) => v.type === "ready", START_TIMEOUT_MS)),
      );
      assertEquals(ready.map((r) => r.value.interface), [null, null]);
      assertEquals(ready.map((r) => r.value.addresses), [["10.88.0.1"], ["10.88.0.2"]]);
      await agents[0].waitFor((v) => v.type === "join" && v.name === "veth1", 3 * INTERVAL);
      const join1 = await agents[1].waitFor(
        (v) => v.type === "join" && v.name === "veth0",
        3 * INTERVAL,
      );
      assertEquals(String(join1.value.from).split(":")[0], "10.88.0.1");
      // The end of stdin stops an agent cleanly, with a leave message.
      await agents[1].closeStdin();
      await agents[0].waitFor((v) => v.type === "leave" && v.reason === "left", 2 * INTERVAL);
      assertEquals((await agents[1].stop()).code, 0);

      // An interface that does not exist: a clear error and exit code 4 (missing).
      const bad = n.spawnDeno(n.nodes[0].ns, AGENT, [...args("bad"), "--interface", "nosuch0"], {
        cwd: PROJECT_ROOT,
      });
      const status = await bad.stop(START_TIMEOUT_MS);
      assertEquals(status.code, 4, bad.stderr);
      assert(
        /cannot use interface nosuch0 for discovery: there is no such interface/.test(bad.stderr),
      );
      agents[0].kill("SIGTERM");
      assertEquals((await agents[0].stop()).code, 0);
    } finally {
      await net?.cleanup();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
