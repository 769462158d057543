/**
 * The deputy installed where any user's process can run it
 * (core/deputy/binary.ts, core/paths.ts `ensureSharedDir`): a directory of
 * this user's, mode 0755, the program mode 0755 and run once there;
 * directories that others could change are refused, and a changed program
 * is replaced. Run as root, as the agent is.
 */
import { join } from "node:path";
import { DEPUTY_EXIT, ensureDeputy, installDeputy } from "../../core/deputy/binary.ts";
import { PpmError } from "../../core/errors.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

const root = Deno.uid() === 0;

async function tempRoot(): Promise<string> {
  const d = await Deno.makeTempDir({ prefix: "ppm-deputy-bin-" });
  await Deno.chmod(d, 0o755);
  return d;
}

async function refused(dir: string, why: RegExp): Promise<void> {
  try {
    await installDeputy(dir);
  } catch (e) {
    assert(e instanceof PpmError, `not a PpmError: ${e}`);
    assertMatch(e.message, why);
    return;
  }
  throw new Error(`${dir} was accepted`);
}

Deno.test({
  name:
    "deputy binary: installed mode 0755 in a 0755 directory of ours; runs; kept; replaced when changed",
  ignore: !root,
  fn: async () => {
    const top = await tempRoot();
    try {
      const dir = join(top, "a", "bin");
      const path = await installDeputy(dir);
      assert(path.startsWith(dir + "/ppm-deputy-"), path);
      for (const [p, mode] of [[dir, 0o755], [join(top, "a"), 0o755], [path, 0o755]] as const) {
        const st = await Deno.lstat(p);
        assertEquals([(st.mode ?? 0) & 0o7777, st.uid], [mode, 0], p);
      }
      const run = await new Deno.Command(path, { stderr: "null" }).output();
      assertEquals(run.code, DEPUTY_EXIT.USAGE);
      // Memoized per directory.
      assertEquals(await ensureDeputy(dir), path);
      assertEquals(await ensureDeputy(dir), path);
      // Changed: replaced with the built bytes; a wrong mode, likewise.
      const good = await Deno.readFile(path);
      await Deno.writeFile(path, new TextEncoder().encode("#!/bin/sh\nexit 0\n"));
      assertEquals(await installDeputy(dir), path);
      assertEquals(await Deno.readFile(path), good);
      await Deno.chmod(path, 0o777);
      await installDeputy(dir);
      assertEquals(((await Deno.lstat(path)).mode ?? 0) & 0o7777, 0o755);
      // A directory of ours made 0700 is opened up.
      await Deno.chmod(dir, 0o700);
      await installDeputy(dir);
      assertEquals(((await Deno.lstat(dir)).mode ?? 0) & 0o7777, 0o755);
    } finally {
      await Deno.remove(top, { recursive: true });
    }
  },
});

Deno.test({
  name: "deputy binary: a symbolic link, someone else's directory, one others may write, " +
    "or one under such a parent is refused",
  ignore: !root,
  fn: async () => {
    const top = await tempRoot();
    try {
      const real = join(top, "real");
      await Deno.mkdir(real, { mode: 0o755 });
      await Deno.symlink(real, join(top, "link"));
      await refused(join(top, "link"), /is a symbolic link/);
      const theirs = join(top, "theirs");
      await Deno.mkdir(theirs, { mode: 0o755 });
      await Deno.chown(theirs, 65534, 65534);
      await refused(theirs, /belongs to uid 65534/);
      const open = join(top, "open");
      await Deno.mkdir(open);
      await Deno.chmod(open, 0o777);
      await refused(open, /others may write in it \(mode 777\)/);
      const parent = join(top, "parent");
      await Deno.mkdir(parent);
      await Deno.chmod(parent, 0o777);
      await refused(
        join(parent, "bin"),
        /parent above it may be changed by others \(uid 0, mode 777\)/,
      );
      const file = join(top, "file");
      await Deno.writeTextFile(file, "");
      await refused(file, /cannot use .*file/);
      // A sticky parent (/tmp itself is one) is fine.
      const sticky = join(top, "sticky");
      await Deno.mkdir(sticky);
      await Deno.chmod(sticky, 0o1777);
      assert((await installDeputy(join(sticky, "bin"))).startsWith(join(sticky, "bin")));
    } finally {
      await Deno.remove(top, { recursive: true });
    }
  },
});
