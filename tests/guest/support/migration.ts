/**
 * What the guest tests that move processes share: `ppm migrate` as a script
 * runs it, and the shell test that a process lives under its name.
 *
 * @module
 */
import { assertEquals } from "../../support/assert.ts";
import type { TestCluster } from "../../support/cluster.ts";

/**
 * `ppm migrate` from node `from`, as a script runs it (NDJSON events); checks
 * the agent said each step in order, and returns the result (throws on failure).
 */
export async function migrate(c: TestCluster, from: number, pid: string, to: number) {
  const r = await c.ppm(from, ["migrate", pid, "--to", `node${to}`, "--progress=json"], 300_000);
  assertEquals(r.code, 0, `node${from} → node${to}: ${r.stderr}`);
  const events = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assertEquals(
    events.filter((e) => e.event === "phase").map((e) => e.phase),
    ["offer", "dump", "restore", "commit"],
  );
  const last = events.at(-1);
  assertEquals([last.event, last.ok], ["result", true]);
  const m = last.result;
  assertEquals(String(m.pid), pid);
  const ms = (o: Record<string, number> | undefined) =>
    Object.entries(o ?? {}).map(([k, v]) => `${k} ${(v / 1000).toFixed(0)}`).join(", ");
  console.log(
    `  node${from} → node${to}: frozen ${(m.timesUs.frozen / 1000).toFixed(0)} ms, ${
      (m.bytes / 2 ** 20).toFixed(1)
    } MiB [${ms(m.timesUs)}] [dump: ${ms(m.checkpoint?.timesUs)}] [restore: ${
      ms(m.restore?.timesUs)
    }]`,
  );
  return m;
}

/** A shell test: process `pid` lives, is called `comm` and is no zombie (PIDs differ per node). */
export function lives(pid: string, comm: string): string {
  // The name is read by the shell itself: a `cat` here could get the freed PID and name itself.
  return `[ "$(read -r x < /proc/${pid}/comm 2>/dev/null; echo "$x")" = "${comm}" ] && ` +
    `! grep -q '^State:.*Z' /proc/${pid}/status 2>/dev/null`;
}
