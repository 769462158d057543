/**
 * The C helpers' exit codes have one definition each side: the enum in the
 * C file, and the constant TypeScript reads them with. This test holds the
 * two equal, so neither can change alone.
 */
import { join } from "node:path";
import { DEPUTY_EXIT, DEPUTY_SRC } from "../../core/deputy/binary.ts";
import { PROJECT_ROOT } from "../../core/paths.ts";
import { KEEPER_EXIT, KEEPER_SRC } from "../../core/relay/keeper.ts";
import { STUB_EXIT } from "../../core/restore/stub.ts";
import { assertEquals } from "../support/assert.ts";

/** The members of C enum `name` in `src`, by their name without `prefix`. */
function cEnum(src: string, name: string, prefix: string): Record<string, number> {
  const body = new RegExp(`enum ${name} \\{([^}]*)\\}`).exec(src)?.[1];
  if (!body) throw new Error(`enum ${name} not found`);
  const out: Record<string, number> = {};
  for (const m of body.replace(/\/\*[\s\S]*?\*\//g, "").matchAll(/(\w+)\s*=\s*(\d+)/g)) {
    out[m[1].replace(prefix, "")] = Number(m[2]);
  }
  return out;
}

Deno.test("restore stub: stub.c's enum stub_exit is STUB_EXIT", async () => {
  const src = await Deno.readTextFile(join(PROJECT_ROOT, "core", "restore", "stub", "stub.c"));
  assertEquals(cEnum(src, "stub_exit", "STUB_"), { ...STUB_EXIT });
});

Deno.test("relay keeper: keeper.c's enum keeper_exit is KEEPER_EXIT", async () => {
  const src = await Deno.readTextFile(KEEPER_SRC);
  assertEquals(cEnum(src, "keeper_exit", "KEEPER_"), { ...KEEPER_EXIT });
});

Deno.test("deputy: deputy.c's enum deputy_exit is DEPUTY_EXIT", async () => {
  const src = await Deno.readTextFile(DEPUTY_SRC);
  assertEquals(cEnum(src, "deputy_exit", "DEPUTY_"), { ...DEPUTY_EXIT });
});
