/**
 * The agent's side of the deputies, with fakes (core/agent/deputies.ts,
 * core/agent/signals.ts, the hand-over in core/migrate/source.ts and the
 * news of an end in core/agent/outbound.ts):
 *
 * - which process gets a deputy (its parent init, this agent, `ppm run`, or
 *   someone who waits), and why not;
 * - the stand-in at the hand-over: the deputy made, or (it cannot be) the
 *   process killed as without one, with a warning naming why and what to do;
 * - signals held until the way to the process opens, standard ones once,
 *   bounded; sent on in order; held again when the way closes;
 * - signals read on the connection a process came in on: given to it when it
 *   runs here, passed on when it moved on, refused for any other process, and
 *   hostile messages passed over; along a chain node1 → node2 → node3;
 * - the deputy's events: a signal passed on, its death (SIGKILL there), the
 *   news of the end (after the output, bounded) ending it the same way: exit
 *   code, signal, or SIGKILL when the status is not known;
 * - records kept for an agent that restarts: a live deputy expected again, a
 *   gone one and a hostile file removed;
 * - `ppm ps` rows; the news that it moved on, passed back towards home.
 */
import { join } from "node:path";
import {
  Deputies,
  type DeputiesDeps,
  type DeputyLinkApi,
  needsDeputy,
} from "../../core/agent/deputies.ts";
import { watchExit } from "../../core/agent/outbound.ts";
import { ProcessTable } from "../../core/agent/processes.ts";
import {
  deliverSignal,
  HELD_MAX,
  serveSignals,
  SignalRoutes,
  type SignalTargets,
} from "../../core/agent/signals.ts";
import type { DeputySpec } from "../../core/deputy/become.ts";
import {
  badDeputyRecord,
  type DeputyRecord,
  loadDeputyRecords,
  saveDeputyRecord,
} from "../../core/deputy/record.ts";
import { PpmError } from "../../core/errors.ts";
import { standIn } from "../../core/migrate/source.ts";
import type { ThreadGroup } from "../../core/ptrace/group.ts";
import type { MigrationChannel } from "../../core/transport/channel.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "../support/assert.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** An in-memory channel: what was sent, messages to receive, and its close. */
interface FakeChannel extends MigrationChannel {
  sent: unknown[];
  push(msg: unknown): void;
  end(): void;
}

function channel(): FakeChannel {
  const inbox: unknown[] = [];
  const waiters: ((v: unknown) => void)[] = [];
  let ended = false;
  let closeIt!: () => void;
  const closed = new Promise<void>((r) => closeIt = r);
  const gone = () => new PpmError("transport: the connection", "the peer closed it", "");
  const ch: FakeChannel = {
    sent: [],
    push(msg) {
      const w = waiters.shift();
      if (w) w(msg);
      else inbox.push(msg);
    },
    end() {
      ended = true;
      for (const w of waiters.splice(0)) w(gone);
      closeIt();
    },
    send(msg) {
      if (ended) return Promise.reject(gone());
      ch.sent.push(structuredClone(msg));
      return Promise.resolve();
    },
    recv() {
      if (inbox.length) return Promise.resolve(inbox.shift());
      if (ended) return Promise.reject(gone());
      return new Promise((resolve, reject) =>
        waiters.push((v) => v === gone ? reject(gone()) : resolve(v))
      );
    },
    streamSink: () => () => Promise.resolve(),
    endStream: () => Promise.resolve(),
    streamSource: () => (async function* () {})(),
    close: () => ch.end(),
    closed,
  };
  return ch;
}

const signalsSent = (ch: FakeChannel) =>
  ch.sent.filter((m) => (m as { op: string }).op === "signal").map((m) =>
    (m as { sig: number }).sig
  );

Deno.test("deputies: who gets one, and why not", () => {
  const agentPid = 700;
  const cases: [Parameters<typeof needsDeputy>[0], boolean, RegExp?][] = [
    [{ ppid: 1, agentPid }, false, /init/],
    [{ ppid: 0, agentPid }, false, /init/],
    [{ ppid: agentPid, agentPid }, false, /arrived/],
    [{ ppid: 1, agentPid, entry: { direction: "arrived" } }, false, /arrived/],
    [{ ppid: 5000, agentPid, entry: { direction: "arrived" } }, false, /home node/],
    [{ ppid: 5000, agentPid, entry: { direction: "local", managedBy: "run" } }, false, /ppm run/],
    [{ ppid: 5000, agentPid }, true],
    [{ ppid: 5000, agentPid, entry: { direction: "local", managedBy: "manage" } }, true],
  ];
  for (const [facts, want, why] of cases) {
    const c = needsDeputy(facts);
    assertEquals(c.deputy, want, JSON.stringify(facts));
    if (!c.deputy && why) assertMatch(c.why, why);
  }
});

Deno.test("hand-over: the deputy stands in; when it cannot, the process is killed, with why", async () => {
  let kills = 0;
  const group = { kill: () => kills++ } as unknown as ThreadGroup;
  assertEquals(await standIn(group, 42, undefined), { warnings: [] });
  assertEquals(kills, 1);
  assertEquals(
    await standIn(group, 42, { become: () => Promise.resolve({ pid: 42 }) }),
    { deputy: { pid: 42 }, warnings: [] },
  );
  assertEquals(kills, 1, "a process that became its deputy was killed");
  const failed = await standIn(group, 42, {
    become: () =>
      Promise.reject(
        new PpmError(
          "cannot make process 42 its own deputy",
          "it may not run /var/lib/ppm-deputy/ppm-deputy (EACCES)",
          "install the deputy where every user may run it",
        ),
      ),
  });
  assertEquals(kills, 2);
  assertEquals(failed.deputy, undefined);
  assertEquals(failed.warnings.length, 1);
  assertMatch(failed.warnings[0], /no deputy stands in for process 42 here/);
  assertMatch(failed.warnings[0], /EACCES/);
  assertMatch(failed.warnings[0], /install the deputy where every user may run it/);
  assertMatch(failed.warnings[0], /its parent sees it killed \(SIGKILL\)/);
});

Deno.test("signal routes: held until the way opens (bounded), sent in order, held again when it closes", async () => {
  const logs: string[] = [];
  const routes = new SignalRoutes((_l, s) => logs.push(s));
  assertEquals(routes.send(42, 15), "none", "a signal for nobody expected");
  routes.hold(42);
  assertEquals(routes.send(42, 10), "held");
  assertEquals(routes.send(42, 10), "held"); // a standard signal is held once
  assertEquals(routes.send(42, 40), "held");
  assertEquals(routes.send(42, 40), "held"); // a real-time one each time
  const ch = channel();
  routes.open(42, ch);
  assertEquals(signalsSent(ch), [10, 40, 40]);
  assertEquals(ch.sent[0], { op: "signal", pid: 42, sig: 10 });
  assertEquals(routes.send(42, 15), "sent");
  assertEquals(signalsSent(ch), [10, 40, 40, 15]);

  ch.end(); // the connection broke: held again, for the next one
  await waitUntil("the route closed", () => !routes.has(42));
  assertEquals(routes.send(42, 2), "held");
  for (let i = 0; i < HELD_MAX + 10; i++) routes.send(42, 34);
  assert(logs.some((l) => /lost: 64 wait already/.test(l)), logs.join("\n"));
  const next = channel();
  routes.open(42, next);
  assertEquals(signalsSent(next).length, HELD_MAX);
  assertEquals(signalsSent(next)[0], 2);

  routes.close(42);
  assertEquals(routes.send(42, 15), "none");
});

Deno.test("signals on a process's connection: given here, passed on, others refused", async () => {
  const logs: string[] = [];
  const given: [number, number][] = [];
  let runsHere = true;
  const routes = new SignalRoutes();
  const targets: SignalTargets = {
    here: (pid, sig) => runsHere && given.push([pid, sig]) > 0,
    routes,
    log: (_l, s) => logs.push(s),
  };
  const up = channel();
  const served = serveSignals(up, 42, targets);
  up.push({ op: "signal", pid: 42, sig: 15 });
  up.push({ op: "signal", pid: 43, sig: 9 }); // another process: refused
  // Hostile ones are not signals: passed over.
  for (const bad of [0, 65, -1, 1.5, "9", null]) up.push({ op: "signal", pid: 42, sig: bad });
  up.push({ op: "signal", pid: 0, sig: 9 });
  up.push({ op: "signal", pid: 42 });
  up.push({ op: "exited", pid: 42, node: "x", code: 0 });
  up.push("signal 9");
  up.push({ op: "signal", pid: 42, sig: 64 });
  await waitUntil("two signals given", () => given.length === 2);
  assertEquals(given, [[42, 15], [42, 64]]);
  assert(logs.some((l) => /refused signal 9 for process 43/.test(l)), logs.join("\n"));

  // It moved on: passed on where it went; and nowhere when there is no way.
  runsHere = false;
  const down = channel();
  routes.open(42, down);
  up.push({ op: "signal", pid: 42, sig: 10 });
  await waitUntil("passed on", () => signalsSent(down).length === 1);
  assertEquals(down.sent, [{ op: "signal", pid: 42, sig: 10 }]);
  routes.close(42);
  assertEquals(deliverSignal(targets, 42, 12), "none");
  up.end();
  await served; // ends with its connection
});

Deno.test("signals along a chain: node1's deputy → node2 (moved on) → node3 (runs there)", async () => {
  const given: number[] = [];
  const log = () => {};
  // node1: the home; node2: it passed through; node3: it runs there.
  const routes1 = new SignalRoutes(log), routes2 = new SignalRoutes(log);
  const link12 = channel(), link23 = channel();
  // What node1 sends on link12 arrives at node2's reader, and so on.
  const wire = (from: FakeChannel, to: FakeChannel) => {
    const send = from.send.bind(from);
    from.send = (m) => send(m).then(() => to.push(structuredClone(m)));
  };
  const at2 = channel(), at3 = channel();
  wire(link12, at2);
  wire(link23, at3);
  serveSignals(at2, 42, { here: () => false, routes: routes2, log });
  serveSignals(at3, 42, {
    here: (_p, sig) => given.push(sig) > 0,
    routes: new SignalRoutes(),
    log,
  });
  routes2.open(42, link23);
  routes1.hold(42);
  routes1.send(42, 15); // before the way is open: held
  routes1.open(42, link12);
  routes1.send(42, 10);
  await waitUntil("both at node3", () => given.length === 2);
  assertEquals(given, [15, 10]);
  for (const c of [link12, link23, at2, at3]) c.end();
});

/** A fake link: what it was asked, and its answers. */
function fakeLink() {
  const calls: string[] = [];
  const link: DeputyLinkApi & { calls: string[]; failExpect?: boolean } = {
    calls,
    expect(pid) {
      if (link.failExpect) throw new PpmError(`cannot watch a deputy in process ${pid}`, "gone");
      calls.push(`expect ${pid}`);
    },
    forget(pid) {
      calls.push(`forget ${pid}`);
    },
    exit(pid, code) {
      calls.push(`exit ${pid} ${code}`);
      return Promise.resolve();
    },
    killed(pid, sig) {
      calls.push(`killed ${pid} ${sig}`);
      return Promise.resolve();
    },
    isConnected: () => true,
    closeKept(pid, fd) {
      calls.push(`close ${pid} ${fd}`);
    },
    home(pid) {
      calls.push(`home ${pid}`);
      return Promise.resolve();
    },
  };
  return link;
}

async function deputies(o: Partial<DeputiesDeps> = {}) {
  const dir = await Deno.makeTempDir({ prefix: "ppm-deputies-" });
  const logs: string[] = [];
  const made: DeputySpec[] = [];
  const routes = new SignalRoutes((_l, s) => logs.push(s));
  const link = fakeLink();
  const d = new Deputies({
    node: "node1",
    agentPid: 700,
    routes,
    log: (l, s) => logs.push(`${l}: ${s}`),
    binary: () => Promise.resolve("/var/lib/ppm-deputy/ppm-deputy"),
    socket: "/run/ppm-deputy/link.sock",
    become: (_g, spec) => {
      made.push(spec);
      return Promise.resolve();
    },
    dir,
    ppid: () => 5000,
    isDeputy: () => true,
    outputWaitMs: 50,
    ...o,
  });
  d.attach(link);
  return { d, dir, logs, made, routes, link };
}

const group = {} as ThreadGroup;

Deno.test("deputies: planned only when someone waits, and made at the hand-over", async () => {
  const s = await deputies();
  try {
    assertEquals((await s.d.plan(Deno.pid)).become !== undefined, true);
    const byRun = await s.d.plan(
      Deno.pid,
      {
        direction: "local",
        managedBy: "run",
      } as Parameters<Deputies["plan"]>[1],
    );
    assertMatch(byRun.none ?? "", /ppm run/);
    const init = await deputies({ ppid: () => 1 });
    assertMatch((await init.d.plan(42)).none ?? "", /init/);
    assertEquals((await init.d.plan(42)).warning, undefined);

    // No program, or no link: a warning that says why, and the move goes on without one.
    const noBinary = await deputies({
      binary: () => Promise.reject(new PpmError("cannot run the deputy from /var/lib/x", "noexec")),
    });
    const w = (await noBinary.d.plan(42)).warning ?? "";
    assertMatch(w, /no deputy can stand in for process 42 here \(cannot run the deputy/);
    assertMatch(w, /parent sees it killed/);
    const noLink = await deputies();
    noLink.d.attach(undefined, "cannot listen for deputies on /run/ppm-deputy/link.sock: EACCES");
    assertMatch((await noLink.d.plan(42)).warning ?? "", /cannot listen for deputies/);

    // Made: the link expects it first; 0-2 kept only. Closing a relayed descriptor in it
    // waits for it to be made.
    const plan = await s.d.plan(Deno.pid);
    plan.closeFd!(5);
    assertEquals(await plan.become!(group), { pid: Deno.pid });
    plan.closeFd!(7);
    assertEquals(s.link.calls, [`expect ${Deno.pid}`, `close ${Deno.pid} 7`]);
    s.link.calls.pop();
    assertEquals(s.made, [{
      binary: "/var/lib/ppm-deputy/ppm-deputy",
      socket: "/run/ppm-deputy/link.sock",
      keep: [],
      reconnectS: 600,
    }]);
    assert(s.d.has(Deno.pid));

    // Not made: the link forgets it, and the caller ends the process.
    const failing = await deputies({
      become: () =>
        Promise.reject(new PpmError("cannot make process 42 its own deputy", "ENOEXEC")),
    });
    await assertRejects(async () => await (await failing.d.plan(Deno.pid)).become!(group));
    assertEquals(failing.link.calls, [`expect ${Deno.pid}`, `forget ${Deno.pid}`]);
    assert(!failing.d.has(Deno.pid));
    for (const x of [init, noBinary, noLink, failing]) {
      await Deno.remove(x.dir, { recursive: true });
    }
  } finally {
    await Deno.remove(s.dir, { recursive: true });
  }
});

Deno.test("deputies: signals passed on, a killed deputy kills its process, the end told after the output", async () => {
  const s = await deputies();
  const pid = Deno.pid;
  try {
    await (await s.d.plan(pid)).become!(group);
    // Before its way is open (the handover goes first): held.
    s.d.events.onSignal!(pid, 15);
    s.d.departed(pid, "node2", "0123456789abcdef0123456789abcdef");
    const ch = channel();
    s.routes.open(pid, ch);
    s.d.events.onSignal!(pid, 10);
    assertEquals(signalsSent(ch), [15, 10]);
    const rec = loadDeputyRecords(s.dir).records;
    assertEquals(rec.map((r) => [r.pid, r.to, r.runsOn, r.token]), [[
      pid,
      "node2",
      "node2",
      "0123456789abcdef0123456789abcdef",
    ]]);

    // It moved on: its row says where it runs now.
    s.d.moved(pid, "node3");
    const table = new ProcessTable("node1");
    const rows = s.d.rows((p) => table.departed(p));
    assertEquals(rows.length, 1);
    assertEquals([rows[0].direction, rows[0].current, rows[0].deputy?.pid], [
      "deputy",
      { node: "node3", pid },
      pid,
    ]);
    assertEquals(loadDeputyRecords(s.dir).records[0].runsOn, "node3");

    // The news of its end: told only once its output is out (or the bound passed).
    let outputOut!: () => void;
    const output = new Promise<void>((r) => outputOut = r);
    const ending = s.d.exited(pid, { signal: 15 }, output);
    await sleep(10);
    assertEquals(s.link.calls.filter((c) => c.startsWith("killed")), []);
    // Recorded first: an agent that restarts now tells it.
    assertEquals(loadDeputyRecords(s.dir).records[0].end, { signal: 15 });
    outputOut();
    await ending;
    assertEquals(s.link.calls.at(-1), `killed ${pid} 15`);
    assert(!s.d.has(pid));
    assertEquals(loadDeputyRecords(s.dir).records, []);

    // An exit code; a status not known (SIGKILL); output that never ends (the bound).
    for (const [news, want] of [[{ code: 3 }, `exit ${pid} 3`], [{}, `killed ${pid} 9`]] as const) {
      await (await s.d.plan(pid)).become!(group);
      await s.d.exited(pid, news, new Promise(() => {}));
      assertEquals(s.link.calls.at(-1), want);
    }
    // No deputy: nothing.
    await s.d.exited(pid, { code: 1 }, Promise.resolve());
    assertEquals(s.link.calls.at(-1), `killed ${pid} 9`);

    // Killed here (SIGKILL: its parent, a user, scancel): its process is killed where it runs.
    await (await s.d.plan(pid)).become!(group);
    const ch2 = channel();
    s.routes.open(pid, ch2);
    s.d.events.onGone!(pid);
    assertEquals(signalsSent(ch2), [9]);
    assert(!s.d.has(pid));
    assert(s.logs.some((l) => /ended without being told .*is killed/.test(l)), s.logs.join("\n"));
  } finally {
    await Deno.remove(s.dir, { recursive: true });
  }
});

Deno.test("deputies: told again while it does not end; kept for the next agent when this one stops", async () => {
  let answers = 0;
  const s = await deputies({ tellWaitMs: 1 });
  const pid = Deno.pid;
  try {
    s.link.exit = (p, code) => {
      s.link.calls.push(`exit ${p} ${code}`);
      return ++answers < 3
        ? Promise.reject(new PpmError(`the deputy of process ${p} did not end within 0 s`, ""))
        : Promise.resolve();
    };
    await (await s.d.plan(pid)).become!(group);
    await s.d.exited(pid, { code: 5 }, Promise.resolve());
    assertEquals(s.link.calls.filter((c) => c.startsWith("exit")), Array(3).fill(`exit ${pid} 5`));
    assert(!s.d.has(pid));

    // The agent stops while it is being told: the record stays, with the news, for the next one.
    s.link.exit = (p, code) => {
      s.link.calls.push(`exit ${p} ${code}`);
      s.d.attach(undefined, "the agent is stopping");
      return Promise.reject(new PpmError("the deputy link closed", ""));
    };
    await (await s.d.plan(pid)).become!(group);
    await s.d.exited(pid, { code: 6 }, Promise.resolve());
    assertEquals(loadDeputyRecords(s.dir).records.map((r) => r.end), [{ code: 6 }]);
  } finally {
    await Deno.remove(s.dir, { recursive: true });
  }
});

Deno.test("deputies: the news of an end and of a move, as the way back brings them", async () => {
  const s = await deputies();
  const pid = Deno.pid;
  try {
    await (await s.d.plan(pid)).become!(group);
    s.d.departed(pid, "node2", "");
    const table = new ProcessTable("node1");
    table.left(pid, "node2", pid, { kind: "manual", by: "test" }, "prog");
    const conn = channel(), up = channel();
    s.routes.open(pid, conn);
    const watching = watchExit(
      { table, deputies: s.d, routes: s.routes },
      conn,
      pid,
      pid,
      up,
      Promise.resolve("ended"),
    );
    conn.push({ op: "moved", pid: 1, node: "node9" }); // another process: passed over
    conn.push({ op: "moved", pid, node: "node3" });
    conn.push({ op: "exited", pid, node: "node3", code: 7 });
    assertEquals(await watching, true);
    assertEquals(up.sent, [
      { op: "moved", pid, node: "node3" },
      { op: "exited", pid, node: "node3", code: 7 },
    ]);
    assertEquals(table.departure(pid)?.exit?.code, 7);
    assert(!s.routes.has(pid), "the way to an ended process stays");
    await waitUntil("the deputy told", () => s.link.calls.at(-1) === `exit ${pid} 7`);

    // A connection that ends without the news: false.
    const other = channel();
    const w2 = watchExit({ table }, other, 5, 5, undefined);
    other.end();
    assertEquals(await w2, false);
  } finally {
    await Deno.remove(s.dir, { recursive: true });
  }
});

Deno.test("deputies: a process coming home takes only its own deputy's place, which is then forgotten", async () => {
  const homes: { pid: number; stub: string }[] = [];
  const s = await deputies({
    homeStub: () => Promise.resolve("/var/lib/ppm-deputy/ppm-restore-stub"),
    comeHome: (pid, _files, d) => {
      homes.push({ pid, stub: d.stub });
      d.gone?.();
      return Promise.resolve();
    },
  });
  const pid = Deno.pid;
  const files = { binary: "b", spec: "s", pidOut: "p", errOut: "e" };
  try {
    await (await s.d.plan(pid)).become!(group);
    s.d.departed(pid, "node2", "");
    s.routes.hold(pid);
    // Another origin node, another origin PID, a PID that is no deputy: not its deputy.
    assertEquals(s.d.homecoming(pid, { node: "node2", pid }), undefined);
    assertEquals(s.d.homecoming(pid, { node: "node1", pid: pid + 1 }), undefined);
    assertEquals(s.d.homecoming(pid + 1, { node: "node1", pid: pid + 1 }), undefined);
    const into = s.d.homecoming(pid, { node: "node1", pid });
    assert(into, "its own deputy");
    await into(files);
    assertEquals(homes, [{ pid, stub: "/var/lib/ppm-deputy/ppm-restore-stub" }]);
    assert(!s.d.has(pid), "the deputy is not forgotten");
    assert(!s.routes.has(pid), "its signals still have a way");
    assertEquals(s.d.rows(() => undefined), []);
    // Without an installed stub, or once its process ended, nothing comes home.
    const none = await deputies();
    await (await none.d.plan(pid)).become!(group);
    assertEquals(none.d.homecoming(pid, { node: "node1", pid }), undefined);
    await Deno.remove(none.dir, { recursive: true });
  } finally {
    await Deno.remove(s.dir, { recursive: true });
  }
});

Deno.test("deputies: a restarted agent expects the live ones again; gone and hostile records go", async () => {
  const s = await deputies({ isDeputy: (pid) => pid === 4242 || pid === 4247 });
  try {
    const rec = (pid: number): DeputyRecord => ({
      pid,
      startTicks: "123",
      name: "prog",
      to: "node2",
      runsOn: "node3",
      token: "",
      since: new Date().toISOString(),
    });
    saveDeputyRecord(rec(4242), s.dir);
    saveDeputyRecord(rec(4243), s.dir);
    saveDeputyRecord({ ...rec(4247), end: { code: 4 } }, s.dir);
    await Deno.writeTextFile(
      join(s.dir, "4244.json"),
      JSON.stringify({ ...rec(4244), to: "../x" }),
    );
    await Deno.writeTextFile(join(s.dir, "4245.json"), JSON.stringify(rec(4246)));
    assertEquals(s.d.adopt(), 2);
    // The one whose process ended before the last agent could tell it is told now.
    await waitUntil("4247 told", () => !s.d.has(4247));
    assertEquals(s.link.calls.sort(), ["exit 4247 4", "expect 4242", "expect 4247"]);
    assert(s.d.has(4242) && !s.d.has(4243));
    assertEquals(s.d.runsOn(4242), "node3");
    assertEquals([...Deno.readDirSync(s.dir)].map((e) => e.name), ["4242.json"]);
    assert(s.logs.some((l) => /ignored a deputy record: .*4244\.json: bad node name/.test(l)));
    assert(s.logs.some((l) => /4245\.json: its name is not its PID/.test(l)));
    // Its signals wait for the node it went to to take its relay up again.
    s.d.events.onSignal!(4242, 15);
    const ch = channel();
    s.routes.open(4242, ch);
    assertEquals(signalsSent(ch), [15]);
    // Only that node, with its token, may take the relay up: no token, no relay.
    assertEquals(s.d.relayFor({ token: "0".repeat(32), pid: 4242 }, "node2"), undefined);
  } finally {
    await Deno.remove(s.dir, { recursive: true });
  }
});

Deno.test("deputy records: hostile values are refused", () => {
  const good: DeputyRecord = {
    pid: 4242,
    startTicks: "123",
    name: "prog",
    to: "node2",
    runsOn: "node2",
    token: "0123456789abcdef0123456789abcdef",
    since: "2025-01-01T00:00:00.000Z",
  };
  assertEquals(badDeputyRecord(good), "");
  assertEquals(badDeputyRecord({ ...good, token: "" }), "");
  assertEquals(badDeputyRecord({ ...good, end: { code: 0 } }), "");
  assertEquals(badDeputyRecord({ ...good, end: { signal: 9 } }), "");
  assertEquals(badDeputyRecord({ ...good, end: {} }), "");
  const bad: [string, unknown][] = [
    ["pid", 1],
    ["pid", 0],
    ["pid", 2 ** 40],
    ["pid", "4242"],
    ["startTicks", "12a"],
    ["startTicks", 123],
    ["name", "n".repeat(65)],
    ["to", "../etc"],
    ["to", ""],
    ["runsOn", 5],
    ["token", "../../x"],
    ["token", "0123"],
    ["since", "yesterday"],
    ["since", "2025-01-01T00:00:00.000Z".repeat(3)],
    ["end", { code: 256 }],
    ["end", { code: -1 }],
    ["end", { signal: 0 }],
    ["end", { signal: 1.5 }],
    ["end", { code: "7" }],
    ["end", { code: 0, extra: 1 }],
    ["end", [0]],
    ["end", null],
  ];
  for (const [k, v] of bad) {
    assert(badDeputyRecord({ ...good, [k]: v }) !== "", `${k} = ${JSON.stringify(v)} taken`);
  }
  for (const x of [null, [], "x", 5]) assert(badDeputyRecord(x) !== "");
});
