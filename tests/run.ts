/**
 * `deno task test`: the whole suite, in order: static checks (fmt, lint,
 * type check), host unit tests, module builds with checkpatch, and the
 * guest tests in virtual clusters. Beside the unit tests, the packages and
 * kernels the later phases need install (tests/support/prepare.ts).
 * `--only unit` runs the fast host part.
 * Ends with one line "N passed, N failed".
 *
 * The guest tests run one file after the other, each its own `deno test`
 * (its failures told at its end). `--lanes 2` runs them in two lanes at
 * once instead, the three-node tests in one and the one-node and short
 * ones in the other, their lines prefixed with the lane: on a machine with
 * more than two cores. On two, the guests' emulation takes both cores and
 * each test runs twice as long, past some of their bounds.
 *
 * @module
 */

import { join } from "node:path";
import { PROJECT_ROOT } from "../core/paths.ts";

interface Phase {
  name: string;
  kind: "static" | "unit" | "kmod" | "guest";
  args: string[];
}

/**
 * The first lane's order: the balancing test last, when the second lane
 * is over (it measures load, and needs the CPU its six busy processes
 * ask for). A file of tests/guest in neither list runs first in this lane.
 */
const FIRST_LANE = [
  "migrate_test.ts",
  "socket_test.ts",
  "operations_test.ts",
  "balance_test.ts",
];

/**
 * The guest tests of the second lane, longest first. Clusters of one lane
 * are up one at a time (two tests that share a cluster name must share a
 * lane).
 */
const SECOND_LANE = [
  "checkpoint_test.ts",
  "security_kmod_test.ts",
  "security_test.ts",
  "bench_quick_test.ts",
  "demo_test.ts",
  "module_6_1_test.ts",
  "module_6_12_test.ts",
  "systemd_boot_test.ts",
];

const PHASES: Phase[] = [
  { name: "deno fmt --check", kind: "static", args: ["fmt", "--check"] },
  { name: "deno lint", kind: "static", args: ["lint"] },
  {
    name: "deno check",
    kind: "static",
    args: ["check", "cli/main.ts", "build.ts", "bench/", "tests/"],
  },
  { name: "host unit tests", kind: "unit", args: ["test", "-A", "tests/unit/"] },
  { name: "module builds and checkpatch", kind: "kmod", args: ["test", "-A", "tests/kmod/"] },
  { name: "guest tests", kind: "guest", args: ["test", "-A", "tests/guest/"] },
];

function parseOnly(args: string[]): Set<string> | undefined {
  const i = args.indexOf("--only");
  return i >= 0 ? new Set(args[i + 1].split(",")) : undefined;
}

function parseLanes(args: string[]): number {
  const i = args.indexOf("--lanes");
  return i >= 0 && args[i + 1] === "2" ? 2 : 1;
}

interface Counts {
  passed: number;
  failed: number;
}

/**
 * Runs `deno args` in the project, copying its output to ours (each line
 * after `prefix` when one is given); resolves to its counts.
 */
async function runDeno(args: string[], prefix = ""): Promise<Counts> {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: PROJECT_ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let text = "";
  const copy = async (s: ReadableStream<Uint8Array>, to: typeof Deno.stdout) => {
    const dec = new TextDecoder();
    const enc = new TextEncoder();
    let partial = "";
    for await (const chunk of s) {
      const part = dec.decode(chunk, { stream: true });
      if (to === Deno.stdout) text += part;
      if (!prefix) {
        to.writeSync(chunk);
        continue;
      }
      const lines = (partial + part).split("\n");
      partial = lines.pop()!;
      if (lines.length) to.writeSync(enc.encode(lines.map((l) => prefix + l + "\n").join("")));
    }
    if (partial) to.writeSync(enc.encode(prefix + partial + "\n"));
  };
  await Promise.all([copy(child.stdout, Deno.stdout), copy(child.stderr, Deno.stderr)]);
  const { code } = await child.status;
  const m = text.match(/(ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/);
  const passed = m ? Number(m[2]) : code === 0 ? 1 : 0;
  let failed = m ? Number(m[3]) : code === 0 ? 0 : 1;
  if (code !== 0 && failed === 0) failed = 1;
  return { passed, failed };
}

/** The guest test files in two lanes (see the module's text). */
async function guestLanes(lanes: number): Promise<string[][]> {
  const all: string[] = [];
  for await (const e of Deno.readDir(join(PROJECT_ROOT, "tests", "guest"))) {
    if (e.isFile && e.name.endsWith("_test.ts")) all.push(e.name);
  }
  all.sort();
  const path = (f: string) => `tests/guest/${f}`;
  if (lanes < 2) return [all.map(path)];
  const second = SECOND_LANE.filter((f) => all.includes(f));
  const listed = [...FIRST_LANE, ...second];
  const first = [
    ...all.filter((f) => !listed.includes(f)),
    ...FIRST_LANE.filter((f) => all.includes(f)),
  ];
  return [first.map(path), second.map(path)];
}

/** Runs `files` one `deno test` after the other (each file's failures are told at its end). */
async function runLane(args: string[], files: string[], prefix: string): Promise<Counts> {
  const total = { passed: 0, failed: 0 };
  for (const f of files) {
    const t0 = performance.now();
    const r = await runDeno([...args, f], prefix);
    const secs = ((performance.now() - t0) / 1000).toFixed(0);
    console.log(`${prefix}--- ${f}: ${r.failed ? "FAILED" : "ok"} (${secs} s)`);
    total.passed += r.passed;
    total.failed += r.failed;
  }
  return total;
}

async function runPhase(p: Phase, lanes: number): Promise<Counts> {
  console.log(`\n=== ${p.name}: deno ${p.args.join(" ")}`);
  const t0 = performance.now();
  let r: Counts;
  if (p.kind === "guest") {
    const groups = await guestLanes(lanes);
    const results = await Promise.all(
      groups.map((files, i) =>
        runLane(p.args.slice(0, -1), files, groups.length > 1 ? `[lane ${i + 1}] ` : "")
      ),
    );
    r = results.reduce((a, b) => ({ passed: a.passed + b.passed, failed: a.failed + b.failed }));
  } else {
    r = await runDeno(p.args);
  }
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(`=== ${p.name}: ${r.failed === 0 ? "ok" : "FAILED"} (${secs} s)`);
  return r;
}

/**
 * Installs what the module builds and guest tests need (tests/support/prepare.ts),
 * its lines prefixed; a failure is only told: each test installs what it needs.
 */
async function prepareHost(): Promise<void> {
  const t0 = performance.now();
  const r = await runDeno(["run", "-A", "tests/support/prepare.ts"], "[prepare] ");
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(
    `=== prepare: ${r.failed ? "FAILED (each test installs on its own)" : "ok"} (${secs} s)`,
  );
}

const only = parseOnly(Deno.args);
const lanes = parseLanes(Deno.args);
// With the static phase in this run, its `deno check` covered every test file: the test phases
// skip their own check (each guest file's took 6 to 8 s on a fresh machine).
const checked = !only || only.has("static");
const phaseArgs = (p: Phase): Phase =>
  checked && p.args[0] === "test" ? { ...p, args: ["test", "--no-check", ...p.args.slice(1)] } : p;
let passed = 0, failed = 0;
const failedPhases: string[] = [];
const needsHost = !only || only.has("kmod") || only.has("guest");
for (const p of PHASES) {
  if (only && !only.has(p.kind)) continue;
  // The packages and kernels of the later phases install beside the unit tests.
  const prepare = p.kind === "unit" && needsHost ? prepareHost() : Promise.resolve();
  const r = await runPhase(phaseArgs(p), lanes);
  await prepare;
  passed += r.passed;
  failed += r.failed;
  if (r.failed) failedPhases.push(p.name);
}
console.log(`\n${failedPhases.length ? `failed phases: ${failedPhases.join(", ")}\n` : ""}`);
console.log(`${passed} passed, ${failed} failed`);
Deno.exit(failed ? 1 : 0);
