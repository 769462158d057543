/** The agent's /proc readings and who may manage a process. */
import { checkMayManage, manageRefusal, ROOT } from "../../core/agent/permission.ts";
import {
  parseAnonymous,
  parseBootTime,
  parseProcIds,
  parseProcStatLine,
  type ProcFacts,
  readProcFacts,
  startedAtSeconds,
} from "../../core/agent/procfs.ts";
import { EXIT, PpmError } from "../../core/errors.ts";
import { assert, assertEquals, assertThrows } from "../support/assert.ts";

const STAT = "7750 (my prog) x) R 7746 7746 5366 0 -1 4194304 98 0 0 0 250 50 0 0 20 0 3 0 " +
  "1197220 3133440 416 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";

Deno.test("agent procfs: stat with a ) in the name, CPU ticks, threads, start ticks", () => {
  assertEquals(parseProcStatLine(STAT), {
    comm: "my prog) x",
    state: "R",
    ppid: 7746,
    kernelThread: false,
    cpuTicks: 300,
    nice: 0,
    threads: 3,
    startTicks: 1197220,
    rtPriority: 0,
    policy: 0,
  });
  const kthread = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0 0";
  assertEquals(parseProcStatLine(kthread)?.kernelThread, true);
  assertEquals(parseProcStatLine("garbage"), null);
  assertEquals(parseProcStatLine("1 (x) R 1 2"), null);
});

Deno.test("agent procfs: ids, anonymous memory, boot time, start seconds", () => {
  const status = "Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\n";
  assertEquals(parseProcIds(status), {
    uids: [1000, 1000, 1000, 1000],
    gids: [100, 100, 100, 100],
  });
  assertEquals(parseProcIds("Uid:\t1 2\n"), null);
  assertEquals(parseAnonymous("Rss: 10 kB\nAnonymous:        2048 kB\n"), 2 * 1024 * 1024);
  assertEquals(parseAnonymous(""), null);
  assertEquals(parseBootTime("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"), 1700000000);
  assertEquals(startedAtSeconds(1700000000, 12345), 1700000123.45);
});

Deno.test("agent procfs: this test's own process reads back", async () => {
  const f = await readProcFacts(Deno.pid);
  assert(f, "no facts for the test's own process");
  assertEquals([f.pid, f.kernelThread, f.uids.length], [Deno.pid, false, 4]);
  assert(f.threads >= 1 && f.memory > 0, JSON.stringify(f));
  assertEquals(await readProcFacts(2 ** 22 + 7), null);
});

function facts(o: Partial<ProcFacts> = {}): ProcFacts {
  return {
    pid: 500,
    comm: "job",
    state: "R",
    ppid: 400,
    kernelThread: false,
    cpuTicks: 0,
    nice: 0,
    threads: 1,
    startTicks: 1,
    rtPriority: 0,
    policy: 0,
    uids: [1000, 1000, 1000, 1000],
    gids: [100, 100, 100, 100],
    procOwner: 1000,
    memory: 0,
    ...o,
  };
}

Deno.test("agent permission: root or the owner where ptrace would be allowed", () => {
  const owner = { uid: 1000, gid: 100 };
  assertEquals(manageRefusal(ROOT, facts(), 99), "");
  assertEquals(manageRefusal(owner, facts(), 99), "");
  assertEquals(
    manageRefusal({ uid: 1001, gid: 100 }, facts(), 99),
    "it belongs to uid 1000, not to you (uid 1001)",
  );
  // A setuid program: its saved uid is not the caller's.
  assert(manageRefusal(owner, facts({ uids: [1000, 0, 0, 0] }), 99).startsWith("it belongs"));
  assert(manageRefusal(owner, facts({ gids: [100, 5, 5, 5] }), 99).startsWith("its groups"));
  assert(manageRefusal(owner, facts({ procOwner: 0 }), 99).includes("not dumpable"));
  // Never, for anyone.
  assertEquals(manageRefusal(ROOT, facts({ kernelThread: true }), 99), "it is a kernel thread");
  assertEquals(manageRefusal(ROOT, facts({ pid: 1 }), 99), "it is init (PID 1)");
  assertEquals(manageRefusal(ROOT, facts({ pid: 99 }), 99), "it is the ppm agent itself");
  assert(manageRefusal(ROOT, facts({ state: "Z" }), 99).includes("zombie"));
  assertThrows(
    () => checkMayManage({ uid: 1001, gid: 100 }, facts(), 99),
    (e) => e instanceof PpmError && e.exitCode === EXIT.PERMISSION,
  );
  assertThrows(
    () => checkMayManage(ROOT, facts({ pid: 1 }), 99),
    (e) => e instanceof PpmError && e.exitCode === EXIT.FAILURE,
  );
});
