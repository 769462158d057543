/**
 * The paths a restore makes for descriptors (core/restore/fd_paths.ts): a
 * /dev/shm file made with its contents, owner, mode and mtime, or taken as
 * it is when the same contents are there, refused when others are; a
 * missing FIFO made; what is in the way named; what was made removed. And
 * the stub's spec: kernel objects are not opened by path, a /dev/shm file
 * is, with its kind, owner and mode checked.
 */
import {
  checkFdPaths,
  fdPathReasons,
  makeFdPaths,
  removePaths,
} from "../../core/restore/fd_paths.ts";
import { ID_CHECK, stubSpec, TAG } from "../../core/restore/spec.ts";
import type { FdEntry, LoadedImage } from "../../core/image/schema.ts";
import { PpmError } from "../../core/errors.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

const enc = new TextEncoder();

function image(fds: FdEntry[]): LoadedImage {
  return { files: { fds, mapped: [] } } as unknown as LoadedImage;
}

function shm(path: string, data: string, size: number): FdEntry {
  return {
    fd: 5,
    kind: "shm",
    path,
    flags: 2,
    pos: 0n,
    id: { mode: 0o100640, uid: 0, gid: 0, size, mtimeMs: 1_600_000_000_000, dev: 1n, ino: 2n },
    shm: { size, data: enc.encode(data) },
  };
}

Deno.test("fd paths: a /dev/shm file made, taken when the same, refused when not; removed after", async () => {
  const path = `/dev/shm/ppm-test-${crypto.randomUUID()}`;
  const img = image([shm(path, "hello", 8), { ...shm(path, "", 0), fd: 6, shm: undefined }]);
  try {
    assertEquals(fdPathReasons(img), []);
    const made = await makeFdPaths(img);
    assertEquals(made, [path]);
    const st = Deno.statSync(path);
    assertEquals([st.size, (st.mode ?? 0) & 0o7777, st.mtime?.getTime()], [
      8,
      0o640,
      1_600_000_000_000,
    ]);
    assertEquals(Deno.readFileSync(path), new Uint8Array([...enc.encode("hello"), 0, 0, 0]));
    // There now with the same contents: taken as it is, not made again.
    assertEquals(fdPathReasons(img), []);
    assertEquals(await makeFdPaths(img), []);
    Deno.writeFileSync(path, enc.encode("hellx\0\0\0"));
    assertMatch(fdPathReasons(img).join(), /fd 5: .* is here already, with other contents/);
    let err: unknown;
    try {
      checkFdPaths(img);
    } catch (e) {
      err = e;
    }
    assert(err instanceof PpmError && /remove what is in the way/.test(err.fix), `${err}`);
    removePaths(made);
    assertEquals(fdPathReasons(img), []);
    assert(!(await Deno.lstat(path).then(() => true, () => false)));
  } finally {
    await Deno.remove(path).catch(() => {});
  }
});

Deno.test("fd paths: a missing FIFO made with its mode, one in the way refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ppm-fifo-" });
  try {
    const fifo: FdEntry = {
      fd: 7,
      kind: "fifo",
      path: `${dir}/f`,
      flags: 0,
      pos: 0n,
      object: 0,
      id: { mode: 0o010604, uid: 0, gid: 0, size: 0, mtimeMs: 0, dev: 1n, ino: 2n },
    };
    const img = image([fifo, { ...fifo, fd: 8, flags: 1 }]);
    assertEquals(await makeFdPaths(img), [`${dir}/f`]);
    const st = Deno.lstatSync(`${dir}/f`);
    assert(st.isFifo);
    assertEquals((st.mode ?? 0) & 0o7777, 0o604);
    assertEquals(fdPathReasons(img), []);
    Deno.removeSync(`${dir}/f`);
    Deno.writeTextFileSync(`${dir}/f`, "");
    assertMatch(fdPathReasons(img).join(), /fd 7: .*\/f is here, and not a FIFO/);
    assertMatch(
      fdPathReasons(image([{ ...fifo, path: `${dir}/no/f` }])).join(),
      /no \(for .*\) is missing/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("stub spec: kernel objects are made by the process, a /dev/shm file opened with its identity", () => {
  const img = {
    task: {
      pid: 100,
      comm: "x",
      exe: "/bin/x",
      cwd: "/",
      umask: 0o22,
      uid: [0, 0, 0, 0],
      gid: [0, 0, 0, 0],
      groups: [],
      rlimits: [],
      nice: 0,
    },
    files: {
      fds: [
        { fd: 3, kind: "eventfd", path: "anon_inode:[eventfd]", flags: 2, pos: 0n },
        { fd: 4, kind: "pipe", path: "pipe:[1]", flags: 0, pos: 0n },
        shm("/dev/shm/seg", "x", 1),
      ],
      mapped: [],
    },
    vmas: [],
    signals: {
      actions: [],
      altstack: { sp: 0n, size: 0n, flags: 0 },
      robustList: 0n,
      clearChildTid: 0n,
    },
    mm: {},
    sockets: [],
  } as unknown as LoadedImage;
  const spec = stubSpec(img, {
    pid: 100,
    base: 1000,
    dev: "/dev/ppm",
    plan: "/p",
    pidOut: "/o",
    stdio: {},
  });
  const v = new DataView(spec.buffer);
  const fdRecords: { fd: number; check: number; path: string }[] = [];
  for (let off = 16; off < spec.length;) {
    const tag = v.getUint16(off, true), len = v.getUint32(off + 4, true);
    if (tag === TAG.FD) {
      fdRecords.push({
        fd: v.getInt32(off + 8, true),
        check: v.getUint32(off + 8 + 24, true),
        path: new TextDecoder().decode(spec.subarray(off + 8 + 72, off + 8 + len)),
      });
    }
    off += 8 + len;
  }
  assertEquals(fdRecords, [
    { fd: 5, check: ID_CHECK.TYPE | ID_CHECK.OWNER | ID_CHECK.MODE, path: "/dev/shm/seg" },
  ]);
});
