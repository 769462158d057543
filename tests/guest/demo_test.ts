/**
 * The README's first command, `deno task demo`, as a new user runs it on a
 * fresh machine: no ppm state directory and no runtime directory yet (both
 * pointed at paths that do not exist), and agents started with no
 * `--interface` (the guests have eth0 and no default route). The counter
 * must go on from node2 with no gap.
 */
import { join } from "node:path";
import { PROJECT_ROOT } from "../../core/paths.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

Deno.test({
  name: "guest 6.1: deno task demo works from a machine without ppm's directories",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const fresh = await Deno.makeTempDir({ prefix: "ppm-fresh-" });
    try {
      const env = {
        PPM_STATE_DIR: join(fresh, "var", "lib", "ppm"),
        PPM_RUN_DIR: join(fresh, "run", "ppm"),
        NO_COLOR: "1",
      };
      const child = new Deno.Command(Deno.execPath(), {
        args: ["task", "demo", "--name", "tdemo"],
        cwd: PROJECT_ROOT,
        env,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const timer = setTimeout(() => child.kill("SIGTERM"), 900_000);
      const out = await child.output().finally(() => clearTimeout(timer));
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      console.log(text.split("\n").slice(-25).join("\n"));
      assertEquals(out.code, 0, text.slice(-3000));
      assertMatch(text, /no gap: \d+ lines in order/);
      assert(!/ppm: cannot/.test(text), text.slice(-3000));
      assertEquals((await Deno.stat(env.PPM_STATE_DIR)).mode! & 0o777, 0o700);
      assertEquals((await Deno.stat(env.PPM_RUN_DIR)).mode! & 0o777, 0o700);
    } finally {
      await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "cli/main.ts", "vcluster", "down", "--name", "tdemo"],
        cwd: PROJECT_ROOT,
        env: {
          PPM_RUN_DIR: join(fresh, "run", "ppm"),
          PPM_STATE_DIR: join(fresh, "var", "lib", "ppm"),
        },
        stdout: "null",
        stderr: "null",
      }).output().catch(() => {});
      await Deno.remove(fresh, { recursive: true }).catch(() => {});
    }
  },
});
