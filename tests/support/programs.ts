/**
 * Builds the C test programs of tests/programs/ (the processes that the
 * checkpoint/restore tests freeze, dump and restore; see
 * tests/programs/README.md for what each one checks).
 *
 * Every `*.c` there is one program, compiled on its own with
 * `gcc -O2 -g -Wall -Werror` plus the flags of a `// cflags: ...` line in
 * its first lines (avx_compute.c asks for `-mavx2`). `*.h` files are shared
 * headers: a change to one rebuilds every program.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Directory holding the C sources (tests/programs/). */
export const PROGRAMS_DIR: string = join(
  dirname(fileURLToPath(import.meta.url)),
  "..",
  "programs",
);

/** Flags every program is compiled with. */
export const BASE_CFLAGS: readonly string[] = ["-O2", "-g", "-Wall", "-Werror"];

/** Extra compiler flags from a `// cflags: ...` line among the first ten lines of a source. */
export function extraCflags(source: string): string[] {
  for (const line of source.split("\n").slice(0, 10)) {
    const m = line.match(/^\s*(?:\/\/|\/\*)\s*cflags:\s*(.*?)\s*(?:\*\/)?\s*$/);
    if (m) return m[1].split(/\s+/).filter((f) => f !== "");
  }
  return [];
}

async function mtimeMs(path: string): Promise<number | undefined> {
  try {
    return (await Deno.stat(path)).mtime?.getTime();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

async function compile(
  name: string,
  source: string,
  out: string,
  flags: string[],
): Promise<void> {
  // Compile next to the target and rename, so concurrent builds never see half a binary.
  const tmp = `${out}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  let result: Deno.CommandOutput;
  try {
    result = await new Deno.Command("gcc", {
      args: [...BASE_CFLAGS, ...flags, "-o", tmp, source],
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`cannot build test program ${name}: gcc is not installed`);
    }
    throw e;
  }
  if (!result.success) {
    await Deno.remove(tmp).catch(() => {});
    const dec = new TextDecoder();
    const text = (dec.decode(result.stderr) + dec.decode(result.stdout)).trim();
    throw new Error(
      `gcc failed for tests/programs/${name}.c (exit ${result.code}):\n${text}`,
    );
  }
  await Deno.rename(tmp, out);
}

/**
 * Compiles one program, tests/programs/`name`.c, into `outDir` (unless its
 * binary is newer than the source and the headers); resolves to its path.
 */
export async function buildProgram(name: string, outDir: string): Promise<string> {
  await Deno.mkdir(outDir, { recursive: true });
  const source = join(PROGRAMS_DIR, `${name}.c`);
  const out = join(await Deno.realPath(outDir), name);
  let newest = (await mtimeMs(source)) ?? 0;
  for await (const e of Deno.readDir(PROGRAMS_DIR)) {
    if (e.isFile && e.name.endsWith(".h")) {
      newest = Math.max(newest, (await mtimeMs(join(PROGRAMS_DIR, e.name))) ?? 0);
    }
  }
  const outTime = await mtimeMs(out);
  if (outTime === undefined || outTime < newest) {
    await compile(name, source, out, extraCflags(await Deno.readTextFile(source)));
  }
  return out;
}

/**
 * Compiles every tests/programs/*.c into `outDir` (created if missing) as
 * `outDir/<name>`; a binary newer than its source and every header is left
 * alone. Resolves to a map from program name (the file name without `.c`,
 * e.g. "heap_counter") to the binary's absolute path. Throws an Error
 * holding gcc's output when a program does not compile.
 */
export async function buildPrograms(outDir: string): Promise<Record<string, string>> {
  await Deno.mkdir(outDir, { recursive: true });
  const absOut = await Deno.realPath(outDir);
  const sources: string[] = [];
  let newestHeader = 0;
  for await (const e of Deno.readDir(PROGRAMS_DIR)) {
    if (!e.isFile) continue;
    if (e.name.endsWith(".c")) sources.push(e.name);
    if (e.name.endsWith(".h")) {
      newestHeader = Math.max(newestHeader, (await mtimeMs(join(PROGRAMS_DIR, e.name))) ?? 0);
    }
  }
  sources.sort();
  const built: Record<string, string> = {};
  await Promise.all(sources.map(async (file) => {
    const name = file.slice(0, -2);
    const source = join(PROGRAMS_DIR, file);
    const out = join(absOut, name);
    const srcTime = Math.max((await mtimeMs(source)) ?? 0, newestHeader);
    const outTime = await mtimeMs(out);
    if (outTime === undefined || outTime < srcTime) {
      await compile(name, source, out, extraCflags(await Deno.readTextFile(source)));
    }
    built[name] = out;
  }));
  return Object.fromEntries(Object.entries(built).sort(([a], [b]) => a.localeCompare(b)));
}

/**
 * Builds the Go program tests/programs/`name`/main.go (Debian's golang-go,
 * standard library only) into `outDir`/`name`, unless the binary is newer
 * than the source; resolves to its path. The build cache lives in `outDir`.
 */
export async function buildGoProgram(name: string, outDir: string): Promise<string> {
  await Deno.mkdir(outDir, { recursive: true });
  const source = join(PROGRAMS_DIR, name, "main.go");
  const out = join(await Deno.realPath(outDir), name);
  const outTime = await mtimeMs(out);
  if (outTime !== undefined && outTime >= ((await mtimeMs(source)) ?? 0)) return out;
  const cache = join(outDir, ".go");
  const tmp = `${out}.tmp-${Deno.pid}`;
  const r = await new Deno.Command("go", {
    args: ["build", "-o", tmp, source],
    env: {
      GOCACHE: join(cache, "cache"),
      GOPATH: join(cache, "path"),
      HOME: cache,
      GOFLAGS: "",
      GOTOOLCHAIN: "local",
      GOPROXY: "off",
    },
    stdout: "piped",
    stderr: "piped",
  }).output().catch((e) => {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`cannot build ${name}: go is not installed (Debian's golang-go)`);
    }
    throw e;
  });
  if (!r.success) {
    const dec = new TextDecoder();
    throw new Error(`go build failed for tests/programs/${name}:\n${dec.decode(r.stderr)}`);
  }
  await Deno.rename(tmp, out);
  return out;
}
