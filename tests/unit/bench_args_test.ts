/** bench/lib/args.ts and the host facts' parsers. */
import { parseArgs } from "../../bench/lib/args.ts";
import { cpuModel, memTotalMiB } from "../../bench/lib/environment.ts";
import { killOurs, lives } from "../../bench/lib/measure.ts";
import { assertEquals, assertMatch, assertThrows } from "../support/assert.ts";

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
