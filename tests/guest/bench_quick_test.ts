/**
 * `deno task bench --quick` in CI: one workload, two rounds of ppm against
 * CRIU in a two-node 6.1 cluster. It checks that the benchmark produced
 * well-formed results (JSON, report, chart) with a ppm and a CRIU
 * migration in a common round and the link measured; it asserts no speed.
 */
import { join } from "node:path";
import { PROJECT_ROOT } from "../../core/paths.ts";
import { validateRunFiles } from "../../bench/lib/results.ts";
import { assert, assertEquals } from "../support/assert.ts";

/** The whole quick run must end well within CI's budget. */
const QUICK_TIMEOUT_MS = 45 * 60_000;

Deno.test({
  name: "guest 6.1: deno task bench --quick produces well-formed results",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const out = await Deno.makeTempDir({ prefix: "ppm-bench-quick-" });
    try {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--config",
          join(PROJECT_ROOT, "deno.json"),
          join(PROJECT_ROOT, "bench", "run.ts"),
          "--quick",
          "--json",
          "--out",
          out,
        ],
        cwd: PROJECT_ROOT,
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const timer = setTimeout(() => {
        try {
          child.kill("SIGTERM");
        } catch { /* ended */ }
      }, QUICK_TIMEOUT_MS);
      const r = await child.output().finally(() => clearTimeout(timer));
      const stdout = new TextDecoder().decode(r.stdout);
      assertEquals(r.code, 0, `bench --quick exited ${r.code}:\n${stdout.slice(-4000)}`);
      const printed = JSON.parse(stdout);
      assertEquals(printed.mode, "quick");

      const names = [...Deno.readDirSync(out)].map((e) => e.name).sort();
      const json = names.find((n) => n.endsWith("-quick.json"));
      assert(json, `no results file in ${out}: ${names.join(", ")}`);
      const base = join(out, json.slice(0, -".json".length));
      const svg = names.includes(`${json.slice(0, -".json".length)}.svg`)
        ? `${base}.svg`
        : undefined;
      const problems = await validateRunFiles(
        { json: `${base}.json`, md: `${base}.md`, svg },
        { complete: true },
      );
      assertEquals(
        problems,
        [],
        `${problems.join("\n")}\n${await Deno.readTextFile(`${base}.md`)}`,
      );
      assert(!names.includes("latest.md"), "a quick run must not replace latest.md");
      // The figures, for the record of the run (CI logs keep them).
      const md = await Deno.readTextFile(`${base}.md`);
      console.log(md.split("\n").filter((l) => l.startsWith("|")).slice(0, 40).join("\n"));
    } finally {
      await Deno.remove(out, { recursive: true }).catch(() => {});
    }
  },
});
