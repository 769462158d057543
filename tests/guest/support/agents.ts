/**
 * `ppm daemon` on the nodes of a test cluster: started and stopped by PID,
 * optionally with fault points armed, and waits until peers see each other.
 */
import { guestPath } from "../../../core/vcluster/spec.ts";
import type { TestCluster } from "../../support/cluster.ts";

/** Agents of one test cluster sharing `secret` (a host path). */
export class Agents {
  constructor(private c: TestCluster, private secret: string) {}

  /** Starts node n's agent (PPM_FAULT=`fault` when given) and waits for its control socket. */
  async start(n: number, fault?: string): Promise<void> {
    const env = fault ? `PPM_FAULT=${fault} ` : "";
    await this.c.ok(n, [
      "sh",
      "-c",
      `cd /tmp; ${env}ppm daemon --secret-file ${guestPath(this.secret)} --interface eth0 ` +
      `--node-name node${n} --announce-interval 1 >> /tmp/agent.log 2>&1 & echo $! > /tmp/agent.pid`,
    ]);
    // The socket first: each try of the command costs seconds of CPU in a TCG guest.
    await this.c.waitFor(n, "[ -S /run/ppm/ppm.sock ] && ppm peers --json > /dev/null 2>&1", 120);
  }

  /** Starts the agents of `nodes` together (each takes seconds to start in a guest). */
  async startAll(nodes: number[]): Promise<void> {
    await Promise.all(nodes.map((n) => this.start(n)));
  }

  /** Stops node n's agent (the one this class started) and waits until it is gone. */
  async stop(n: number): Promise<void> {
    await this.c.exec(n, ["sh", "-c", "kill $(cat /tmp/agent.pid) 2>/dev/null"]);
    await this.c.waitFor(n, "! kill -0 $(cat /tmp/agent.pid) 2>/dev/null", 60);
  }

  /** Waits until node n's agent has died by itself (an injected crash). */
  async waitDead(n: number): Promise<void> {
    await this.c.waitFor(n, "! kill -0 $(cat /tmp/agent.pid) 2>/dev/null", 60);
  }

  /** Restarts node n's agent, with `fault` armed or none, and waits until every other node sees it. */
  async restart(n: number, nodes: number[], fault?: string): Promise<void> {
    await this.stop(n);
    await this.start(n, fault);
    await this.waitSeen(n, nodes);
  }

  /**
   * Runs `fn`; when it fails, the error carries the last lines of every
   * node's agent log (only those matching the extended regular expression
   * `only`, when given), so that a failure in CI can be understood.
   */
  async explain(nodes: number[], fn: () => Promise<void>, only?: string): Promise<void> {
    try {
      await fn();
    } catch (e) {
      const logs = [];
      const lines = only
        ? `grep -E '${only.replaceAll("'", "")}' /tmp/agent.log | tail -n 60`
        : "tail -n 40 /tmp/agent.log";
      for (const n of nodes) {
        const r = await this.c.exec(n, ["sh", "-c", lines], 30_000)
          .catch((x) => ({ stdout: `(cannot read: ${(x as Error).message})` }));
        logs.push(`--- node${n} /tmp/agent.log, last lines ---\n${r.stdout}`);
      }
      if (e instanceof Error) {
        // What failed, again after the logs: the end of a long report is what CI shows.
        const gist = e.message.split("\n").filter((l) => l.trim()).slice(0, 3).join("\n");
        e.message += `\n${logs.join("\n")}\n--- the failure, in short ---\n${gist}`;
      }
      throw e;
    }
  }

  /**
   * Waits (at most `seconds`) until each of `nodes` lists every other one as
   * a peer, all nodes at once; returns each node's last `ppm peers --json`.
   */
  async waitMesh(nodes: number[], seconds = 180): Promise<Record<number, unknown>> {
    const seen: Record<number, unknown> = {};
    await Promise.all(nodes.map(async (n) => {
      const others = nodes.filter((m) => m !== n)
        .map((m) => `grep -q '"name": "node${m}"' /tmp/peers.json`).join(" && ");
      await this.c.waitFor(
        n,
        `ppm peers --json > /tmp/peers.json 2>/dev/null && ${others}`,
        seconds,
      );
      seen[n] = JSON.parse(await this.c.ok(n, ["cat", "/tmp/peers.json"]));
    }));
    return seen;
  }

  /** Waits until each of `nodes` (but n, all at once) lists node n's current agent as alive. */
  async waitSeen(n: number, nodes: number[]): Promise<void> {
    const id = JSON.parse(await this.c.ok(n, ["ppm", "peers", "--json"])).self.id as string;
    await Promise.all(
      nodes.filter((x) => x !== n).map((m) =>
        this.c.waitFor(
          m,
          `ppm peers --json 2>/dev/null | tr -d ' \\n' | grep -q '"id":"${id}","name":"node${n}"'`,
          120,
        )
      ),
    );
  }
}
