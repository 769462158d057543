/**
 * `--progress=json`: NDJSON events on stdout for scripts, ending in one
 * `result` or `error` line; nothing of the kind on a terminal.
 */
import { join } from "node:path";
import { type Emit, serveControl } from "../../core/agent/control.ts";
import {
  errorEvent,
  eventLine,
  ndjsonRequested,
  parseProgressMode,
  Progress,
} from "../../cli/events.ts";
import { EXIT, PpmError } from "../../core/errors.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "../support/assert.ts";
import { ppm } from "../support/cli.ts";

Deno.test("--progress values: auto, json, none; anything else is a usage error", () => {
  assertEquals(parseProgressMode(undefined), "auto");
  for (const m of ["auto", "json", "none"] as const) assertEquals(parseProgressMode(m), m);
  for (const bad of ["JSON", "", "json\n", "ndjson"]) {
    assertThrows(
      () => parseProgressMode(bad),
      (e) => e instanceof PpmError && e.exitCode === EXIT.USAGE,
    );
  }
});

Deno.test("NDJSON only when asked and stdout is not a terminal; never past --", () => {
  assert(ndjsonRequested(["migrate", "1", "--progress=json"], false));
  assert(ndjsonRequested(["drain", "--progress", "json"], false));
  assert(!ndjsonRequested(["drain", "--progress", "json"], true));
  assert(!ndjsonRequested(["drain", "--progress=none"], false));
  assert(!ndjsonRequested(["run", "--", "x", "--progress=json"], false));
});

Deno.test("events are one line each, whatever the values hold", () => {
  const lines: string[] = [];
  const p = new Progress("json", "x", false, {
    stdoutTerminal: false,
    stderrTerminal: false,
    write: (s) => lines.push(s),
  });
  assert(p.ndjson);
  p.event("start", { name: "a\nb\u2028c", big: 2n ** 70n });
  p.transfer(10, 100);
  p.transfer(20, 100); // within 250 ms of the last: left out
  p.report(true, { pid: 7 }, () => "text");
  assertEquals(lines.length, 3);
  for (const l of lines) assert(!l.includes("\n"), l);
  const ev = lines.map((l) => JSON.parse(l));
  assertEquals(ev.map((e) => e.event), ["start", "transfer", "result"]);
  assertEquals(ev[0].name, "a\nb\u2028c");
  assertEquals(ev[0].big, (2n ** 70n).toString());
  assertEquals([ev[1].bytes, ev[1].expected], [10, 100]);
  assertEquals(ev[2], { event: "result", t: ev[2].t, ok: true, result: { pid: 7 } });
  assert(ev.every((e) => typeof e.t === "number" && e.t >= 0));
});

Deno.test("a terminal on stdout, or --progress=none, gets no events", () => {
  for (const [mode, term] of [["json", true], ["none", false], ["auto", false]] as const) {
    const lines: string[] = [];
    const p = new Progress(mode, "x", false, {
      stdoutTerminal: term,
      stderrTerminal: false,
      write: (s) => lines.push(s),
    });
    p.event("start");
    p.transfer(1, 2);
    assertEquals(lines, []);
  }
});

Deno.test("the error event carries what, why, what to do and the exit code", () => {
  const e = JSON.parse(errorEvent(new PpmError("no", "because", "do this", EXIT.TIMEOUT), 7));
  assertEquals(e, {
    event: "error",
    ok: false,
    error: { error: "no", reason: "because", fix: "do this", exitCode: EXIT.TIMEOUT },
  });
  assertEquals(JSON.parse(eventLine("x", undefined, {})), { event: "x" });
});

Deno.test("ppm migrate --progress=json: start, phases, transfer, result, as the agent says them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ppm-events-" });
  const sock = join(dir, "ppm.sock");
  const ac = new AbortController();
  const served = serveControl(
    sock,
    async (req, emit: Emit) => {
      if (req.op !== "migrate") throw new Error(`unexpected ${req.op}`);
      for (const phase of ["offer", "dump"]) emit({ phase });
      emit({ progress: { sent: 1 << 20, expected: 4 << 20 } });
      for (const phase of ["restore", "commit"]) emit({ phase });
      await Promise.resolve();
      return { pid: req.pid, to: req.to, bytes: 4 << 20, timesUs: { frozen: 1000 } };
    },
    ac.signal,
    () => {},
  );
  try {
    const r = await ppm([
      "migrate",
      "4242",
      "--to",
      "node2",
      "--control-socket",
      sock,
      "--progress=json",
    ]);
    assertEquals(r.code, 0, r.stderr);
    const ev = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(ev.map((e) => e.event), [
      "start",
      "phase",
      "phase",
      "transfer",
      "phase",
      "phase",
      "result",
    ]);
    assertEquals(ev.filter((e) => e.phase).map((e) => e.phase), [
      "offer",
      "dump",
      "restore",
      "commit",
    ]);
    assertEquals(ev.at(-1).result.pid, 4242);
    assertEquals(r.stderr, "");

    // The agent refuses: the last line is the error, the message for people on stderr.
    const bad = await ppm([
      "migrate",
      "4242",
      "--to",
      "node2",
      "--control-socket",
      join(dir, "absent.sock"),
      "--progress=json",
    ]);
    assert(bad.code !== 0);
    const last = JSON.parse(bad.stdout.trim().split("\n").at(-1)!);
    assertEquals([last.event, last.ok, last.error.exitCode], ["error", false, bad.code]);
    assertMatch(bad.stderr, /agent/);

    // A usage error is an error event too.
    const usage = await ppm(["migrate", "4242", "--progress=json"]);
    assertEquals(usage.code, EXIT.USAGE);
    const u = JSON.parse(usage.stdout.trim());
    assertEquals([u.event, u.error.error], ["error", "bad command line"]);
    assertMatch(u.error.reason, /--to/);
  } finally {
    ac.abort();
    await served.catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});
