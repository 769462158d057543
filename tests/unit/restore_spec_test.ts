/**
 * The restore stub's spec, attacked: names and paths with newlines and
 * directive-like text stay data (the stub reads them back byte for byte);
 * malformed specs are refused, never truncated; and the stub opens the
 * process's files with the process's rights, refusing symlinks and files
 * that are not what the image saw. Runs the real stub on this host, with
 * /dev/null in place of /dev/ppm (the ioctl then fails, after every file
 * was opened).
 */
import { ensureStub, STUB_EXIT } from "../../core/restore/stub.ts";
import { checkImageFileTrust, restore } from "../../core/restore/restore.ts";
import { ID_BYTES, SPEC_MAGIC, stubSpec, TAG } from "../../core/restore/spec.ts";
import { fileId } from "../../core/dump/files.ts";
import type { LoadedImage } from "../../core/image/schema.ts";
import { decodeWaitStatus, waitpid, WALL } from "../../ffi/libc.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { checkSpec, hex } from "../support/stub_spec.ts";

const HOSTILE_COMM = "x\ngroups 1 0";
const HOSTILE_CWD = "/tmp/w d\ngroups 1 0\nfd 9 2 0 /etc/shadow";

function image(dir: string, over: Partial<LoadedImage["task"]> = {}): LoadedImage {
  return {
    task: {
      pid: 1,
      comm: HOSTILE_COMM,
      exe: `${dir}/exe\nsock 5 1 3 0`,
      cwd: HOSTILE_CWD,
      umask: 0o22,
      uid: [65534, 65534, 65534, 65534],
      gid: [65534, 65534, 65534, 65534],
      groups: [65534],
      caps: {},
      rlimits: [],
      personality: 0,
      kernel: "k",
      cpuFlags: [],
      xsaveSize: 512,
      abi: 4,
      createdAt: "",
      ...over,
    },
    mm: { auxv: [] } as unknown as LoadedImage["mm"],
    cpu: { regs: new Uint8Array(216), xstate: new Uint8Array(512), sigmask: 0n, restart: "none" },
    signals: {
      actions: [],
      altstack: { sp: 0n, size: 0n, flags: 2 },
      blocked: 0n,
      pending: 0n,
      sharedPending: 0n,
      deliverOnResume: 0,
      queue: [],
      robustList: 0n,
      robustListLen: 0n,
      clearChildTid: 0n,
      rseq: { addr: 0n, len: 0, sig: 0 },
    },
    vmas: [],
    files: {
      fds: [{ fd: 7, kind: "regular", path: `${dir}/a\nfd 8 2 0 /etc/shadow`, flags: 0, pos: 0n }],
      mapped: [],
    },
    sockets: [],
    pages: [],
    end: {},
    pageCount: 0,
  };
}

const OPTS = { pid: 4242, base: 1000, dev: "/dev/ppm", plan: "/p", pidOut: "/o", stdio: {} };

Deno.test("stub spec: names and paths with newlines and directives are data, read back exactly", async () => {
  const img = image("/srv");
  const r = await checkSpec(stubSpec(img, OPTS));
  assertEquals(r.code, 0, r.err);
  const lines = r.out.trim().split("\n");
  // One groups record, with the process's one group: no name added another.
  assertEquals(lines.filter((l) => l.startsWith("groups")), ["groups 65534"]);
  assertEquals(lines.filter((l) => l.startsWith("fd ")).length, 1);
  assertEquals(lines.filter((l) => l.startsWith("sock")).length, 0);
  assert(lines.includes(`comm :${hex(HOSTILE_COMM)}`), r.out);
  assert(lines.some((l) => l.startsWith("cwd ") && l.endsWith(`:${hex(HOSTILE_CWD)}`)), r.out);
  assert(lines.some((l) => l.endsWith(`:${hex(img.files.fds[0].path)}`)), r.out);
  assert(lines.some((l) => l.startsWith("map ") && l.endsWith(`:${hex(img.task.exe)}`)), r.out);
  assertEquals(lines.filter((l) => l.startsWith("fscred")), ["fscred 65534 65534"]);
});

Deno.test("stub spec: the encoder refuses what the stub could not take", () => {
  const nul = image("/srv", { cwd: "/tmp/a\0b" });
  assertMatch(String(captured(() => stubSpec(nul, OPTS))), /NUL/);
  const long = image("/srv", { cwd: "/" + "a".repeat(5000) });
  assertMatch(String(captured(() => stubSpec(long, OPTS))), /over 4095/);
  const groups = image("/srv", { groups: new Array(70000).fill(1) });
  assertMatch(String(captured(() => stubSpec(groups, OPTS))), /groups/);
});

function captured(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return "no error";
}

/** A spec built by hand: header with `count` records and the given raw records. */
function raw(records: Uint8Array[], count = records.length, magic = SPEC_MAGIC): Uint8Array {
  const size = 16 + records.reduce((a, r) => a + r.length, 0);
  const out = new Uint8Array(size);
  out.set(new TextEncoder().encode(magic).subarray(0, 8));
  new DataView(out.buffer).setUint32(8, 1, true);
  new DataView(out.buffer).setUint32(12, count, true);
  let off = 16;
  for (const r of records) {
    out.set(r, off);
    off += r.length;
  }
  return out;
}

function rec(tag: number, payload: Uint8Array | string, len?: number): Uint8Array {
  const p = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  const r = new Uint8Array(8 + p.length);
  const v = new DataView(r.buffer);
  v.setUint16(0, tag, true);
  v.setUint32(4, len ?? p.length, true);
  r.set(p, 8);
  return r;
}

const u32 = (...xs: number[]) => {
  const b = new Uint8Array(4 * xs.length);
  xs.forEach((x, i) => new DataView(b.buffer).setUint32(i * 4, x, true));
  return b;
};

Deno.test("stub spec: malformed specs are refused with the reason, never truncated", async () => {
  const cases: [string, Uint8Array, RegExp][] = [
    ["wrong magic", raw([rec(TAG.PID, u32(1))], 1, "PPMSPEX\0"), /not a version 1 spec/],
    ["too many records", raw([], 1 << 20), /records/],
    ["count past the data", raw([rec(TAG.PID, u32(1))], 2), /truncated/],
    ["length past the end", raw([rec(TAG.PID, u32(1), 4096)]), /length past the end/],
    ["unknown tag", raw([rec(99, u32(1))]), /unknown tag/],
    ["tag 0", raw([rec(0, u32(1))]), /unknown tag/],
    ["short fields", raw([rec(TAG.PID, new Uint8Array(2))]), /shorter/],
    ["long fields", raw([rec(TAG.PID, u32(1, 2))]), /longer/],
    ["pid twice", raw([rec(TAG.PID, u32(1)), rec(TAG.PID, u32(2))]), /twice/],
    ["NUL in a path", raw([rec(TAG.DEV, "/dev/\0ppm")]), /NUL/],
    ["empty path", raw([rec(TAG.DEV, "")]), /empty path/],
    ["path over 4095", raw([rec(TAG.DEV, "/" + "a".repeat(4095))]), /4095/],
    ["comm over 15", raw([rec(TAG.COMM, "a".repeat(16))]), /15 bytes/],
    ["groups not whole", raw([rec(TAG.GROUPS, new Uint8Array(6))]), /list/],
    ["groups over 65536", raw([rec(TAG.GROUPS, new Uint8Array(4 * 65537))]), /list/],
    [
      "bytes after the last record",
      (() => {
        const s = raw([rec(TAG.PID, u32(1))]);
        const t = new Uint8Array(s.length + 3);
        t.set(s);
        return t;
      })(),
      /bytes after/,
    ],
    [
      "fd record without identity",
      raw([rec(TAG.FD, new Uint8Array(24 + ID_BYTES - 1))]),
      /shorter/,
    ],
  ];
  for (const [name, bytes, why] of cases) {
    const r = await checkSpec(bytes);
    assertEquals(r.code, STUB_EXIT.BAD_SPEC, `${name}: exit ${r.code}, ${r.err}${r.out}`);
    assertMatch(r.err, why, name);
  }
});

/** A PID that is free now. */
function freePid(): number {
  const max = Number(Deno.readTextFileSync("/proc/sys/kernel/pid_max").trim());
  for (let i = 0; i < 1000; i++) {
    const p = Math.floor(max / 2 + Math.random() * (max / 2 - 1));
    try {
      Deno.statSync(`/proc/${p}`);
    } catch {
      return p;
    }
  }
  throw new Error("no free PID");
}

/**
 * Runs the stub's launcher on `img` with /dev/null as the device; lets the
 * child run to its ioctl (which fails on /dev/null); returns the child's
 * exit status and what it wrote to its error file.
 */
async function runStub(img: LoadedImage, dir: string): Promise<{ exit: number; error: string }> {
  const stub = await ensureStub();
  const pid = freePid();
  img.task.pid = pid;
  await Deno.writeFile(`${dir}/plan`, new Uint8Array(64));
  const specPath = `${dir}/spec-${pid}`;
  const errOut = `${dir}/err-${pid}`;
  await Deno.writeFile(
    specPath,
    stubSpec(img, {
      pid,
      base: 1000,
      dev: "/dev/null",
      plan: `${dir}/plan`,
      pidOut: `${dir}/pid-${pid}`,
      errOut,
      stdio: {},
      sameNode: true,
    }),
  );
  const launcher = await new Deno.Command(stub, {
    args: [specPath],
    env: { GLIBC_TUNABLES: "glibc.pthread.rseq=0" },
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).output();
  assertEquals(launcher.code, STUB_EXIT.OK, "launcher");
  // The child stops itself waiting for ptrace: let it go on to the (failing) ioctl.
  let status = 0;
  for (let i = 0; i < 200; i++) {
    try {
      Deno.kill(pid, "SIGCONT");
    } catch { /* exited */ }
    const [r, st] = waitpid(pid, WALL | 1);
    if (r === pid) {
      status = st;
      break;
    }
    await new Promise((res) => setTimeout(res, 25));
  }
  const error = await Deno.readTextFile(errOut).catch(() => "");
  return { exit: decodeWaitStatus(status).code, error };
}

Deno.test("stub: the process's files are opened with its rights, no symlink, as the image saw them", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.chmod(dir, 0o755);
    const own = `${dir}/own\nfd 9 2 0 x`;
    const secret = `${dir}/secret`;
    await Deno.writeTextFile(own, "mine");
    await Deno.chown(own, 65534, 65534);
    await Deno.chmod(own, 0o600);
    await Deno.writeTextFile(secret, "root's");
    await Deno.chmod(secret, 0o600);
    await Deno.mkdir(`${dir}/cwd`);
    await Deno.chown(`${dir}/cwd`, 65534, 65534);
    const exe = "/usr/bin/true"; // a d_path: /bin is a symlink on Debian
    const make = (path: string, flags = 2) => {
      const img = image(dir, { cwd: `${dir}/cwd`, cwdId: fileId(`${dir}/cwd`), exe });
      img.files.fds = [{ fd: 7, kind: "regular", path, flags, pos: 0n, id: fileId(path) }];
      img.files.mapped = [{ path: exe, size: 0, mtimeMs: 0, sha256: "", id: fileId(exe) }];
      return img;
    };

    // Its own file, read-write: every file opens, the ioctl is reached (and fails on /dev/null).
    let r = await runStub(make(own), dir);
    assertEquals(r.exit, 120, r.error);
    assertMatch(r.error, /restore refused/);

    // A root-only file the image claims the process had open: refused, not opened as root.
    r = await runStub(make(secret), dir);
    assertEquals(r.exit, 103, r.error);
    assertMatch(r.error, /Permission denied/);

    // Its file swapped for a symlink to the root-only file after the image was taken.
    const img = make(own);
    await Deno.remove(own);
    await Deno.symlink(secret, own);
    r = await runStub(img, dir);
    assertEquals(r.exit, 103, r.error);
    assertMatch(r.error, /symbolic links/);
    await Deno.remove(own);

    // Another file of the same user in its place: owner, mode or inode differ.
    await Deno.writeTextFile(own, "other");
    await Deno.chown(own, 65534, 65534);
    await Deno.chmod(own, 0o644);
    r = await runStub(img, dir);
    assertEquals(r.exit, 103, r.error);
    assertMatch(r.error, /mode 0644 here, 0600 in the image/);

    // A working directory swapped for a symlink.
    const img2 = make(own);
    await Deno.rename(`${dir}/cwd`, `${dir}/cwd.old`);
    await Deno.symlink("/root", `${dir}/cwd`);
    r = await runStub(img2, dir);
    assertEquals(r.exit, 105, r.error);
    assertMatch(r.error, /symbolic links/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restore: an image file someone else could have edited is refused before it is read", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const img = `${dir}/p.img`;
    await Deno.writeFile(img, new Uint8Array(16));
    await Deno.chmod(img, 0o644);
    checkImageFileTrust(img, await Deno.lstat(img)); // root's, not writable by others: fine
    await Deno.chmod(img, 0o666);
    assertMatch(String(captured(() => checkImageFileTrust(img, Deno.lstatSync(img)))), /others/);
    await Deno.chmod(img, 0o664);
    assertMatch(String(captured(() => checkImageFileTrust(img, Deno.lstatSync(img)))), /group/);
    await Deno.chmod(img, 0o644);
    await Deno.chown(img, 65534, 65534);
    assertMatch(String(captured(() => checkImageFileTrust(img, Deno.lstatSync(img)))), /uid 65534/);
    await Deno.symlink(img, `${dir}/link.img`);
    const e = await restore(`${dir}/link.img`).then(() => "restored", (x) => x);
    assertMatch(String(e), /symlink/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
