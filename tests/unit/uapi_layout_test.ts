/**
 * The TypeScript view of the ABI must match kmod/uapi/ppm.h exactly: this
 * compiles a C program against the header that prints sizeof/offsetof of
 * every structure and field, the ioctl numbers and the constants, and
 * compares them with ffi/uapi.ts.
 */
import { assertEquals } from "../support/assert.ts";
import { join } from "node:path";
import { KMOD_SRC } from "../../core/paths.ts";
import * as uapi from "../../ffi/uapi.ts";
import {
  ALL_STRUCTS,
  PPM_ABI_VERSION,
  PPM_FEAT,
  PPM_IOC,
  PPM_IOC_MAGIC,
  PPM_RDR,
  PPM_RUN,
  PPM_VMA,
} from "../../ffi/uapi.ts";

/** Plain numeric constants shared by name between the header and ffi/uapi.ts. */
const CONSTANTS = [
  "PPM_NSIG",
  "PPM_AUXV_WORDS",
  "PPM_MAX_VMAS",
  "PPM_PLAN_MAGIC",
  "PPM_PLAN_MAX_PAGES",
  "PPM_PLAN_MAX_RUNS",
  "PPM_RDR_F_SYN",
  "PPM_RDR_F_ALIVE",
  "PPM_RDR_ST_OPEN",
  "PPM_RDR_ST_CLOSING",
  "PPM_RDR_MAX",
  "PPM_RDR_MAX_IDLE",
  "PPM_RDR_DEL_ALL",
] as const;

function cProgram(): string {
  const lines = [
    "#include <stdio.h>",
    "#include <stddef.h>",
    '#include "uapi/ppm.h"',
    "int main(void) {",
  ];
  for (const s of ALL_STRUCTS) {
    lines.push(`printf("sizeof ${s.cname} %zu\\n", sizeof(struct ${s.cname}));`);
    for (const f of s.fields) {
      lines.push(
        `printf("offsetof ${s.cname}.${f.name} %zu\\n", offsetof(struct ${s.cname}, ${f.name}));`,
      );
      lines.push(
        `printf("sizeof ${s.cname}.${f.name} %zu\\n", sizeof(((struct ${s.cname} *)0)->${f.name}));`,
      );
    }
  }
  for (const name of Object.keys(PPM_IOC)) {
    lines.push(`printf("ioctl ${name} %lu\\n", (unsigned long)PPM_IOC_${name});`);
  }
  for (const name of Object.keys(PPM_RDR)) {
    lines.push(`printf("redirect ${name} %d\\n", PPM_RDR_${name});`);
  }
  for (const name of Object.keys(PPM_FEAT)) {
    lines.push(`printf("feature ${name} %llu\\n", (unsigned long long)PPM_FEAT_${name});`);
  }
  for (const name of Object.keys(PPM_VMA)) {
    lines.push(`printf("vma ${name} %lu\\n", (unsigned long)PPM_VMA_${name});`);
  }
  for (const name of Object.keys(PPM_RUN)) {
    lines.push(`printf("run ${name} %lu\\n", (unsigned long)PPM_RUN_${name});`);
  }
  lines.push(`printf("abi %d\\n", PPM_ABI_VERSION);`, `printf("magic %d\\n", PPM_IOC_MAGIC);`);
  for (const c of CONSTANTS) lines.push(`printf("const ${c} %lu\\n", (unsigned long)${c});`);
  lines.push("return 0; }");
  return lines.join("\n");
}

function tsValues(): string[] {
  const out: string[] = [];
  for (const s of ALL_STRUCTS) {
    out.push(`sizeof ${s.cname} ${s.size}`);
    for (const f of s.fields) {
      out.push(
        `offsetof ${s.cname}.${f.name} ${f.offset}`,
        `sizeof ${s.cname}.${f.name} ${f.size}`,
      );
    }
  }
  for (const [name, v] of Object.entries(PPM_IOC)) out.push(`ioctl ${name} ${v}`);
  for (const [name, v] of Object.entries(PPM_RDR)) out.push(`redirect ${name} ${v}`);
  for (const [name, v] of Object.entries(PPM_FEAT)) out.push(`feature ${name} ${v}`);
  for (const [name, v] of Object.entries(PPM_VMA)) out.push(`vma ${name} ${v}`);
  for (const [name, v] of Object.entries(PPM_RUN)) out.push(`run ${name} ${v}`);
  out.push(`abi ${PPM_ABI_VERSION}`, `magic ${PPM_IOC_MAGIC}`);
  for (const c of CONSTANTS) out.push(`const ${c} ${uapi[c]}`);
  return out;
}

Deno.test("uapi: TypeScript layouts, ioctl numbers and constants match kmod/uapi/ppm.h", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ppm-uapi-" });
  try {
    await Deno.writeTextFile(join(dir, "layout.c"), cProgram());
    const cc = await new Deno.Command("gcc", {
      args: ["-Wall", "-Werror", "-I", KMOD_SRC, "-o", join(dir, "layout"), join(dir, "layout.c")],
    }).output();
    assertEquals(cc.code, 0, new TextDecoder().decode(cc.stderr));
    const out = await new Deno.Command(join(dir, "layout")).output();
    assertEquals(new TextDecoder().decode(out.stdout).trim().split("\n"), tsValues());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("uapi: every structure in the header is described in TypeScript", async () => {
  const header = await Deno.readTextFile(join(KMOD_SRC, "uapi", "ppm.h"));
  const inHeader = [...header.matchAll(/^struct (\w+) \{/gm)].map((m) => m[1]).sort();
  assertEquals(inHeader, ALL_STRUCTS.map((s) => s.cname).sort());
  const iocs = [...header.matchAll(/^#define PPM_IOC_(\w+)\s+_IO/gm)].map((m) => m[1]).sort();
  assertEquals(iocs, Object.keys(PPM_IOC).sort());
});
