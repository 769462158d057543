/** bench/lib/args.ts, the workloads, the host facts' parsers and measure.ts's pure parts. */
import { parseArgs } from "../../bench/lib/args.ts";
import { cpuModel, memTotalMiB } from "../../bench/lib/environment.ts";
import {
  anonCommand,
  killOurs,
  lives,
  MAX_ROUNDS,
  portOf,
  PORTS,
} from "../../bench/lib/measure.ts";
import { TOOLS } from "../../bench/lib/types.ts";
import { nodesFor, workloadInfo, WORKLOADS, workloadsFor } from "../../bench/lib/workloads.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "../support/assert.ts";

Deno.test("bench args: defaults, quick, rounds, out, json", () => {
  assertEquals(parseArgs([], "/r"), {
    quick: false,
    json: false,
    out: "/r",
    rounds: 5,
    help: false,
    workloads: [],
  });
  assertEquals(parseArgs(["--quick", "--json"], "/r").rounds, 2);
  assertEquals(parseArgs(["--rounds", "7", "--out", "/x"], "/r"), {
    quick: false,
    json: false,
    out: "/x",
    rounds: 7,
    help: false,
    workloads: [],
  });
  assertEquals(parseArgs(["--workloads", "anon-256,tcp-1"], "/r").workloads, ["anon-256", "tcp-1"]);
  assertThrows(
    () => parseArgs(["--workloads", "anon-2"], "/r"),
    (e) => /--workloads takes ids from anon-1, .*got "anon-2"/.test(String(e)),
  );
  assertThrows(() => parseArgs(["--workloads", ","], "/r"));
  assertThrows(() => parseArgs(["--quick", "--workloads", "anon-1"], "/r"));
  assertThrows(() => parseArgs(["--rounds", "0"], "/r"));
  assertThrows(() => parseArgs(["--rounds", "50"], "/r"));
  assertThrows(() => parseArgs(["--out"], "/r"));
  assertThrows(
    () => parseArgs(["--fast"], "/r"),
    (e) => /unknown argument "--fast"/.test(String(e)),
  );
});

Deno.test("bench workloads: quick is anon-1 alone; threads-64 is anon-64's memory in 8 threads", () => {
  assertEquals(workloadsFor("quick").map((w) => w.id), ["anon-1"]);
  assertEquals(workloadsFor("full").map((w) => w.id), [
    "anon-1",
    "anon-64",
    "threads-64",
    "anon-256",
    "dirty-1g",
    "tcp-1",
    "listen-8",
    "mpi-64",
  ]);
  assertEquals(workloadsFor("partial", ["threads-64"]).map((w) => w.id), ["threads-64"]);
  const t = WORKLOADS.find((w) => w.id === "threads-64")!;
  const anon = WORKLOADS.find((w) => w.id === "anon-64")!;
  assertEquals([t.mib, t.connections, t.threads, t.local], [anon.mib, 0, 8, true]);
  assertEquals(t.title, "64 MiB anonymous memory, 8 threads");
  assert(WORKLOADS.every((w) => w.id === "threads-64" || w.threads === 1));
  assertEquals(workloadInfo(t), {
    id: "threads-64",
    title: "64 MiB anonymous memory, 8 threads",
    mib: 64,
    connections: 0,
    threads: 8,
  });
  assertEquals(parseArgs(["--workloads", "threads-64"], "/r").workloads, ["threads-64"]);
});

Deno.test("bench measure: bench_anon's command line names THREADS only for a threaded workload", () => {
  const w = (id: string) => WORKLOADS.find((x) => x.id === id)!;
  assertEquals(
    anonCommand("/b/bench_anon", w("anon-64"), "/tmp/bench/x.out"),
    "/b/bench_anon 1000000 64 < /dev/null > /tmp/bench/x.out 2>&1 & echo $!",
  );
  assertEquals(
    anonCommand("/b/bench_anon", w("threads-64"), "/tmp/bench/x.out"),
    "/b/bench_anon 1000000 64 8 < /dev/null > /tmp/bench/x.out 2>&1 & echo $!",
  );
  // The dirtying workload: 2 MiB each tick (THREADS then STRIPES).
  assertEquals(
    anonCommand("/b/bench_anon", w("dirty-1g"), "/tmp/bench/x.out"),
    "/b/bench_anon 1000000 1024 1 2 < /dev/null > /tmp/bench/x.out 2>&1 & echo $!",
  );
});

Deno.test("bench measure: every round, workload and tool has its own port, in its use's range", () => {
  const bases = Object.values(PORTS).sort((a, b) => a - b);
  for (const [name, base] of Object.entries(PORTS)) {
    if (name === "link") continue; // one port per round: PORTS.link + round
    const seen = new Set<number>();
    for (let round = 0; round < MAX_ROUNDS; round++) {
      for (let k = 0; k < WORKLOADS.length; k++) {
        for (let t = 0; t < TOOLS.length; t++) {
          const p = portOf(base, round, k, t);
          assert(!seen.has(p), `${name}: port ${p} twice (round ${round}, workload ${k})`);
          seen.add(p);
          const next = bases.find((b) => b > base);
          assert(next === undefined || p < next, `${name}: port ${p} runs into ${next}`);
          assert(p < 65536);
        }
      }
    }
  }
  assertThrows(() => portOf(PORTS.copy, 0, 10, 0));
  assertThrows(() => portOf(PORTS.copy, 0, 0, 5));
});

Deno.test("bench environment: CPU model and memory from /proc text", () => {
  assertEquals(
    cpuModel("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: x\n"),
    "AMD EPYC 7B13",
  );
  assertEquals(cpuModel(""), "unknown CPU");
  assertEquals(memTotalMiB("MemTotal:       24683520 kB\n"), 24105);
});

Deno.test("bench measure: kills only a live process of ours, by PID and name", () => {
  assertMatch(lives(12345, "bench_anon"), /\/proc\/12345\/comm.*= bench_anon/);
  assertMatch(
    killOurs(12345, "echo_server", "USR1"),
    /^if .*echo_server.*; then kill -USR1 12345; fi/,
  );
});

Deno.test("bench measure: the kill guard holds in sh: a process of another name is spared", async () => {
  const sleeper = new Deno.Command("sleep", { args: ["30"] }).spawn();
  try {
    const r = await new Deno.Command("sh", {
      args: ["-c", `${killOurs(sleeper.pid, "bench_anon")}; ${lives(sleeper.pid, "sleep")}`],
    }).output();
    assertEquals(r.code, 0, "the guard killed a process that is not ours");
  } finally {
    sleeper.kill("SIGKILL");
    await sleeper.status;
  }
});

Deno.test("bench workloads: mpi-64 is in a full run and on demand, not in --quick; it needs 3 nodes", () => {
  const mpi = WORKLOADS.find((w) => w.id === "mpi-64")!;
  assertEquals([mpi.mib, mpi.ranks, mpi.local], [64, 3, false]);
  assertEquals(workloadInfo(mpi), {
    id: "mpi-64",
    title: "one rank of a 3-rank MPI job, 64 MiB per rank",
    mib: 64,
    connections: 2,
    threads: 1,
    ranks: 3,
  });
  assert(!("ranks" in workloadInfo(WORKLOADS[0])));
  assertEquals(nodesFor(workloadsFor("quick")), 2);
  assertEquals(nodesFor(workloadsFor("full")), 3);
  assertEquals(nodesFor(workloadsFor("partial", ["anon-64", "tcp-1"])), 2);
  const args = parseArgs(["--workloads", "mpi-64"], "/r");
  assertEquals(args.workloads, ["mpi-64"]);
  assertEquals(workloadsFor("partial", args.workloads).map((w) => w.id), ["mpi-64"]);
  assertEquals(nodesFor(workloadsFor("partial", args.workloads)), 3);
  assertEquals(parseArgs(["--quick"], "/r").workloads, []);
});
