/** The command line: help at every level, versions, completions, usage errors and exit codes. */
import { PPM_ABI_VERSION } from "../../ffi/uapi.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { buildApp } from "../../cli/app.ts";
import { completionTable } from "../../cli/completions.ts";
import { ppm } from "../support/cli.ts";
import { agentCommands } from "../../cli/commands/agent.ts";
import { CONFIG_DEFAULTS, DEFAULT_CONFIG_PATH, SETTINGS } from "../../core/config/schema.ts";

Deno.test("cli: --help works at every level of the command tree", async () => {
  // deno-lint-ignore no-explicit-any
  const table = completionTable(buildApp() as any);
  const paths = table.map((e) => e.path.split(" ").slice(1));
  assert(paths.length >= 8, `only ${paths.length} commands`);
  const results = await Promise.all(paths.map((p) => ppm([...p, "--help"])));
  results.forEach((r, i) => {
    assertEquals(r.code, 0, `ppm ${paths[i].join(" ")} --help: ${r.stderr}`);
    assertMatch(r.stdout, /^Usage: ppm/m);
  });
});

Deno.test("cli: subcommands exist as documented", async () => {
  const top = await ppm(["--help"]);
  for (const c of ["module", "vcluster", "completions"]) {
    assertMatch(top.stdout, new RegExp(`^  ${c}\\b`, "m"));
  }
  assertMatch(top.stdout, /Exit codes:/);
  const mod = await ppm(["module", "--help"]);
  for (const c of ["build", "load", "unload", "status"]) {
    assertMatch(mod.stdout, new RegExp(`^  ${c}\\b`, "m"));
  }
  const vc = await ppm(["vcluster", "--help"]);
  for (const c of ["up", "exec", "status", "down"]) {
    assertMatch(vc.stdout, new RegExp(`^  ${c}\\b`, "m"));
  }
});

Deno.test("cli: --version prints the version and ABI", async () => {
  const r = await ppm(["--version"]);
  assertEquals(r.code, 0);
  assertMatch(r.stdout, /^ppm \d+\.\d+\.\d+ \(ABI \d+\)/);
});

Deno.test("cli: unknown commands and options exit 2 with a hint", async () => {
  for (
    const args of [["frobnicate"], ["module", "load", "--bogus"], [
      "vcluster",
      "up",
      "--kernel",
      "5.10",
    ]]
  ) {
    const r = await ppm(args);
    assertEquals(r.code, 2, `ppm ${args.join(" ")}: ${r.stderr}`);
    assertMatch(r.stderr, /error|invalid/i);
  }
});

Deno.test("cli: completions for bash, zsh and fish cover the command tree", async () => {
  const bash = await ppm(["completions", "bash"]);
  assertEquals(bash.code, 0);
  assertMatch(bash.stdout, /complete -F _ppm ppm/);
  assertMatch(bash.stdout, /'ppm vcluster'\) words='up exec status down/);
  const check = await new Deno.Command("bash", { args: ["-n"], stdin: "piped" }).spawn();
  const w = check.stdin.getWriter();
  await w.write(new TextEncoder().encode(bash.stdout));
  await w.close();
  assertEquals((await check.status).code, 0, "bash -n rejects the script");
  const zsh = await ppm(["completions", "zsh"]);
  assertMatch(zsh.stdout, /^#compdef ppm/);
  assertMatch(zsh.stdout, /'ppm module'\) cmds=\('build:/);
  const fish = await ppm(["completions", "fish"]);
  assertMatch(
    fish.stdout,
    /complete -c ppm -n 'test \(__ppm_path\) = '\\''ppm module'\\''' -a 'load'/,
  );
  assertEquals((await ppm(["completions", "tcsh"])).code, 2);
});

Deno.test("cli: bash completion completes subcommands in a real bash", async () => {
  const script = (await ppm(["completions", "bash"])).stdout;
  const probe =
    `${script}\nCOMP_WORDS=(ppm vcluster u); COMP_CWORD=2; _ppm; echo "\${COMPREPLY[@]}"\n` +
    `COMP_WORDS=(ppm module load --b); COMP_CWORD=3; _ppm; echo "\${COMPREPLY[@]}"\n`;
  const out = await new Deno.Command("bash", { args: ["-c", probe] }).output();
  assertEquals(new TextDecoder().decode(out.stdout).trim().split("\n"), ["up", "--build"]);
});

Deno.test("cli: module status --json reports the documented fields on any host", async () => {
  const r = await ppm(["module", "status", "--json"]);
  assertEquals(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assertEquals(typeof s.loaded, "boolean");
  assertEquals(typeof s.kernel, "string");
  assert("abi" in s && "version" in s && "useCount" in s && "device" in s);
  assertEquals(s.toolAbi, PPM_ABI_VERSION);
});

Deno.test("cli: module build without headers names the package to install", async () => {
  const r = await ppm([
    "module",
    "build",
    "--kernel-release",
    "0.0.0-nonexistent",
    "--out",
    "/tmp/ppm-nobuild",
  ]);
  assertEquals(r.code, 4);
  assertMatch(r.stderr, /no kernel headers for 0\.0\.0-nonexistent/);
  assertMatch(r.stderr, /linux-headers-0\.0\.0-nonexistent/);
});

Deno.test("cli: module load without a built module says how to build one", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await ppm(["module", "load"], { PPM_STATE_DIR: dir });
    assertEquals(r.code, 4);
    assertMatch(r.stderr, /no module built for kernel/);
    assertMatch(r.stderr, /ppm module load --build/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: --json errors are machine-readable too", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await ppm(["module", "load", "--json"], { PPM_STATE_DIR: dir });
    assertEquals(r.code, 4);
    const e = JSON.parse(r.stdout);
    assertEquals(e.exitCode, 4);
    assertMatch(e.fix, /build/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: the daemon's help gives the configuration's defaults", () => {
  const daemon = agentCommands().find((c) => c.name() === "daemon")!;
  const described = new Map(daemon.options.map((o) => [o.long, o.description]));
  let checked = 0;
  for (const s of SETTINGS) {
    const value = (CONFIG_DEFAULTS as Record<string, unknown>)[s.name];
    const text = s.flag && described.get(s.flag);
    if (value === undefined || value === null || !text) continue;
    assertMatch(text, new RegExp(`\\(default ${String(value).replaceAll(".", "\\.")}\\)$`), s.flag);
    checked++;
  }
  assertEquals(checked, 7);
  assertEquals(described.get("--config"), `configuration file (default ${DEFAULT_CONFIG_PATH})`);
});
