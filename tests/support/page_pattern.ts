/**
 * A running page_pattern (tests/programs/page_pattern.c) with `pages`
 * pages of a known pattern, for the tests of the page stream and the
 * vessel: `fn` gets its PID, the address of its pages and a scratch
 * directory; the process and the directory go afterwards.
 *
 * @module
 */
import { join } from "node:path";
import { buildProgram } from "./programs.ts";

/** Runs `fn` against a page_pattern of `pages` pages (see the module's text). */
export async function withPagePattern(
  pages: number,
  prefix: string,
  fn: (pid: number, addr: bigint, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix });
  const bin = await buildProgram("page_pattern", join(dir, "bin"));
  const child = new Deno.Command(bin, { args: [String(pages)], stdout: "piped" }).spawn();
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let line = "";
    while (!line.includes("\n")) {
      const r = await reader.read();
      if (r.done) throw new Error("page_pattern ended");
      line += r.value;
    }
    reader.releaseLock();
    await fn(child.pid, BigInt(line.trim()), dir);
  } finally {
    child.kill("SIGKILL");
    await child.status;
    await child.stdout.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}
