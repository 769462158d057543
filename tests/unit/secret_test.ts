/**
 * The cluster secret: generation (exclusive, never through a link), the
 * checks when loading it (no symbolic link, a regular file, owner root or
 * this user, no group or other bits), parsing, HMAC helpers. Tests run as
 * root, so "another owner" is uid 65534.
 */
import { join } from "node:path";
import process from "node:process";
import { EXIT, PpmError } from "../../core/errors.ts";
import {
  deriveKey,
  generateSecret,
  hmac,
  loadSecret,
  macEqual,
  parseSecret,
  secretFileFix,
} from "../../core/security/secret.ts";
import { withTimeout } from "../../core/transport/deadline.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertThrows,
} from "../support/assert.ts";
import { ppm } from "../support/cli.ts";

/** Runs `fn` in a fresh temporary directory, removed afterwards. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The PpmError that loading `path` gives (bounded: a FIFO must not hang). */
async function refusal(path: string): Promise<PpmError> {
  let err: unknown;
  try {
    await withTimeout(loadSecret(path), 5_000, () => new Error("loading took more than 5 s"));
  } catch (e) {
    err = e;
  }
  assert(err instanceof PpmError, `${path}: expected a PpmError, got ${err}`);
  return err;
}

Deno.test("secret: generate writes 64 hex characters with mode 0600 and never overwrites", async () => {
  await inTempDir(async (dir) => {
    const p = join(dir, "secret");
    const r = await ppm(["secret", "generate", "-o", p]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals((await Deno.stat(p)).mode! & 0o777, 0o600);
    assert(/^[0-9a-f]{64}\n$/.test(await Deno.readTextFile(p)));
    assertEquals((await loadSecret(p)).key.length, 32);
    assertEquals((await ppm(["secret", "generate", "-o", p])).code, 6);
    await assertRejects(() => generateSecret(p));
  });
});

Deno.test("secret: a new secret is created exclusively, 0600 whatever the umask, never through a link", async () => {
  await inTempDir(async (dir) => {
    const old = process.umask(0);
    try {
      const p = join(dir, "s");
      await generateSecret(p);
      const st = await Deno.lstat(p);
      assert(st.isFile);
      assertEquals(st.mode! & 0o7777, 0o600);
      assertEquals(st.uid, process.geteuid!());
      assertEquals((await loadSecret(p)).key.length, 32);
      const before = await Deno.readTextFile(p);

      // An existing file: refused, untouched.
      let err = await generateSecret(p).catch((e) => e);
      assert(err instanceof PpmError);
      assertEquals(err.exitCode, EXIT.BUSY);
      assertMatch(err.message, /the file exists/);
      assertEquals(await Deno.readTextFile(p), before);

      // A symbolic link to an existing file: refused, the target untouched.
      const link = join(dir, "link");
      await Deno.symlink(p, link);
      err = await generateSecret(link).catch((e) => e);
      assertEquals(err.exitCode, EXIT.BUSY);
      assertMatch(err.message, /a symbolic link is there \(it is never written through\)/);
      assertEquals(await Deno.readTextFile(p), before);

      // A dangling symbolic link: refused, and its target is not created.
      const dangling = join(dir, "dangling"), target = join(dir, "target");
      await Deno.symlink(target, dangling);
      err = await generateSecret(dangling).catch((e) => e);
      assertEquals(err.exitCode, EXIT.BUSY);
      assertEquals(await Deno.lstat(target).then(() => true, () => false), false);

      // A directory that does not exist yet is created, mode 0700.
      await generateSecret(join(dir, "none", "s"));
      assertEquals((await Deno.stat(join(dir, "none"))).mode! & 0o777, 0o700);
      // One that cannot be: a file is in the way.
      err = await generateSecret(join(p, "s")).catch((e) => e);
      assertEquals(err.exitCode, EXIT.PERMISSION);
      assertMatch(err.fix, /remove or rename/);
    } finally {
      process.umask(old);
    }
  });
});

Deno.test("secret: group or other permission bits are refused, with the exact fix", async () => {
  await inTempDir(async (dir) => {
    const p = join(dir, "s");
    await generateSecret(p);
    for (const mode of [0o644, 0o640, 0o604, 0o660, 0o610, 0o601, 0o620, 0o602, 0o700 | 0o004]) {
      await Deno.chmod(p, mode);
      const err = await refusal(p);
      assertEquals(err.exitCode, EXIT.PERMISSION);
      assertMatch(
        err.message,
        new RegExp(
          `^the cluster secret ${p} has mode 0${
            mode.toString(8)
          }: its group or others have permissions: whoever can read it`,
        ),
      );
      assertEquals(err.fix, `chown root:root ${p}; chmod 600 ${p}`);
    }
    for (const mode of [0o600, 0o400]) {
      await Deno.chmod(p, mode);
      assertEquals((await loadSecret(p)).key.length, 32, mode.toString(8));
    }
  });
});

Deno.test("secret: a file owned by another user is refused", async () => {
  await inTempDir(async (dir) => {
    const p = join(dir, "s");
    await generateSecret(p);
    await Deno.chown(p, 65534, 65534);
    const err = await refusal(p);
    assertEquals(err.exitCode, EXIT.PERMISSION);
    assertMatch(
      err.message,
      new RegExp(`^the cluster secret ${p} is owned by uid 65534: only root may own it`),
    );
    assertEquals(err.fix, `chown root:root ${p}; chmod 600 ${p}`);
    // Owned by root, in another group: fine (no group permission bits).
    await Deno.chown(p, 0, 65534);
    assertEquals((await loadSecret(p)).key.length, 32);
  });
});

Deno.test("secret: a symbolic link, a directory, a FIFO and a huge file are refused", async () => {
  await inTempDir(async (dir) => {
    const p = join(dir, "s");
    await generateSecret(p);
    const link = join(dir, "link");
    await Deno.symlink(p, link);
    let err = await refusal(link);
    assertEquals(err.exitCode, EXIT.PERMISSION);
    assertMatch(err.message, new RegExp(`^the cluster secret ${link} is a symbolic link: `));
    assertMatch(err.fix, new RegExp(`chown root:root ${link}; chmod 600 ${link}$`));

    err = await refusal(dir);
    assertMatch(err.message, /is not a regular file: it is a directory/);

    const fifo = join(dir, "fifo");
    const mk = await new Deno.Command("mkfifo", { args: ["-m", "600", fifo] }).output();
    assert(mk.success);
    err = await refusal(fifo); // opened without blocking, then refused
    assertMatch(err.message, /is not a regular file: it is a FIFO/);

    const big = join(dir, "big");
    await Deno.writeTextFile(big, "0".repeat(100_000), { mode: 0o600 });
    err = await refusal(big);
    assertEquals(err.exitCode, EXIT.USAGE);
    assertMatch(err.message, /is malformed: it has 100000 bytes/);

    err = await refusal(join(dir, "missing"));
    assertEquals(err.exitCode, EXIT.MISSING);
  });
});

Deno.test("secret: the fix quotes paths for the shell", () => {
  assertEquals(
    secretFileFix("/etc/ppm/secret"),
    "chown root:root /etc/ppm/secret; chmod 600 /etc/ppm/secret",
  );
  assertEquals(
    secretFileFix("/tmp/my secret's"),
    `chown root:root '/tmp/my secret'\\''s'; chmod 600 '/tmp/my secret'\\''s'`,
  );
});

Deno.test("secret: a malformed file is refused", async () => {
  await inTempDir(async (dir) => {
    const p = join(dir, "s");
    await Deno.writeTextFile(p, "abc\n", { mode: 0o600 });
    assertEquals((await refusal(p)).exitCode, EXIT.USAGE);
    assertThrows(() => parseSecret("abc"), PpmError);
  });
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
