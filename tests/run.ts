/**
 * `deno task test`: the whole suite, in order: static checks (fmt, lint,
 * type check), host unit tests, module builds with checkpatch, and the
 * guest tests in virtual clusters. `--only unit` runs the fast host part.
 * Ends with one line "N passed, N failed".
 *
 * @module
 */

import { PROJECT_ROOT } from "../core/paths.ts";

interface Phase {
  name: string;
  kind: "static" | "unit" | "kmod" | "guest";
  args: string[];
}

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

async function runPhase(p: Phase): Promise<{ passed: number; failed: number }> {
  console.log(`\n=== ${p.name}: deno ${p.args.join(" ")}`);
  const t0 = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: p.args,
    cwd: PROJECT_ROOT,
    stdout: "piped",
    stderr: "inherit",
    env: { NO_COLOR: "1" },
  }).spawn();
  let text = "";
  const dec = new TextDecoder();
  for await (const chunk of child.stdout) {
    Deno.stdout.writeSync(chunk);
    text += dec.decode(chunk, { stream: true });
  }
  const { code } = await child.status;
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  const m = text.match(/(ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/);
  let passed = m ? Number(m[2]) : code === 0 ? 1 : 0;
  let failed = m ? Number(m[3]) : code === 0 ? 0 : 1;
  if (code !== 0 && failed === 0) {
    failed = 1;
    passed = Math.max(0, passed);
  }
  console.log(`=== ${p.name}: ${code === 0 ? "ok" : "FAILED"} (${secs} s)`);
  return { passed, failed };
}

const only = parseOnly(Deno.args);
let passed = 0, failed = 0;
const failedPhases: string[] = [];
for (const p of PHASES) {
  if (only && !only.has(p.kind)) continue;
  const r = await runPhase(p);
  passed += r.passed;
  failed += r.failed;
  if (r.failed) failedPhases.push(p.name);
}
console.log(`\n${failedPhases.length ? `failed phases: ${failedPhases.join(", ")}\n` : ""}`);
console.log(`${passed} passed, ${failed} failed`);
Deno.exit(failed ? 1 : 0);
