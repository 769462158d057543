/**
 * File hashes remembered across ppm processes (core/dump/hash_store.ts):
 * used only while the file is unchanged, and a store written by anyone
 * but root, for another boot, or holding anything malformed is not taken.
 */
import { join } from "node:path";
import {
  HashStore,
  MAX_ENTRIES,
  readStore,
  stampOf,
  storePath,
} from "../../core/dump/hash_store.ts";
import { assertEquals } from "../support/assert.ts";

const HEX = "ab".repeat(32);
const boot = () => Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim();
const root = Deno.uid() === 0;
const exists = (p: string) => Deno.lstat(p).then(() => true, () => false);

Deno.test("hash store: a hash is used while its file is unchanged, across processes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "lib.so");
    await Deno.writeTextFile(file, "one");
    const store = join(dir, "cache", "file-hashes.json");
    const s1 = new HashStore(store, root);
    const stamp = stampOf(file);
    // Hashed just now: a change in this second could be missed, so it is not used yet.
    s1.set(stamp, HEX);
    assertEquals(s1.get(stamp), undefined, "racy: changed within a second of its hash");
    s1.set(stamp, HEX, stamp.ctimeMs + 5000);
    assertEquals(s1.get(stamp), HEX);
    if (root) {
      // Stores of other boots go once untouched for a week; recent ones (other guests') stay.
      const stale = join(dir, "cache", "file-hashes-aaaa.json");
      const recent = join(dir, "cache", "file-hashes-bbbb.json");
      for (const f of [stale, recent]) await Deno.writeTextFile(f, "{}");
      const old = new Date(Date.now() - 8 * 24 * 3600_000);
      await Deno.utime(stale, old, old);
      s1.set(stamp, HEX, stamp.ctimeMs + 5000);
      assertEquals([await exists(stale), await exists(recent)], [false, true]);
      // Another ppm process of this boot reads it from the store.
      assertEquals(new HashStore(store, true).get(stamp), HEX);
      assertEquals((Deno.statSync(store).mode ?? 0) & 0o777, 0o600);
    }
    // Any change to the file: another stamp, no hash.
    await Deno.writeTextFile(file, "two");
    assertEquals(s1.get(stampOf(file)), undefined);
    assertEquals(new HashStore(store, root).get(stampOf(file)), undefined);
    // Another path with the same inode (a rename): not taken either.
    assertEquals(s1.get({ ...stamp, path: join(dir, "other.so") }), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hash store: a hostile or foreign store is not taken", async () => {
  if (!root) return; // only root keeps a store
  const dir = await Deno.makeTempDir();
  try {
    const store = join(dir, "file-hashes.json");
    const good = {
      path: "/usr/lib/libc.so.6",
      dev: 2049,
      ino: 77,
      size: 10,
      mtimeMs: 1,
      ctimeMs: 1,
      sha256: HEX,
      at: 100_000,
    };
    const write = async (v: unknown, mode = 0o600) => {
      await Deno.writeTextFile(store, typeof v === "string" ? v : JSON.stringify(v));
      await Deno.chmod(store, mode);
    };
    await write({ boot: boot(), entries: [good] });
    assertEquals(readStore(store, boot()).length, 1);
    // Another boot: device numbers meant something else then.
    assertEquals(readStore(store, "another-boot"), []);
    // Writable by others: not root's alone.
    await write({ boot: boot(), entries: [good] }, 0o666);
    assertEquals(readStore(store, boot()), []);
    // Not JSON, not an object, no entries list.
    for (const bad of ["{", "null", "[1]", JSON.stringify({ boot: boot(), entries: 5 })]) {
      await write(bad);
      assertEquals(readStore(store, boot()), [], bad);
    }
    // Malformed entries are dropped, the good one kept.
    const hostile = [
      { ...good, sha256: "zz".repeat(32) },
      { ...good, sha256: HEX + "00" },
      { ...good, path: "relative/lib.so" },
      { ...good, path: "/" + "a".repeat(5000) },
      { ...good, dev: -1 },
      { ...good, ino: 1.5 },
      { ...good, size: "10" },
      { ...good, at: 2 ** 60 },
      null,
      "x",
      good,
    ];
    await write({ boot: boot(), entries: hostile });
    assertEquals(readStore(store, boot()).map((e) => e.sha256), [HEX]);
    // A symlink to a store is not followed.
    const link = join(dir, "link.json");
    await Deno.symlink(store, link);
    assertEquals(readStore(link, boot()), []);
    // At most MAX_ENTRIES are read, the newest.
    await write({
      boot: boot(),
      entries: Array.from({ length: MAX_ENTRIES + 10 }, (_, i) => ({ ...good, ino: i })),
    });
    const read = readStore(store, boot());
    assertEquals([read.length, read[0].ino], [MAX_ENTRIES, 10]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hash store: its place is $PPM_CACHE_DIR when set, a file per boot", () => {
  const before = Deno.env.get("PPM_CACHE_DIR");
  try {
    Deno.env.set("PPM_CACHE_DIR", "/var/cache/ppm");
    assertEquals(storePath("0f1e-2d3c"), "/var/cache/ppm/file-hashes-0f1e-2d3c.json");
    // A boot id is data: nothing but hex digits and dashes reaches the name.
    assertEquals(storePath("../../etc/x"), "/var/cache/ppm/file-hashes-ec.json");
  } finally {
    if (before === undefined) Deno.env.delete("PPM_CACHE_DIR");
    else Deno.env.set("PPM_CACHE_DIR", before);
  }
});
