/**
 * `ppm` starts light: building the command tree (every run does) loads
 * commander and cli/ only; each command's action imports the core/ modules it
 * uses when it runs (cli/app.ts). Under TCG a module graph's every Node
 * polyfill and every kilobyte cost a guest's `ppm ps` time, hundreds of times
 * a test run. Checked on the static import graph of cli/main.ts, and on the
 * code-split bundle the guests and the package run (core/host/bundle.ts).
 *
 * @module
 */
import { dirname, join, relative } from "node:path";
import { bundleCli, ENTRY_SHIMS, shimEntry } from "../../core/host/bundle.ts";
import { PROJECT_ROOT } from "../../core/paths.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "../support/assert.ts";

/** The npm packages the command tree is built with. */
const TREE_PACKAGES = ["commander", "@commander-js/extra-typings"];

/**
 * Node modules commander imports itself that the bundle's entry keeps
 * (node:child_process, node:fs and node:process it leaves out: core/host/bundle.ts).
 */
const COMMANDER_NODE = ["node:events", "node:path", "node:util"];

/** Node modules that must never load before a command runs (each costs a guest ~100 ms or more). */
const HEAVY_NODE = [
  "node:buffer",
  "node:child_process",
  "node:crypto",
  "node:dgram",
  "node:fs",
  "node:net",
  "node:os",
  "node:process",
  "node:stream",
  "node:zlib",
];

/** Modules of the static graph: specifier → the specifiers it imports for their code (not types, not dynamically). */
async function staticGraph(entry: string): Promise<Map<string, string[]>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "--config", join(PROJECT_ROOT, "deno.json"), entry],
    cwd: PROJECT_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: { specifier: string; dependencies?: DenoInfoDep[] }[];
    redirects: Record<string, string>;
  };
  const real = (s: string) => info.redirects[s] ?? s;
  const graph = new Map<string, string[]>();
  for (const m of info.modules) {
    graph.set(
      real(m.specifier),
      (m.dependencies ?? []).filter((d) => d.code && !d.isDynamic).map((d) =>
        real(d.code!.specifier)
      ),
    );
  }
  return graph;
}

interface DenoInfoDep {
  specifier: string;
  code?: { specifier: string };
  isDynamic?: boolean;
}

/** Every module reachable from `root`, each with the chain of imports that reaches it. */
function reach(graph: Map<string, string[]>, root: string): Map<string, string[]> {
  const chains = new Map<string, string[]>([[root, [root]]]);
  const queue = [root];
  while (queue.length) {
    const m = queue.shift()!;
    for (const d of graph.get(m) ?? []) {
      if (chains.has(d)) continue;
      chains.set(d, [...chains.get(m)!, d]);
      queue.push(d);
    }
  }
  return chains;
}

const short = (s: string) =>
  s.startsWith("file://") ? relative(PROJECT_ROOT, new URL(s).pathname) : s;

/** The npm package of an `npm:/name@version/...` specifier. */
function npmPackage(s: string): string {
  const m = /^npm:\/?((?:@[^/]+\/)?[^@/]+)/.exec(s);
  return m ? m[1] : s;
}

Deno.test("cli startup: building the command tree imports nothing heavy (static graph of cli/main.ts)", async () => {
  const entry = join(PROJECT_ROOT, "cli", "main.ts");
  const chains = reach(await staticGraph(entry), new URL(`file://${entry}`).href);
  const bad: string[] = [];
  for (const [m, chain] of chains) {
    let why = "";
    if (m.startsWith("node:")) why = "a Node module";
    else if (m.startsWith("npm:") && !TREE_PACKAGES.includes(npmPackage(m))) why = "an npm package";
    else if (m.startsWith("file://")) {
      const path = short(m);
      if (!/^(cli|core|ffi)\//.test(path)) why = "outside cli/, core/ and ffi/";
      else if (/\bDeno\.dlopen\(/.test(Deno.readTextFileSync(new URL(m)))) {
        why = "a module that opens a native library";
      }
    }
    if (why) bad.push(`${short(m)} (${why}): ${chain.map(short).join(" → ")}`);
  }
  assertEquals(
    bad,
    [],
    "\nthe command tree's modules import these statically; import them in the action that " +
      "uses them (`await import(...)`), or take the constant from a light module:\n" +
      bad.join("\n"),
  );
  // The test sees the graph at all: the tree and commander are in it.
  const files = [...chains.keys()].map(short);
  assert(files.includes("cli/commands/agent.ts"), files.join(" "));
  assert([...chains.keys()].some((m) => npmPackage(m) === "commander"), files.join(" "));
});

/** The chunks `file` imports statically, and the Node modules, transitively (a bundle's chunks). */
function chunkImports(
  file: string,
  seen = new Set<string>(),
): { chunks: string[]; node: string[] } {
  seen.add(file);
  const text = Deno.readTextFileSync(file);
  const node = new Set<string>();
  const specs = [
    ...text.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s*"([^"]+)"/gm),
    ...text.matchAll(/^import\s*"([^"]+)"/gm),
  ].map((m) => m[1]);
  for (const s of specs) {
    if (s.startsWith("node:")) node.add(s);
    else if (s.startsWith("./") || s.startsWith("../")) {
      const f = join(dirname(file), s);
      if (seen.has(f)) continue;
      for (const n of chunkImports(f, seen).node) node.add(n);
    } else node.add(s);
  }
  return { chunks: [...seen], node: [...node].sort() };
}

Deno.test({
  name:
    "cli startup: the code-split bundle's entry loads commander's Node modules only; commands load the rest",
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "ppm-bundle-" });
    try {
      const entry = await bundleCli(join(dir, "js"));
      const { chunks, node } = chunkImports(entry);
      const heavy = node.filter((n) => !COMMANDER_NODE.includes(n));
      assertEquals(
        heavy,
        [],
        `the entry chunk loads ${heavy.join(", ")} (chunks ${chunks.map((c) => relative(dir, c))})`,
      );
      for (const n of HEAVY_NODE) assert(!node.includes(n), n);
      // The rest is there, in chunks loaded on demand.
      const all = [...Deno.readDirSync(join(dir, "js"))].map((e) => e.name);
      assert(all.length > chunks.length + 5, `only ${all.length} files: ${all.join(" ")}`);
      const rest = all.filter((f) => !chunks.includes(join(dir, "js", f)))
        .map((f) => Deno.readTextFileSync(join(dir, "js", f))).join("\n");
      assertMatch(rest, /from "node:crypto"/);
      assertMatch(rest, /from "node:dgram"/);

      // It runs: the tree alone, then commands that load their chunks.
      const ppm = async (...args: string[]) => {
        const r = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", "--no-config", "--no-lock", entry, ...args],
          env: { PPM_ROOT: PROJECT_ROOT, NO_COLOR: "1" },
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).output();
        const dec = new TextDecoder();
        return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
      };
      const v = await ppm("--version");
      assertEquals(v.code, 0, v.stderr);
      assertMatch(v.stdout, /^ppm \d+\.\d+\.\d+ \(ABI \d+\)\n$/);
      const help = await ppm("daemon", "--help");
      assertEquals(help.code, 0, help.stderr);
      assertMatch(help.stdout, /--log-level <level> +error, warn, info or debug \(default info\)/);
      const usage = await ppm("frobnicate");
      assertEquals(usage.code, 2, usage.stderr);
      assertMatch(usage.stderr, /^error: unknown command 'frobnicate'\n\(run with --help/);
      const ps = await ppm("ps", "--json", "--control-socket", join(dir, "none.sock"));
      assertEquals(ps.code, 4, ps.stderr);
      assertEquals(JSON.parse(ps.stdout).error, "cannot reach the ppm agent");
      const shown = await ppm("config", "show", "--json", "--config", join(dir, "none.json"));
      assertEquals(shown.code, 4, shown.stderr);
      assertMatch(JSON.parse(shown.stdout).error, /cannot read the configuration/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("cli startup: the entry's stand-ins: the global process, taken when used; fs and child_process say why they are missing", () => {
  const lines = ENTRY_SHIMS.map((s) => s.line);
  const shimmed = shimEntry([...lines, 'import fs2 from "node:fs";', "x();"].join("\n"));
  assertEquals(shimmed.split("\n").slice(-2), ['import fs2 from "node:fs";', "x();"]);
  assert(lines.every((l) => !shimmed.includes(l)), shimmed);
  const code = `${shimEntry(lines.join("\n"))}\nreturn { childProcess, fs, process };`;
  // deno-lint-ignore no-explicit-any
  const got = new Function(code)() as Record<string, any>;
  assertEquals(got.process.pid, Deno.pid);
  assertEquals(got.process.cwd(), Deno.cwd());
  assertEquals(got.process.env.HOME, Deno.env.get("HOME"));
  assert("argv" in got.process);
  for (const m of [got.fs, got.childProcess]) {
    assertThrows(() => m.existsSync, (e) => /core\/host\/bundle\.ts/.test(String(e)));
  }
});
