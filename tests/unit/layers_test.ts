/**
 * The layers of the tree, lowest first, in one place: a folder may import
 * from its own layer and the layers below it, never from one above; and no
 * two folders import each other, directly or around a loop. Every import in
 * core/, cli/ and ffi/ is checked; a failure names the file, the line and
 * the import. The order follows a migration's data flow where the code
 * allows it (docs/architecture.md explains each step).
 *
 * @module
 */
import { dirname, join, normalize } from "node:path";
import { PROJECT_ROOT } from "../../core/paths.ts";
import { assert, assertEquals } from "../support/assert.ts";

/**
 * Lowest first. A unit is a folder (`core/dump`, `ffi`, `cli`) or a file
 * directly in core/ (`core/errors.ts`). Where the data flow and the imports
 * differ, the imports decide: the image (the format) lies below the dump
 * that writes it; the socket freeze lies above the dump and the redirect
 * table it uses; the checkpoint, which runs ptrace, freeze, dump and image
 * in order, lies above them all.
 */
const LAYERS: { name: string; units: string[] }[] = [
  {
    name: "leaves: FFI, errors, paths, fault points, the version, checks of untrusted values",
    units: [
      "ffi",
      "core/errors.ts",
      "core/paths.ts",
      "core/fault.ts",
      "core/version.ts",
      "core/untrusted.ts",
    ],
  },
  {
    name: "host: host programs, /proc facts, byte sinks and sources; configuration; the secret",
    units: ["core/host", "core/config", "core/security"],
  },
  { name: "ptrace: the tracee, its registers", units: ["core/ptrace"] },
  { name: "image: the format and its schema", units: ["core/image"] },
  {
    name: "dump (a frozen process's state) and redirect (flows and the module's table)",
    units: ["core/dump", "core/redirect"],
  },
  { name: "freeze: a process's sockets, frozen and journalled", units: ["core/freeze"] },
  { name: "checkpoint: ptrace freeze → socket freeze → dump → image", units: ["core/checkpoint"] },
  { name: "transport: node-to-node connections", units: ["core/transport"] },
  { name: "restore: image → process", units: ["core/restore"] },
  { name: "relay: stdio of moved processes", units: ["core/relay"] },
  {
    name: "deputy: the original process, kept at home as the moved process's stand-in",
    units: ["core/deputy"],
  },
  { name: "migrate: source and destination", units: ["core/migrate"] },
  { name: "discovery and balance", units: ["core/discovery", "core/balance"] },
  {
    name: "node: the agent, the module's management, preflight, the virtual cluster, the demo",
    units: ["core/agent", "core/module", "core/preflight", "core/vcluster", "core/demo.ts"],
  },
  { name: "cli: commands", units: ["cli"] },
];

/** The unit of a path relative to the project root, or undefined outside core/, cli/, ffi/. */
function unitOf(path: string): string | undefined {
  const parts = path.split("/");
  if (parts[0] === "ffi" || parts[0] === "cli") return parts[0];
  if (parts[0] !== "core") return undefined;
  return parts.length === 2 ? path : `core/${parts[1]}`;
}

/** One import: where it is and what it names. */
interface Import {
  /** The importing file, relative to the project root. */
  file: string;
  /** Its line, from 1. */
  line: number;
  /** The specifier as written. */
  specifier: string;
  /** The imported file relative to the project root; undefined for npm:, node: and the like. */
  target?: string;
}

// The tree is formatted by `deno fmt`: static imports and re-exports start their line.
const STATIC = /^(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']/gm;
const BARE = /^import\s*["']([^"']+)["']/gm;
const DYNAMIC = /\bimport\(\s*["']([^"']+)["']\s*\)/g;

/** The imports of `text`, the source of `file` (relative to the project root). */
function parseImports(file: string, text: string): Import[] {
  const out: Import[] = [];
  for (const re of [STATIC, BARE, DYNAMIC]) {
    for (const m of text.matchAll(re)) {
      const specifier = m[1];
      const at = m.index! + m[0].lastIndexOf(specifier);
      const line = text.slice(0, at).split("\n").length;
      const target = specifier.startsWith(".")
        ? normalize(join(dirname(file), specifier))
        : undefined;
      out.push({ file, line, specifier, target });
    }
  }
  return out.sort((a, b) => a.line - b.line);
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(join(PROJECT_ROOT, dir))) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...sourceFiles(path));
    else if (e.isFile && e.name.endsWith(".ts")) out.push(path);
  }
  return out.sort();
}

function allImports(): Import[] {
  return ["core", "cli", "ffi"].flatMap(sourceFiles).flatMap((f) =>
    parseImports(f, Deno.readTextFileSync(join(PROJECT_ROOT, f)))
  );
}

const RANK = new Map(LAYERS.flatMap((l, i) => l.units.map((u) => [u, i] as const)));

function where(i: Import): string {
  return `${i.file}:${i.line} imports "${i.specifier}"`;
}

/** Imports from a higher layer, or of something no layer holds, as messages. */
function layerViolations(imports: Import[]): string[] {
  const out: string[] = [];
  for (const i of imports) {
    if (i.target === undefined) continue;
    const from = unitOf(i.file)!, to = unitOf(i.target);
    if (to === undefined) {
      out.push(`${where(i)}: outside core/, cli/ and ffi/`);
      continue;
    }
    const a = RANK.get(from), b = RANK.get(to);
    if (a === undefined || b === undefined) {
      out.push(`${where(i)}: ${a === undefined ? from : to} is in no layer (add it to LAYERS)`);
    } else if (b > a) {
      out.push(
        `${where(i)}: ${from} (layer "${LAYERS[a].name}") may not import ${to} ` +
          `(layer "${LAYERS[b].name}", above it)`,
      );
    }
  }
  return out;
}

/** The unit-to-unit import graph, each edge with the imports that make it. */
function unitGraph(imports: Import[]): Map<string, Map<string, Import[]>> {
  const g = new Map<string, Map<string, Import[]>>();
  for (const i of imports) {
    if (i.target === undefined) continue;
    const from = unitOf(i.file)!, to = unitOf(i.target);
    if (to === undefined || to === from) continue;
    if (!g.has(from)) g.set(from, new Map());
    const edges = g.get(from)!;
    if (!edges.has(to)) edges.set(to, []);
    edges.get(to)!.push(i);
  }
  return g;
}

/** Every cycle between units found by a depth-first search, as its units in order. */
function unitCycles(g: Map<string, Map<string, Import[]>>): string[][] {
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (u: string) => {
    state.set(u, "open");
    stack.push(u);
    for (const v of [...(g.get(u)?.keys() ?? [])].sort()) {
      if (state.get(v) === "open") cycles.push([...stack.slice(stack.indexOf(v)), v]);
      else if (!state.has(v)) visit(v);
    }
    stack.pop();
    state.set(u, "done");
  };
  for (const u of [...g.keys()].sort()) if (!state.has(u)) visit(u);
  return cycles;
}

function describeCycle(g: Map<string, Map<string, Import[]>>, cycle: string[]): string {
  const steps = cycle.slice(1).map((to, k) => {
    const i = g.get(cycle[k])!.get(to)![0];
    return `  ${cycle[k]} → ${to}: ${where(i)}`;
  });
  return `cycle ${cycle.join(" → ")}\n${steps.join("\n")}`;
}

Deno.test("layers: the import parser sees static, multi-line, re-exported, bare and dynamic imports", () => {
  const text = [
    `import { a } from "../dump/proc.ts";`,
    `import {`,
    `  b,`,
    `  type C,`,
    `} from "./b.ts";`,
    `export { d } from "../../ffi/libc.ts";`,
    `import "./side.ts";`,
    `import { parseArgs } from "node:util";`,
    ` * a comment: import nothing from here`,
    `const e = await import("../image/mod.ts");`,
  ].join("\n");
  const got = parseImports("core/restore/x.ts", text).map((i) => [i.line, i.target ?? i.specifier]);
  assertEquals(got, [
    [1, "core/dump/proc.ts"],
    [5, "core/restore/b.ts"],
    [6, "ffi/libc.ts"],
    [7, "core/restore/side.ts"],
    [8, "node:util"],
    [10, "core/image/mod.ts"],
  ]);
});

Deno.test("layers: a lower layer importing a higher one, and a cycle, are named", () => {
  const bad = [
    ...parseImports("core/dump/a.ts", `import { x } from "../migrate/source.ts";`),
    ...parseImports("core/dump/b.ts", `import { y } from "../redirect/redirect_plan.ts";`),
    ...parseImports("core/redirect/c.ts", `import { z } from "../dump/proc.ts";`),
    ...parseImports("core/nowhere/d.ts", `import { w } from "../errors.ts";`),
  ];
  const v = layerViolations(bad);
  assertEquals(v.length, 2, v.join("\n"));
  assert(v[0].startsWith(`core/dump/a.ts:1 imports "../migrate/source.ts": core/dump`), v[0]);
  assert(v[1].includes("core/nowhere is in no layer"), v[1]);
  const g = unitGraph(bad);
  assertEquals(unitCycles(g), [["core/dump", "core/redirect", "core/dump"]]);
  assert(describeCycle(g, unitCycles(g)[0]).includes("core/redirect/c.ts:1"));
});

Deno.test("layers: every unit of core/, cli/ and ffi/ is in exactly one layer", () => {
  const units = new Set(["core", "cli", "ffi"].flatMap(sourceFiles).map((f) => unitOf(f)!));
  const listed = LAYERS.flatMap((l) => l.units);
  assertEquals(listed.length, new Set(listed).size, "a unit is listed twice");
  const missing = [...units].filter((u) => !RANK.has(u)).sort();
  assertEquals(missing, [], `units in no layer: ${missing.join(", ")} (add them to LAYERS)`);
  const gone = listed.filter((u) => !units.has(u));
  assertEquals(gone, [], `LAYERS names units that do not exist: ${gone.join(", ")}`);
});

Deno.test("layers: no import reaches a higher layer", () => {
  const imports = allImports();
  assert(imports.length > 500, `only ${imports.length} imports found: the parser is broken`);
  const v = layerViolations(imports);
  assertEquals(v.length, 0, `\n${v.join("\n")}`);
});

Deno.test("layers: no import cycle between folders", () => {
  const g = unitGraph(allImports());
  const cycles = unitCycles(g);
  assertEquals(cycles.length, 0, `\n${cycles.map((c) => describeCycle(g, c)).join("\n")}`);
});

Deno.test("layers: every relative import names a file that exists", () => {
  const missing = allImports().filter((i) => {
    if (i.target === undefined) return false;
    try {
      return !Deno.statSync(join(PROJECT_ROOT, i.target)).isFile;
    } catch {
      return true;
    }
  }).map(where);
  assertEquals(missing, [], `imports of files that do not exist:\n${missing.join("\n")}`);
});
