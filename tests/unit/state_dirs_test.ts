/**
 * A fresh machine has no /var/lib/ppm and no /run/ppm: every command that
 * writes state creates its directories, mode 0700, and never writes through
 * a symbolic link put in their place.
 */
import { join } from "node:path";
import { journalDir, record } from "../../core/freeze/journal.ts";
import { PpmError } from "../../core/errors.ts";
import {
  deputyBinDir,
  deputyRunDir,
  deputySocketPath,
  ensureDir,
  ensureDirSync,
  runRoot,
  stateDir,
} from "../../core/paths.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { ppm } from "../support/cli.ts";

/** The message of the PpmError `fn` throws or rejects with. */
async function failure(fn: () => unknown): Promise<string> {
  try {
    await fn();
  } catch (e) {
    assert(e instanceof PpmError, String(e));
    return e.message;
  }
  throw new Error("no error");
}

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ppm-dirs-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("state dirs: created with their parents, mode 0700; a link or a file in the way refused", () =>
  withTemp(async (t) => {
    const deep = join(t, "a", "b", "c");
    assertEquals(await ensureDir(deep), deep);
    for (const d of [join(t, "a"), join(t, "a", "b"), deep]) {
      assertEquals((await Deno.stat(d)).mode! & 0o777, 0o700, d);
    }
    assertEquals(await ensureDir(deep), deep); // idempotent
    await Deno.mkdir(join(t, "elsewhere"));
    await Deno.symlink(join(t, "elsewhere"), join(t, "link"));
    assertMatch(await failure(() => ensureDir(join(t, "link"))), /is a symbolic link/);
    assertMatch(await failure(() => ensureDirSync(join(t, "link"))), /is a symbolic link/);
    await Deno.writeTextFile(join(t, "file"), "");
    assertMatch(await failure(() => ensureDir(join(t, "file"))), /^cannot use .*file/);
  }));

Deno.test("state dirs: PPM_STATE_DIR and PPM_RUN_DIR choose them; the journal creates its own", () =>
  withTemp(async (t) => {
    const saved = [Deno.env.get("PPM_STATE_DIR"), Deno.env.get("PPM_RUN_DIR")];
    try {
      Deno.env.set("PPM_STATE_DIR", join(t, "state"));
      Deno.env.set("PPM_RUN_DIR", join(t, "run", "ppm"));
      assertEquals(stateDir(), join(t, "state"));
      assertEquals(runRoot(), join(t, "run", "ppm"));
      assertEquals(journalDir(), join(t, "run", "ppm", "frozen"));
      record({
        pid: 4242,
        startTicks: "1",
        repaired: [],
        dropIds: [],
        by: Deno.pid,
        phase: "frozen",
      });
      assert(
        (await Deno.stat(join(journalDir(), "4242.json")).catch(() => null)) !== null ||
          [...Deno.readDirSync(journalDir())].length === 1,
        "the journal entry was not written",
      );
      assertEquals((await Deno.stat(journalDir())).mode! & 0o777, 0o700);
    } finally {
      for (const [k, v] of [["PPM_STATE_DIR", saved[0]], ["PPM_RUN_DIR", saved[1]]] as const) {
        if (v === undefined) Deno.env.delete(k);
        else Deno.env.set(k, v);
      }
    }
  }));

Deno.test("state dirs: the deputy's, 0755 for every user's processes; PPM_DEPUTY_*_DIR choose them", () =>
  withTemp((t) => {
    const keys = ["PPM_DEPUTY_BIN_DIR", "PPM_DEPUTY_RUN_DIR"] as const;
    const saved = keys.map((k) => Deno.env.get(k));
    try {
      for (const k of keys) Deno.env.delete(k);
      if (Deno.uid() === 0) {
        assertEquals([deputyBinDir(), deputyRunDir()], ["/var/lib/ppm-deputy", "/run/ppm-deputy"]);
      } else {
        assertEquals([deputyBinDir(), deputyRunDir()], [
          join(stateDir(), "deputy"),
          join(runRoot(), "deputy"),
        ]);
      }
      Deno.env.set("PPM_DEPUTY_BIN_DIR", join(t, "bin"));
      Deno.env.set("PPM_DEPUTY_RUN_DIR", join(t, "run"));
      assertEquals([deputyBinDir(), deputySocketPath()], [
        join(t, "bin"),
        join(t, "run", "link.sock"),
      ]);
    } finally {
      keys.forEach((k, i) =>
        saved[i] === undefined ? Deno.env.delete(k) : Deno.env.set(k, saved[i]!)
      );
    }
    return Promise.resolve();
  }));

Deno.test("ppm secret generate: into a directory that does not exist yet", () =>
  withTemp(async (t) => {
    const path = join(t, "etc", "ppm", "secret");
    const r = await ppm(["secret", "generate", "-o", path]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals((await Deno.stat(path)).mode! & 0o777, 0o600);
    assertEquals((await Deno.stat(join(t, "etc", "ppm"))).mode! & 0o777, 0o700);
    assertMatch(await Deno.readTextFile(path), /^[0-9a-f]{64}\n$/);
  }));
