/**
 * A process coming home into its deputy (core/deputy/home.ts), on this host
 * without the module: a real deputy (deputy.c, run as uid 65534 as a moved
 * process's would be), a real link (core/deputy/link.ts) and the restore
 * stub installed for deputies (mode 0711). Where the grant would come from
 * /dev/ppm, a pipe stands in: the stub's PPM_IOC_GRANT_TAKE on it fails, so
 * these tests see everything up to the grant and the failure after it.
 *
 * - `home` with a stub that cannot run: the link hears `home-failed` with
 *   the errno, the deputy goes on (connected, told its end later);
 * - `home` with the installed stub: the deputy's own task runs
 *   `ppm-restore-stub --into GRANT SPEC` (its descriptors passed), which
 *   refuses the stand-in grant and ends: its parent sees exit
 *   NOT_PERMITTED; `comeHome` reports the stub's end and says the deputy is
 *   gone (the deputy is no longer watched);
 * - hostile: `home` with two or four descriptors, and descriptors sent with
 *   another line, are closed and change nothing.
 */
import { join } from "node:path";
import { ensureDeputy, ensureHomeStub } from "../../core/deputy/binary.ts";
import { comeHome } from "../../core/deputy/home.ts";
import { DeputyLink } from "../../core/deputy/link.ts";
import { PpmError } from "../../core/errors.ts";
import { STUB_EXIT } from "../../core/restore/stub.ts";
import { close, kill, O, open } from "../../ffi/libc.ts";
import { pipe2 } from "../../ffi/fds.ts";
import {
  acceptNow,
  AF,
  bindUnix,
  closeSocket,
  ioctlInt,
  listenSocket,
  MSG,
  sendWithFds,
  SIOC,
  SOCK,
  socket,
} from "../../ffi/socket.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { waitUntil } from "../support/fd_kinds.ts";

const opts = { sanitizeResources: false, sanitizeOps: false, ignore: Deno.uid() !== 0 };
const NOBODY = 65534;

async function place() {
  const dir = await Deno.makeTempDir({ prefix: "ppm-deputy-home-" });
  await Deno.chmod(dir, 0o755);
  const bin = join(dir, "bin");
  return {
    dir,
    deputy: await ensureDeputy(bin),
    stub: await ensureHomeStub(bin),
    sock: join(dir, "run", "link.sock"),
  };
}

/** A deputy run as nobody, its stderr read. */
function startDeputy(bin: string, sock: string) {
  const child = new Deno.Command(bin, {
    args: [sock, "rank", "30"],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    uid: NOBODY,
    gid: NOBODY,
  }).spawn();
  let err = "";
  (async () => {
    for await (const c of child.stderr) err += new TextDecoder().decode(c);
  })();
  return { child, pid: child.pid, err: () => err };
}

/** Its status, or it is killed after `ms`. */
async function within(child: Deno.ChildProcess, ms: number): Promise<Deno.CommandStatus> {
  const timer = setTimeout(() => child.kill("SIGKILL"), ms);
  try {
    return await child.status;
  } finally {
    clearTimeout(timer);
  }
}

/** Closes the link, ends the deputy (by its PID, if it still runs) and removes the place. */
async function tidy(link: { close(): Promise<void> } | undefined, pid: number, dir: string) {
  await link?.close();
  try {
    kill(pid, 9);
  } catch { /* ended */ }
  await Deno.remove(dir, { recursive: true });
}

function fdCount(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

/** Its descriptor count once the same for 200 ms (a loaded host runs it late), at most 10 s. */
async function steadyFdCount(pid: number): Promise<number> {
  let last = fdCount(pid), same = 0;
  for (let i = 0; i < 200 && same < 4; i++) {
    await new Promise((res) => setTimeout(res, 50));
    const n = fdCount(pid);
    same = n === last ? same + 1 : 0;
    last = n;
  }
  return last;
}

Deno.test({
  name: "deputy home: the installed stub is 0711; a stub that cannot run leaves the deputy",
  ...opts,
  fn: async () => {
    const p = await place();
    const link = DeputyLink.listen(p.sock);
    const d = startDeputy(p.deputy, p.sock);
    const [r, w] = pipe2(O.CLOEXEC);
    const notExe = open("/dev/null", O.RDONLY | O.CLOEXEC);
    try {
      assertEquals((Deno.statSync(p.stub).mode ?? 0) & 0o7777, 0o711);
      link.expect(d.pid);
      await link.waitConnected(d.pid);
      const err = await link.home(d.pid, [r, w, notExe]).then(() => null, (e) => e);
      assert(err instanceof PpmError, `home: ${err}`);
      assertMatch(err.message, /could not run the restore stub: execveat: EACCES/);
      // Still the deputy: connected, and it ends as it is told.
      await waitUntil("the deputy to be connected", () => link.isConnected(d.pid));
      await link.exit(d.pid, 7);
      assertEquals((await within(d.child, 10_000)).code, 7);
    } finally {
      for (const fd of [r, w, notExe]) close(fd);
      await tidy(link, d.pid, p.dir);
    }
  },
});

Deno.test({
  name: "deputy home: the deputy's own task runs the stub --into, which refuses a grant " +
    "that is none; comeHome reports its end and the deputy gone",
  ...opts,
  fn: async () => {
    const p = await place();
    const link = DeputyLink.listen(p.sock);
    const d = startDeputy(p.deputy, p.sock);
    const work = join(p.dir, "work");
    Deno.mkdirSync(work);
    const files = {
      binary: p.stub,
      spec: join(work, "spec"),
      pidOut: join(work, "pid"),
      errOut: join(work, "error"),
    };
    Deno.writeFileSync(files.spec, new Uint8Array(16), { mode: 0o600 });
    let gone = false;
    try {
      link.expect(d.pid);
      await link.waitConnected(d.pid);
      const err = await comeHome(d.pid, files, {
        link,
        stub: p.stub,
        // A pipe where /dev/ppm's grant would be: the stub's GRANT_TAKE gets ENOTTY.
        grant: () => pipe2(O.CLOEXEC)[0],
        gone: () => gone = true,
      }).then(() => null, (e) => e);
      assert(err instanceof PpmError, `comeHome: ${err}`);
      assertMatch(err.message, /the restore stub its deputy ran ended/);
      assert(gone, "the deputy was not said to be gone");
      const st = await within(d.child, 10_000);
      assertEquals(st.code, STUB_EXIT.NOT_PERMITTED);
      assertMatch(d.err(), /the agent's grant was refused: Inappropriate ioctl/);
      assert(!link.isConnected(d.pid));
    } finally {
      await tidy(link, d.pid, p.dir);
    }
  },
});

Deno.test({
  name: "deputy home: two or four descriptors with `home`, or any with another line, " +
    "are closed and change nothing",
  ...opts,
  fn: async () => {
    const p = await place();
    Deno.mkdirSync(join(p.dir, "run"));
    const l = socket(AF.UNIX, SOCK.STREAM);
    bindUnix(l, p.sock);
    Deno.chmodSync(p.sock, 0o666);
    listenSocket(l, 1);
    const d = startDeputy(p.deputy, p.sock);
    const exe = open(p.stub, O.RDONLY | O.CLOEXEC);
    const [r, w] = pipe2(O.CLOEXEC);
    let conn = -1;
    try {
      await waitUntil("the deputy to connect", () => (conn = acceptNow(l) ?? -1) >= 0);
      await waitUntil("the deputy to be set up", () => fdCount(d.pid) >= 5);
      const before = await steadyFdCount(d.pid);
      const say = (line: string, fds: number[]) => {
        const n = sendWithFds(conn, new TextEncoder().encode(line), fds, MSG.NOSIGNAL);
        assertEquals(n, line.length);
      };
      say("home\n", [r, w]);
      say("home\n", [r, w, exe, r]);
      say("close 3\n", [r, w, exe]);
      say("nonsense\n", [exe]);
      // Once it read them all (our end's queue empty: a unix socket's bytes count against
      // the sender until read), and closed what came with them: the deputy still, holding
      // what it held.
      await waitUntil("the deputy to read the lines", () => ioctlInt(conn, SIOC.OUTQ) === 0);
      assertEquals(await steadyFdCount(d.pid), before);
      assertEquals(Deno.readLinkSync(`/proc/${d.pid}/exe`), p.deputy);
      say("exit 5\n", []);
      assertEquals((await within(d.child, 10_000)).code, 5);
    } finally {
      for (const fd of [exe, r, w]) close(fd);
      if (conn >= 0) closeSocket(conn);
      closeSocket(l);
      await tidy(undefined, d.pid, p.dir);
    }
  },
});
