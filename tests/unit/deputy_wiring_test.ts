/**
 * The deputy wired into the agent, on this host with a real process (root;
 * no module, no second node): tests/programs/deputy_target.c runs as uid
 * 65534, a child of this test, which is so its parent and sees its real
 * wait status. It is frozen, stopped as the commit stops it, and handed
 * over as core/migrate/source.ts does (`standIn`) with the plan of
 * core/agent/deputies.ts, talking to a real link (core/deputy/link.ts);
 * the way to "node2" is an in-memory connection.
 *
 * - the process leaves a deputy (its parent waits: it is not init, not the
 *   agent, not `ppm run`); SIGTERM sent to the deputy comes out on the way
 *   to node2 as `{op: "signal", sig: 15}`; the news from node2 that the
 *   process was ended by SIGTERM (`exited`, as the way back brings it) is
 *   its parent's status: killed by SIGTERM;
 * - the news of exit code 3 is its parent's exit code 3;
 * - a deputy killed here (SIGKILL) has its process killed there: `signal 9`;
 * - the agent restarts: the next one reads the record, expects the deputy
 *   again, and the news of the end still reaches its parent.
 */
import { join } from "node:path";
import { Deputies } from "../../core/agent/deputies.ts";
import { watchExit } from "../../core/agent/outbound.ts";
import { ProcessTable } from "../../core/agent/processes.ts";
import { SignalRoutes } from "../../core/agent/signals.ts";
import { ensureDeputy } from "../../core/deputy/binary.ts";
import { DeputyLink } from "../../core/deputy/link.ts";
import { standIn } from "../../core/migrate/source.ts";
import { ThreadGroup } from "../../core/ptrace/group.ts";
import type { MigrationChannel } from "../../core/transport/channel.ts";
import { kill } from "../../ffi/libc.ts";
import { PROGRAMS_OUT, waitUntil } from "../support/fd_kinds.ts";
import { buildProgram } from "../support/programs.ts";
import { assert, assertEquals } from "../support/assert.ts";

const opts = { sanitizeResources: false, sanitizeOps: false, ignore: Deno.uid() !== 0 };
const NOBODY = 65534;
const TOKEN = "0123456789abcdef0123456789abcdef";

/** A connection to "node2": what was sent on it, and messages pushed to read. */
function wayTo() {
  const sent: unknown[] = [];
  const inbox: unknown[] = [];
  const waiters: ((v: unknown) => void)[] = [];
  const ch: MigrationChannel & { sent: unknown[]; push(m: unknown): void } = {
    sent,
    push(m) {
      const w = waiters.shift();
      if (w) w(m);
      else inbox.push(m);
    },
    send(m) {
      sent.push(m);
      return Promise.resolve();
    },
    recv() {
      return inbox.length ? Promise.resolve(inbox.shift()) : new Promise((r) => waiters.push(r));
    },
    streamSink: () => () => Promise.resolve(),
    endStream: () => Promise.resolve(),
    streamSource: () => (async function* () {})(),
    close() {},
  };
  return ch;
}

/**
 * The agent's side on this host: a link, the deputies (those a previous
 * agent left expected at once, as the agent does), the way to node2.
 */
async function agent(dir: string) {
  const logs: string[] = [];
  const routes = new SignalRoutes((_l, s) => logs.push(s));
  const socket = join(dir, "run", "link.sock");
  const binary = await ensureDeputy(join(dir, "bin"));
  const deputies = new Deputies({
    node: "node1",
    agentPid: 0, // not the target's parent: this test is
    routes,
    log: (l, s) => logs.push(`${l}: ${s}`),
    binary: () => Promise.resolve(binary),
    socket,
    dir: join(dir, "records"),
    reconnectS: 30,
  });
  const link = DeputyLink.listen(socket, deputies.events);
  deputies.attach(link);
  const adopted = deputies.adopt();
  return { logs, routes, deputies, link, adopted, table: new ProcessTable("node1") };
}

async function startTarget() {
  const bin = await buildProgram("deputy_target", PROGRAMS_OUT);
  const child = new Deno.Command(bin, {
    stdin: "null",
    stdout: "piped",
    stderr: "null",
    cwd: "/",
    uid: NOBODY,
    gid: NOBODY,
  }).spawn();
  let out = "";
  (async () => {
    for await (const c of child.stdout) out += new TextDecoder().decode(c);
  })();
  await waitUntil("the target to start", () => out.includes("ready "));
  return {
    pid: child.pid,
    child,
    end: async () => {
      try {
        child.kill("SIGKILL");
      } catch { /* ended */ }
      await child.status;
    },
  };
}

/** Moves the target away as the source's hand-over does; its deputy stays, on the way to node2. */
async function moveAway(a: Awaited<ReturnType<typeof agent>>, pid: number) {
  const plan = await a.deputies.plan(pid);
  assert(plan.become, `no deputy planned: ${plan.none ?? plan.warning}`);
  const group = ThreadGroup.freeze(pid);
  kill(pid, 19); // the commit's SIGSTOP
  const stood = await standIn(group, pid, { become: plan.become });
  assertEquals(stood, { deputy: { pid }, warnings: [] });
  a.deputies.departed(pid, "node2", TOKEN);
  const way = wayTo();
  a.routes.open(pid, way);
  await a.link.waitConnected(pid, 10_000);
  return way;
}

const signals = (way: { sent: unknown[] }) =>
  way.sent.map((m) => (m as { sig?: number }).sig).filter((s) => s !== undefined);

Deno.test({
  name:
    "deputy wired: a signal to it goes to node2; node2's news of SIGTERM is the parent's status",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "ppm-depwire-" });
    await Deno.chmod(dir, 0o755);
    const a = await agent(dir);
    const t = await startTarget();
    try {
      const way = await moveAway(a, t.pid);
      Deno.kill(t.pid, "SIGTERM");
      await waitUntil("SIGTERM on the way to node2", () => signals(way).includes(15));
      assertEquals(way.sent[0], { op: "signal", pid: t.pid, sig: 15 });
      // node2: the process was ended by it. The news, as the way back brings it.
      const watching = watchExit(a, way, t.pid, t.pid, undefined, Promise.resolve());
      way.push({ op: "exited", pid: t.pid, node: "node2", signal: 15 });
      assert(await watching);
      const status = await t.child.status;
      assertEquals([status.code, status.signal], [143, "SIGTERM"]);
      await waitUntil("the deputy forgotten", () => !a.deputies.has(t.pid));
      assertEquals([...Deno.readDirSync(join(dir, "records"))], []);
    } finally {
      await t.end();
      await a.link.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "deputy wired: exit 3 there is exit 3 here; a deputy killed here kills its process there",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "ppm-depwire-" });
    await Deno.chmod(dir, 0o755);
    const a = await agent(dir);
    const t1 = await startTarget();
    const t2 = await startTarget();
    try {
      const way1 = await moveAway(a, t1.pid);
      const watching = watchExit(a, way1, t1.pid, t1.pid, undefined, Promise.resolve());
      way1.push({ op: "exited", pid: t1.pid, node: "node2", code: 3 });
      await watching;
      assertEquals((await t1.child.status).code, 3);

      const way2 = await moveAway(a, t2.pid);
      Deno.kill(t2.pid, "SIGKILL");
      await waitUntil("SIGKILL on the way to node2", () => signals(way2).includes(9));
      assertEquals((await t2.child.status).signal, "SIGKILL");
      assert(!a.deputies.has(t2.pid));
    } finally {
      await t1.end();
      await t2.end();
      await a.link.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "deputy wired: a restarted agent expects its deputy again; the end still reaches the parent",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "ppm-depwire-" });
    await Deno.chmod(dir, 0o755);
    const first = await agent(dir);
    const t = await startTarget();
    let next: Awaited<ReturnType<typeof agent>> | undefined;
    try {
      await moveAway(first, t.pid);
      await first.link.close(); // the agent stops; the deputy waits and reconnects
      Deno.kill(t.pid, "SIGUSR1");
      next = await agent(dir);
      assertEquals(next.adopted, 1);
      await next.link.waitConnected(t.pid, 10_000);
      // Its signal is held until node2 takes the relay up again, then goes on the new way.
      const way = wayTo();
      next.routes.open(t.pid, way);
      await waitUntil("SIGUSR1 on the new way", () => signals(way).includes(10));
      const rows = next.deputies.rows(() => undefined);
      assertEquals([rows[0].direction, rows[0].current.node, rows[0].deputy?.connected], [
        "deputy",
        "node2",
        true,
      ]);
      const watching = watchExit(next, way, t.pid, t.pid, undefined, Promise.resolve());
      way.push({ op: "exited", pid: t.pid, node: "node2", code: 0 });
      await watching;
      assertEquals((await t.child.status).code, 0);
    } finally {
      await t.end();
      await next?.link.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
