/** `ppm config show`: every setting's effective value and where it came from. */
import { join } from "node:path";
import { assertEquals, assertMatch } from "../support/assert.ts";
import { ppm } from "../support/cli.ts";

Deno.test("ppm config show: values from the defaults, the file and PPM_* variables, named", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ppm-config-" });
  try {
    const file = join(dir, "ppm.json");
    await Deno.writeTextFile(file, JSON.stringify({ port: 4100, nodeName: "n7", ttl: 2 }));
    const r = await ppm(["config", "show", "--config", file, "--json"], { PPM_TTL: "3" });
    assertEquals(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assertEquals(j.file, file);
    const by = Object.fromEntries(
      j.settings.map((s: { name: string; value: unknown; from: string }) => [s.name, s]),
    );
    assertEquals([by.port.value, by.port.from], [4100, `file ${file}`]);
    assertEquals([by.ttl.value, by.ttl.from], [3, "env PPM_TTL"]);
    assertEquals([by.group.value, by.group.from], ["239.77.0.1", "default"]);
    assertEquals(by.nodeName.value, "n7");
    const text = await ppm(["config", "show", "--config", file], { PPM_TTL: "3" });
    assertMatch(text.stdout, /^configuration file: .*ppm\.json$/m);
    assertMatch(text.stdout, /^ttl +3 +env PPM_TTL$/m);
    // A bad value is a usage error naming where it came from.
    const bad = await ppm(["config", "show", "--config", file], { PPM_TTL: "zero" });
    assertEquals(bad.code, 2, bad.stderr);
    assertMatch(bad.stderr, /PPM_TTL/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("usage errors are JSON on stdout under --json", async () => {
  const r = await ppm(["check", "--json", "--bogus-option"]);
  assertEquals(r.code, 2, r.stderr);
  const j = JSON.parse(r.stdout);
  assertEquals([j.error, j.exitCode], ["bad command line", 2]);
  assertMatch(j.reason, /unknown option '--bogus-option'/);
});
