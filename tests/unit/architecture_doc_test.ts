/**
 * docs/architecture.md names the file and the function of each step of a
 * migration: every path it names must exist, and so must every file named
 * by its name alone (`proc.ts` in the row of `core/dump/`).
 *
 * @module
 */
import { join } from "node:path";
import { PROJECT_ROOT } from "../../core/paths.ts";
import { assert, assertEquals } from "../support/assert.ts";

const DOC = join(PROJECT_ROOT, "docs", "architecture.md");

/** Paths under the tree's top folders, as written (a trailing "/" kept, punctuation dropped). */
function namedPaths(text: string): string[] {
  const re = /(?<![\w/.-])((?:core|cli|ffi|kmod|tests|packaging|bench|docs)\/[\w./*-]*)/g;
  return [...new Set([...text.matchAll(re)].map((m) => m[1].replace(/[.,;:]+$/, "")))].sort();
}

/** File names written alone in backticks (`network.ts`, `stub.c`). */
function namedFiles(text: string): string[] {
  const re = /`([\w-]+\.(?:ts|c|h|md|service))`/g;
  return [...new Set([...text.matchAll(re)].map((m) => m[1]))].sort();
}

function exists(path: string): boolean {
  try {
    Deno.statSync(join(PROJECT_ROOT, path));
    return true;
  } catch {
    return false;
  }
}

function allFileNames(dir: string, out = new Set<string>()): Set<string> {
  for (const e of Deno.readDirSync(join(PROJECT_ROOT, dir))) {
    if (e.isDirectory) allFileNames(`${dir}/${e.name}`, out);
    else out.add(e.name);
  }
  return out;
}

Deno.test("architecture doc: the path extraction sees files, folders and globs", () => {
  assertEquals(
    namedPaths("`core/dump/` (`core/freeze/network.ts`), see core/agent/daemon.ts. And cli/."),
    ["cli/", "core/agent/daemon.ts", "core/dump/", "core/freeze/network.ts"],
  );
  assertEquals(namedPaths("/lib/modules/x/build and /run/ppm/relays"), []);
  assertEquals(namedFiles("`proc.ts`, `keeper.c`, `ppm daemon`, `core/x.ts`"), [
    "keeper.c",
    "proc.ts",
  ]);
});

Deno.test("architecture doc: every core/, cli/, ffi/ and kmod/ path it names exists", () => {
  const text = Deno.readTextFileSync(DOC);
  const paths = namedPaths(text);
  assert(paths.length > 50, `only ${paths.length} paths found`);
  for (const top of ["core/", "cli/", "ffi/", "kmod/"]) {
    assert(paths.some((p) => p.startsWith(top)), `no ${top} path found`);
  }
  const missing = paths.filter((p) =>
    p.includes("*") ? !exists(p.slice(0, p.lastIndexOf("/"))) : !exists(p)
  );
  assertEquals(missing, [], `docs/architecture.md names paths that do not exist: ${missing}`);
});

Deno.test("architecture doc: every file it names alone exists somewhere in the tree", () => {
  const names = new Set<string>();
  for (const dir of ["core", "cli", "ffi", "kmod", "tests", "packaging"]) allFileNames(dir, names);
  const missing = namedFiles(Deno.readTextFileSync(DOC)).filter((n) => !names.has(n));
  assertEquals(missing, [], `docs/architecture.md names files that do not exist: ${missing}`);
});

Deno.test("architecture doc: README.md links it", () => {
  const readme = Deno.readTextFileSync(join(PROJECT_ROOT, "README.md"));
  assert(readme.includes("(docs/architecture.md)"), "README.md does not link docs/architecture.md");
});
