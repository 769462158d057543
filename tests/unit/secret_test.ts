/** The cluster secret: generation, permissions, parsing, HMAC helpers. */
import { join } from "node:path";
import { PpmError } from "../../core/errors.ts";
import {
  deriveKey,
  generateSecret,
  hmac,
  loadSecret,
  macEqual,
  parseSecret,
} from "../../core/security/secret.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "../support/assert.ts";
import { ppm } from "../support/cli.ts";

Deno.test("secret: generate writes 64 hex characters with mode 0600 and never overwrites", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const p = join(dir, "secret");
    const r = await ppm(["secret", "generate", "-o", p]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals((await Deno.stat(p)).mode! & 0o777, 0o600);
    assert(/^[0-9a-f]{64}\n$/.test(await Deno.readTextFile(p)));
    assertEquals((await loadSecret(p)).key.length, 32);
    assertEquals((await ppm(["secret", "generate", "-o", p])).code, 6);
    await assertRejects(() => generateSecret(p));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("secret: a file others can read is refused, as is a malformed one", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const p = join(dir, "s");
    await generateSecret(p);
    await Deno.chmod(p, 0o644);
    await assertRejects(() => loadSecret(p));
    assertThrows(() => parseSecret("abc"), PpmError);
    await assertRejects(() => loadSecret(join(dir, "missing")));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("secret: keys per purpose differ; MACs compare in constant time", () => {
  const k = parseSecret("00".repeat(32));
  const a = deriveKey(k, "announce"), c = deriveKey(k, "connect");
  assert(!macEqual(a, c));
  const m = hmac(a, new TextEncoder().encode("x"));
  assert(macEqual(m, hmac(a, new TextEncoder().encode("x"))));
  assert(!macEqual(m, hmac(c, new TextEncoder().encode("x"))));
  assert(!macEqual(m, m.subarray(0, 16)));
});
