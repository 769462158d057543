/**
 * What a migration relays (core/dump/fds/survey.ts, relayed.ts), found in a
 * real child on this host: a python parent makes a pipe each way and a
 * unix socketpair, forks, and keeps the other ends (closing the child's),
 * as an MPI proxy or a shell would. With `relay` the child's ends are
 * relayed descriptors, without it reasons as before; an end its parent
 * holds too, and a socket with a descriptor queued in it (SCM_RIGHTS), stay
 * reasons naming what to do.
 */
import { readFds } from "../../core/dump/files.ts";
import { dumpRelayed } from "../../core/dump/fds/relayed.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

const PARENT = `
import os, socket, sys, time
r1, w1 = os.pipe()          # the parent writes, the child reads (fd 3)
r2, w2 = os.pipe()          # the child writes (fd 4), the parent reads
a, b = socket.socketpair()  # the child has b (fd 5)
c, d = socket.socketpair()  # the child has d (fd 6); a descriptor waits in it
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
e = socket.create_connection(l.getsockname())   # the child has e (fd 7), over loopback
f, _ = l.accept(); l.close()
mode = sys.argv[1]
pid = os.fork()
if pid == 0:
    for src, dst in ((r1, 3), (w2, 4), (b.fileno(), 5), (d.fileno(), 6), (e.fileno(), 7)):
        os.dup2(src, dst)
    os.closerange(8, 65536)
    time.sleep(30)
    os._exit(0)
if mode != "shared":
    for x in (r1, w2): os.close(x)
    b.close(); d.close(); e.close()
else:
    b.close(); d.close(); os.close(w2)   # keeps r1 and e: the child's ends held twice
socket.send_fds(c, [b"x"], [w1]) if mode == "rights" else None
print(pid, flush=True)
sys.stdin.read()
os.kill(pid, 9)
`;

async function withFamily(mode: string, fn: (pid: number) => Promise<void>) {
  const p = new Deno.Command("python3", {
    args: ["-c", PARENT, mode],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = p.stdout.getReader();
  try {
    const { value } = await reader.read();
    const pid = Number(new TextDecoder().decode(value).trim());
    assert(pid > 0, "no child");
    // Until the child has its descriptors in place (0-7 and no other).
    const until = Date.now() + 10_000;
    while ([...Deno.readDirSync(`/proc/${pid}/fd`)].length !== 8) {
      assert(Date.now() < until, "the child did not set up its descriptors");
      await new Promise((r) => setTimeout(r, 20));
    }
    await fn(pid);
  } finally {
    reader.releaseLock();
    await p.stdin.close();
    await p.status;
    await p.stdout.cancel().catch(() => {});
  }
}

Deno.test({
  name:
    "relayed descriptors: a child's pipe ends, unix socket and loopback TCP connection to its " +
    "parent are relayed by a migration",
  fn: () =>
    withFamily("clean", async (pid) => {
      const without = await readFds(pid);
      assertMatch(without.reasons.join("; "), /fd 3: a pipe .* whose other end/);
      const open = await readFds(pid, { relay: true });
      assertEquals(open.reasons, []);
      assertEquals(open.relayed.map((r) => [r.fd, r.end]), [
        [3, "pipe-read"],
        [4, "pipe-write"],
        [5, "unix-stream"],
        [6, "unix-stream"],
        [7, "tcp-stream"],
      ]);
      const d = dumpRelayed(pid, open.relayed);
      assertEquals(d.reasons, []);
      assertEquals(d.entries.map((e) => [e.fd, e.kind, e.relayed?.end, e.relayed?.shutdown]), [
        [3, "relayed", "pipe-read", 0],
        [4, "relayed", "pipe-write", 0],
        [5, "relayed", "unix-stream", 0],
        [6, "relayed", "unix-stream", 0],
        [7, "relayed", "tcp-stream", 0],
      ]);
    }),
});

Deno.test({
  name: "relayed descriptors: an end the parent holds too, and SCM_RIGHTS queued, are reasons",
  fn: async () => {
    await withFamily("shared", async (pid) => {
      const open = await readFds(pid, { relay: true });
      assertMatch(open.reasons.join("; "), /fd 3: pipe:\[\d+\] whose end process \d+ holds too/);
      assertMatch(open.reasons.join("; "), /fd 7: socket:\[\d+\] whose end process \d+ holds too/);
    });
    await withFamily("rights", async (pid) => {
      const open = await readFds(pid, { relay: true });
      assertEquals(open.reasons, []);
      const d = dumpRelayed(pid, open.relayed);
      assertEquals(d.entries.map((e) => e.fd), [3, 4, 5, 7]);
      assertMatch(
        d.reasons.join("; "),
        /fd 6: a unix socket .* descriptors queued in it \(SCM_RIGHTS\)/,
      );
    });
  },
});
