/** The control socket's request schema: every request the CLI sends fits; hostile lines do not. */
import { parseControlRequest } from "../../core/agent/control_schema.ts";
import { EXIT, PpmError } from "../../core/errors.ts";
import { assertEquals, assertMatch } from "../support/assert.ts";

function refusal(line: string): PpmError {
  try {
    parseControlRequest(line);
  } catch (e) {
    if (e instanceof PpmError) return e;
    throw e;
  }
  throw new Error(`accepted: ${line}`);
}

Deno.test("control requests the CLI sends are accepted as they are", () => {
  for (
    const r of [
      { op: "status" },
      { op: "peers" },
      { op: "ps" },
      { op: "migrate", pid: 4242, to: "node2", timeoutMs: 120_000, deadlineMs: 30_000 },
      { op: "migrate", pid: 4242, to: "10.77.0.2", copyAll: true },
      { op: "migrate", pid: 4242, to: "node2", precopyRounds: 0, precopyMinBytes: 1 << 25 },
      { op: "manage", pid: 7, name: "job", by: "run" },
      { op: "unmanage", pid: 7 },
      { op: "wait", pid: 7, timeoutMs: 30_000 },
      { op: "balance", dryRun: true },
      { op: "drain" },
      { op: "undrain" },
      { op: "cordon" },
      { op: "uncordon" },
    ]
  ) assertEquals(parseControlRequest(JSON.stringify(r)) as unknown, r);
});

Deno.test("hostile control requests are refused with where they go wrong", () => {
  const cases: [string, RegExp][] = [
    ["not json", /not JSON/],
    ["null", /request/],
    ["[]", /request/],
    ['{"op":"bogus"}', /request/],
    ['{"op":"status","extra":1}', /status/],
    ['{"op":"migrate","pid":"1; rm -rf /","to":"x"}', /migrate\.pid/],
    ['{"op":"migrate","pid":-1,"to":"x"}', /migrate\.pid/],
    ['{"op":"migrate","pid":1.5,"to":"x"}', /migrate\.pid/],
    ['{"op":"migrate","pid":99999999999,"to":"x"}', /migrate\.pid/],
    ['{"op":"migrate","pid":7,"to":""}', /migrate\.to/],
    [`{"op":"migrate","pid":7,"to":"${"x".repeat(300)}"}`, /migrate\.to/],
    ['{"op":"migrate","pid":7,"to":"x","timeoutMs":1e300}', /migrate\.timeoutMs/],
    ['{"op":"migrate","pid":7,"to":"x","copyAll":"yes"}', /migrate\.copyAll/],
    ['{"op":"migrate","pid":7,"to":"x","precopyRounds":17}', /migrate\.precopyRounds/],
    ['{"op":"migrate","pid":7,"to":"x","precopyRounds":-1}', /migrate\.precopyRounds/],
    ['{"op":"migrate","pid":7,"to":"x","precopyRounds":1.5}', /migrate\.precopyRounds/],
    ['{"op":"migrate","pid":7,"to":"x","precopyMinBytes":"4"}', /migrate\.precopyMinBytes/],
    ['{"op":"manage","pid":7,"by":"root"}', /manage\.by/],
    ['{"op":"balance"}', /balance\.dryRun/],
    ['{"op":"wait","pid":7,"timeoutMs":-5}', /wait\.timeoutMs/],
    ['{"op":"__proto__","pid":7}', /request/],
  ];
  for (const [line, why] of cases) {
    const e = refusal(line);
    assertEquals(e.exitCode, EXIT.USAGE, line);
    assertMatch(`${e.what}: ${e.why}`, why, line);
  }
});
