/** The agent's process table and its periodic sweep (exits collected and sent back). */
import { exitOf, shellCode } from "../../core/agent/exits.ts";
import type { ExitMessage } from "../../core/migrate/messages.ts";
import { decodeWaitStatus } from "../../ffi/libc.ts";
import { ProcessTable } from "../../core/agent/processes.ts";
import type { ProcStatFields } from "../../core/agent/procfs.ts";
import { sweep } from "../../core/agent/sweep.ts";
import type { MigrationChannel } from "../../core/transport/channel.ts";
import { assert, assertEquals } from "../support/assert.ts";

const manual = { kind: "manual" as const, by: "ppm migrate" };

Deno.test("agent table: run/manage, unmanage, and a PID that is not managed", () => {
  const t = new ProcessTable("node1", () => 1000);
  const e = t.manage({ pid: 42, name: "job", startedAt: 990, startTicks: 7, by: "run" });
  assertEquals([e.direction, e.managed, e.origin, e.managedBy], [
    "local",
    true,
    { node: "node1", pid: 42 },
    "run",
  ]);
  assertEquals(t.managedHere().length, 1);
  // Managing again keeps one entry.
  t.manage({ pid: 42, name: "other", startedAt: 990, startTicks: 7, by: "manage" });
  assertEquals(t.list().length, 1);
  assertEquals(t.list()[0].name, "job");
  assert(t.unmanage(42));
  assert(!t.unmanage(42));
  assertEquals(t.list(), []);
});

Deno.test("agent table: a move records why; the destination learns it by the handover", () => {
  const src = new ProcessTable("node1", () => 1000);
  src.manage({ pid: 42, name: "job", startedAt: 990, startTicks: 7, by: "run" });
  const h = src.left(42, "node2", 42, manual, "job");
  assertEquals(h, {
    op: "handover",
    pid: 42,
    managed: true,
    name: "job",
    startedAt: 990,
    why: manual,
  });
  const left = src.departed(42)!;
  assertEquals([left.direction, left.current, left.moves, left.why], [
    "left",
    { node: "node2", pid: 42 },
    1,
    manual,
  ]);
  assertEquals(src.running(42), undefined);

  const dst = new ProcessTable("node2", () => 1001);
  dst.arrived({
    pid: 42,
    from: "node1",
    origin: { node: "node1", pid: 42 },
    moves: 1,
    at: new Date(1001_000).toISOString(),
    name: "job",
    startTicks: 9,
  });
  assertEquals(dst.managedHere(), []); // not before the handover
  assert(dst.handover(h));
  const e = dst.running(42)!;
  assertEquals([e.managed, e.managedBy, e.startedAt, e.arrivedAt, e.cameFrom, e.why], [
    true,
    "migration",
    990,
    1001,
    "node1",
    manual,
  ]);
  // An unmanaged process moved by hand arrives unmanaged.
  assert(!dst.handover({ ...h, pid: 77 }));
});

Deno.test("agent table: a process that comes back is one entry; exits are recorded", () => {
  const t = new ProcessTable("node1", () => 1000);
  t.manage({ pid: 42, name: "job", startedAt: 990, startTicks: 7, by: "run" });
  t.left(42, "node2", 42, manual, "job");
  t.arrived({
    pid: 42,
    from: "node2",
    origin: { node: "node1", pid: 42 },
    moves: 2,
    at: new Date().toISOString(),
    name: "job",
  });
  assertEquals(t.list().length, 1);
  assertEquals(t.list()[0].direction, "arrived");
  t.left(42, "node3", 42, manual, "job");
  t.exitedElsewhere(42, { code: 3, node: "node3", at: "x" });
  t.relayEnded(42);
  const d = t.departed(42)!;
  assertEquals([d.exit?.code, d.moves, typeof d.relayEndedAt], [3, 3, "string"]);
});

Deno.test("wait statuses: decoded as the C macros do", () => {
  const exited = decodeWaitStatus(3 << 8);
  assertEquals([exited.exited, exited.code, exited.signaled, exited.stopped], [
    true,
    3,
    false,
    false,
  ]);
  const killed = decodeWaitStatus(0x89); // SIGKILL, core dumped
  assertEquals([killed.exited, killed.signaled, killed.signal, killed.stopped], [
    false,
    true,
    9,
    false,
  ]);
  // A ptrace event stop: SIGTRAP with PTRACE_EVENT_STOP (128) above it.
  const stop = decodeWaitStatus((128 << 16) | (5 << 8) | 0x7f);
  assertEquals([stop.exited, stop.signaled, stop.stopped, stop.stopSig, stop.event], [
    false,
    false,
    true,
    5,
    128,
  ]);
  const syscall = decodeWaitStatus(((5 | 0x80) << 8) | 0x7f);
  assertEquals([syscall.stopped, syscall.stopSig, syscall.event], [true, 0x85, 0]);
  assertEquals(decodeWaitStatus(0).event, 0);
});

Deno.test("agent exits: wait statuses and shell codes", () => {
  assertEquals(exitOf(decodeWaitStatus(3 << 8)), { code: 3 });
  assertEquals(exitOf(decodeWaitStatus(9)), { signal: 9 });
  assertEquals(exitOf(decodeWaitStatus(0x89)), { signal: 9 }); // with a core dump
  assertEquals(exitOf(decodeWaitStatus(0x137f)), {}); // stopped: not an end
  assertEquals(exitOf(decodeWaitStatus(0xffff)), {}); // continued: not an end
  assertEquals(shellCode({ code: 0 }), 0);
  assertEquals(shellCode({ signal: 15 }), 143);
  assertEquals(shellCode({}), null);
});

function stat(o: Partial<ProcStatFields> = {}): ProcStatFields {
  return {
    comm: "job",
    state: "R",
    ppid: 1,
    kernelThread: false,
    cpuTicks: 0,
    nice: 0,
    threads: 1,
    startTicks: 9,
    rtPriority: 0,
    policy: 0,
    ...o,
  };
}

Deno.test("agent sweep: an arrived process that ended is collected and its exit goes back", async () => {
  const t = new ProcessTable("node2");
  const at = new Date().toISOString();
  for (const pid of [42, 43, 44]) {
    t.arrived({ pid, from: "node1", origin: { node: "node1", pid }, moves: 1, at, name: "j" });
  }
  t.manage({ pid: 50, name: "local", startedAt: 1, startTicks: 5, by: "manage" });
  const sent: ExitMessage[] = [];
  const conn = { send: (m: unknown) => (sent.push(m as ExitMessage), Promise.resolve()) };
  const upstream = new Map([[42, conn as unknown as MigrationChannel]]);
  const stats: Record<number, ProcStatFields | null> = {
    42: stat({ state: "Z" }),
    43: stat(), // still runs
    44: stat({ state: "Z" }), // being migrated: left alone
    50: stat({ startTicks: 6 }), // the PID was reused: the managed process ended
  };
  const reaped: number[] = [];
  await sweep({
    table: t,
    busy: new Set([44]),
    upstream,
    stat: (pid) => Promise.resolve(stats[pid] ?? null),
    reap: (pid) => (reaped.push(pid), { code: 7 }),
    log: () => {},
  });
  assertEquals(reaped, [42]);
  assertEquals(sent, [{ op: "exited", pid: 42, node: "node2", code: 7 }]);
  assertEquals(upstream.size, 0);
  assertEquals(t.running(42), undefined);
  assertEquals(t.list().find((e) => e.current.pid === 42)?.exit?.code, 7);
  assert(t.running(43) && t.running(44));
  assertEquals(t.running(50), undefined);
  assertEquals(t.managedHere().length, 0);
});

Deno.test("agent sweep: a zombie leader whose threads still end is collected by a later sweep", async () => {
  const t = new ProcessTable("node2");
  const at = new Date().toISOString();
  t.arrived({
    pid: 42,
    from: "node1",
    origin: { node: "node1", pid: 42 },
    moves: 1,
    at,
    name: "go",
  });
  const sent: ExitMessage[] = [];
  const conn = { send: (m: unknown) => (sent.push(m as ExitMessage), Promise.resolve()) };
  const upstream = new Map([[42, conn as unknown as MigrationChannel]]);
  const results: ({ signal: number } | "pending")[] = ["pending", { signal: 9 }];
  const deps = {
    table: t,
    busy: new Set<number>(),
    upstream,
    stat: () => Promise.resolve(stat({ state: "Z" })),
    reap: () => results.shift()!,
    log: () => {},
  };
  await sweep(deps);
  assert(t.running(42), "recorded as ended while its threads were still ending");
  assertEquals(sent, []);
  await sweep(deps);
  assertEquals(t.running(42), undefined);
  assertEquals(sent, [{ op: "exited", pid: 42, node: "node2", signal: 9 }]);
});
