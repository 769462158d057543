/** bench/lib/scripts.ts: timed guest steps, CRIU's command lines, parsers of the figures. */
import {
  criuDumpArgs,
  criuErrorLine,
  criuPageServerArgs,
  criuRestoreArgs,
  dropRules,
  hasCopyAll,
  parseByteTime,
  parseDu,
  parseStall,
  parseSteps,
  ppmMigrationSample,
  ppmPhases,
  ppmTotalMs,
  shJoin,
  stepMs,
  timedStep,
} from "../../bench/lib/scripts.ts";
import { assert, assertEquals, assertThrows } from "../support/assert.ts";

Deno.test("bench scripts: timed steps run in sh, time themselves and stop at a failure", async () => {
  const script = [
    timedStep("first", "sleep 0.05"),
    timedStep("second", "false"),
    timedStep("never", "true"),
  ].join("\n");
  const out = await new Deno.Command("sh", { args: ["-c", script], stdout: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  assertEquals(out.code, 1);
  const steps = parseSteps(text);
  assert(stepMs(steps, "first") >= 40, text);
  assertEquals(steps.get("second")?.rc, 1);
  assertThrows(() => stepMs(steps, "second"), (e) => /step "second" failed/.test(String(e)));
  assertThrows(() => stepMs(steps, "never"), (e) => /did not reach step "never"/.test(String(e)));
  assertThrows(() => timedStep("bad name", "true"));
});

Deno.test("bench scripts: CRIU's command lines", () => {
  assertEquals(
    shJoin(criuDumpArgs({
      pid: 12345,
      dir: "/tmp/bench/criu-0",
      log: "/tmp/bench/dump-0.log",
      tcp: true,
      pageServer: { address: "10.77.0.2", port: 27000 },
    })),
    "criu dump -t 12345 -D /tmp/bench/criu-0 --shell-job --tcp-established --network-lock " +
      "nftables --page-server --address 10.77.0.2 --port 27000 -v2 -o /tmp/bench/dump-0.log",
  );
  assertEquals(
    shJoin(criuDumpArgs({ pid: 7, dir: "/d", log: "/l", tcp: false })),
    "criu dump -t 7 -D /d --shell-job -v2 -o /l",
  );
  assertEquals(
    shJoin(criuRestoreArgs({ dir: "/d", log: "/l", tcp: true })),
    "criu restore -D /d --shell-job --restore-detached --tcp-established --network-lock nftables -v2 -o /l",
  );
  assertEquals(
    shJoin(criuPageServerArgs({ dir: "/d", port: 27000, log: "/l" })),
    "criu page-server --daemon -D /d --port 27000 -v2 -o /l",
  );
  assertEquals(
    shJoin(criuPageServerArgs({ dir: "/d", port: 27000, log: "/l", pidfile: "/p" })),
    "criu page-server --daemon -D /d --port 27000 --pidfile /p -v2 -o /l",
  );
  // Iterative migration: pre-dumps with memory tracking, each over the one before.
  assertEquals(
    shJoin(criuDumpArgs({
      pid: 7,
      dir: "/d/2",
      log: "/l",
      tcp: false,
      pageServer: { address: "10.77.0.2", port: 27000 },
      prev: "../1",
      pre: true,
    })),
    "criu pre-dump -t 7 -D /d/2 --shell-job --prev-images-dir ../1 --track-mem " +
      "--page-server --address 10.77.0.2 --port 27000 -v2 -o /l",
  );
  assertEquals(
    shJoin(criuDumpArgs({ pid: 7, dir: "/d/final", log: "/l", tcp: false, prev: "../3" })),
    "criu dump -t 7 -D /d/final --shell-job --prev-images-dir ../3 --track-mem -v2 -o /l",
  );
  assertEquals(
    shJoin(criuPageServerArgs({ dir: "/d/2", port: 27000, log: "/l", prev: "../1" })),
    "criu page-server --daemon -D /d/2 --prev-images-dir ../1 --port 27000 -v2 -o /l",
  );
  assertEquals(shJoin(["echo", "a b", "it's"]), `echo 'a b' 'it'\\''s'`);
});

Deno.test("bench scripts: drop rules name the address and port", () => {
  const r = dropRules("ppmbench", "10.77.0.1", 31000);
  assert(r.includes("ip daddr 10.77.0.1 tcp dport 31000 drop"));
  assert(r.startsWith("table inet ppmbench {"));
});

Deno.test("bench scripts: --copy-all is found in ppm migrate --help only when offered", () => {
  assert(hasCopyAll("  --to <node>  the destination\n  --copy-all   send file pages too\n"));
  assert(!hasCopyAll("  --to <node>  the destination\n  --json\n"));
});

Deno.test("bench scripts: parsers of the workloads' lines", () => {
  assertEquals(
    parseStall(
      "tick 0 sent=1 recv=1\nstall 0 ms=12\nok bench_stream conns=1 bytes=5 max_stall_ms=812\n",
    ),
    812,
  );
  assertThrows(() => parseStall("tick 0 sent=1 recv=1\n"));
  assertEquals(parseByteTime("sink bytes=1048576 us=2500\n", "sink"), { bytes: 1048576, ms: 2.5 });
  assertEquals(parseByteTime("x\nfetched bytes=10 us=1000\n", "fetched"), { bytes: 10, ms: 1 });
  assertThrows(() => parseByteTime("nothing", "sink"));
  assertEquals(parseDu("4096\t/tmp/bench/criu-0\n"), 4096);
  assertThrows(() => parseDu("du: cannot access"));
});

/** The shape of `ppm migrate --json` (core/migrate/source.ts). */
const MIGRATE = {
  pid: 23456,
  to: "node2",
  bytes: 1200000,
  sockets: 0,
  timesUs: {
    offer: 5000,
    frozen: 90000,
    dumpAndSend: 60000,
    restoreAndCommit: 30000,
    handOver: 4000,
    total: 95000,
  },
  checkpoint: {
    pid: 23456,
    imageBytes: 1200000,
    timesUs: {
      freeze: 1000,
      dumpCpu: 2000,
      dumpState: 4000,
      dumpMemory: 30000,
      frozen: 33000,
      identity: 500,
      write: 20000,
      total: 55000,
    },
  },
  restore: {
    pages: 300,
    timesUs: {
      load: 1000,
      check: 200,
      plan: 300,
      stub: 500,
      memory: 15000,
      finish: 3000,
      total: 20000,
    },
  },
};

Deno.test("bench scripts: ppm's phases from migrate --json, nothing invented", () => {
  const p = ppmPhases(MIGRATE);
  assertEquals(p, {
    "freeze": 1,
    "dump: CPU state (and socket freeze)": 2,
    "dump: files, descriptors, sockets, timers": 4,
    "dump: memory": 30,
    "dump: file identities": 0.5,
    "transfer": 20,
    "restore: load, checks, plan, stub": 2,
    "restore: memory": 15,
    "restore: CPU state": 3,
    "resume (commit)": 10,
    "the source's copy ends (after the move)": 4,
    "frozen (total)": 90,
  });
  // A figure ppm adds later shows up under its own name.
  const more = structuredClone(MIGRATE) as typeof MIGRATE & {
    checkpoint: { timesUs: Record<string, number> };
  };
  more.checkpoint.timesUs.dumpSockets = 4000;
  more.checkpoint.timesUs.fds = 700;
  const q = ppmPhases(more);
  assertEquals(q["dump: sockets"], 4);
  assertEquals(q["dump: fds"], 0.7);
  // A streamed image: the memory dump carries the transfer, the transfer phase is the tail.
  const streamed = { ...MIGRATE, checkpoint: { ...MIGRATE.checkpoint, streamed: true } };
  const r = ppmPhases(streamed);
  assertEquals(r["dump: memory, sent as it is read (with the transfer)"], 30);
  assertEquals(r["transfer: the image's tail"], 20);
  assertEquals(r["dump: memory"], undefined);
  const st = ppmMigrationSample(JSON.stringify(streamed), {
    workload: "anon-1",
    tool: "ppm",
    round: 0,
  });
  // The records stream out too: state, memory, identities and the tail.
  assertEquals(st.transferMs, 54.5);
});

Deno.test("bench scripts: a migration sample, and errors that show what ppm printed", () => {
  const s = ppmMigrationSample(JSON.stringify(MIGRATE), {
    workload: "anon-1",
    tool: "ppm",
    round: 3,
    writtenBytes: 1048576,
  });
  assertEquals([s.kind, s.tool, s.round, s.freezeMs, s.bytes, s.transferMs], [
    "migrate",
    "ppm",
    3,
    90,
    1200000,
    20,
  ]);
  assertThrows(
    () => ppmMigrationSample("error: no agent", { workload: "x", tool: "ppm", round: 0 }),
    (e) => /printed no JSON:\nerror: no agent/.test(String(e)),
  );
  assertThrows(() => ppmMigrationSample("{}", { workload: "x", tool: "ppm", round: 0 }));
  // The whole migration only when asked for; without a deputy, ppm's total.
  assertEquals(s.totalMs, undefined);
  const at = { workload: "mpi-64", tool: "ppm" as const, round: 0, total: true };
  assertEquals(ppmMigrationSample(JSON.stringify(MIGRATE), at).totalMs, 95);
  const { total: _, ...noTotal } = MIGRATE.timesUs;
  assertThrows(
    () => ppmMigrationSample(JSON.stringify({ ...MIGRATE, timesUs: noTotal }), at),
    (e) => /lacks timesUs\.total/.test(String(e)),
  );
  assertEquals(ppmTotalMs(JSON.stringify({ timesUs: { total: 2500 } }), "ppm restore"), 2.5);
  assertThrows(() => ppmTotalMs("{}", "ppm restore"));
});

Deno.test("bench scripts: a deputy's standing in is part of the whole migration, not the freeze", () => {
  const j = { ...MIGRATE, timesUs: { ...MIGRATE.timesUs, deputy: 7000 }, deputy: { pid: 23456 } };
  const s = ppmMigrationSample(JSON.stringify(j), {
    workload: "mpi-64",
    tool: "ppm",
    round: 1,
    total: true,
  });
  assertEquals([s.freezeMs, s.totalMs], [90, 102]);
  assertEquals(s.phasesMs!["deputy stands in (after the move)"], 7);
  assertEquals(ppmPhases(MIGRATE)["deputy stands in (after the move)"], undefined);
});

Deno.test("bench scripts: CRIU's error line is its first Error, without the time", () => {
  const log = [
    "criu dump failed (exit 1)",
    "--- /tmp/bench/j-mpi-64-criu-0.dump.log (node2), last lines ---",
    "(00.041234) Warn  (criu/util.c:12): something harmless",
    "(00.052010) Error (criu/sk-unix.c:862): unix: Can't dump half of stream unix connection.",
    "(00.052100) Error (criu/cr-dump.c:1598): Dump files (pid: 23456) failed with -1",
  ].join("\n");
  assertEquals(
    criuErrorLine(log),
    "Error (criu/sk-unix.c:862): unix: Can't dump half of stream unix connection.",
  );
  assertEquals(
    criuErrorLine("\n  criu dump failed (exit 1)\nno log\n"),
    "criu dump failed (exit 1)",
  );
  assertEquals(criuErrorLine(""), "");
});
