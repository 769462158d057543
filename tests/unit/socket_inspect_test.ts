/**
 * Which sockets of a process can move and why the others cannot, read from
 * a real process (python3) through pidfd_getfd. Needs root (ptrace access
 * to the child is enough, but CI runs as root anyway).
 */
import { readFds } from "../../core/dump/files.ts";
import { inspectSockets, socketReasons } from "../../core/dump/sockets.ts";
import { checkReasons } from "../../core/dump/check.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

/** The first line a child prints (it may come in more than one read). */
async function firstLine(out: ReadableStream<Uint8Array>): Promise<string> {
  const reader = out.getReader();
  let line = "";
  for (let i = 0; i < 100 && !line.includes("\n"); i++) {
    const { value, done } = await reader.read();
    if (done) break;
    line += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return line;
}

const SCRIPT = `
import os, socket, sys, time
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 0)); l.listen(7)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 0))
srv = socket.socket(socket.AF_UNIX); srv.bind("\\0ppm-test-%d" % os.getpid()); srv.listen(1)
a = socket.socket(socket.AF_UNIX); a.connect(srv.getsockname())
p, q = socket.socketpair()
c = socket.create_connection(("127.0.0.1", l.getsockname()[1]))
own = sys.argv[1]
h = socket.create_connection((own, l.getsockname()[1])) if own else socket.socket()
s6 = socket.socket(socket.AF_INET6)
t = socket.socket()
l2 = socket.socket(); l2.bind((own or "127.0.0.1", 0)); l2.listen(1)
i1 = socket.create_connection(l2.getsockname()); i2, _ = l2.accept()
print(l.fileno(), u.fileno(), a.fileno(), c.fileno(), s6.fileno(), t.fileno(), h.fileno(),
      p.fileno(), q.fileno(), i1.fileno(), i2.fileno(), flush=True)
time.sleep(30)
`;

Deno.test({
  name:
    "sockets: listeners, UDP, the process's own socketpairs and connections to itself can move; " +
    "other unix sockets, IPv6, loopback, same-node and unconnected ones cannot",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    // A connection to this machine's own address (not 127.x) stays on it, as loopback does.
    const own = Deno.networkInterfaces().find((i) =>
      i.family === "IPv4" && !i.address.startsWith("127.")
    )?.address ?? "";
    const child = new Deno.Command("python3", {
      args: ["-c", SCRIPT, own],
      stdout: "piped",
      stderr: "null",
      stdin: "null",
    }).spawn();
    try {
      // The descriptor numbers, one line.
      const line = await firstLine(child.stdout);
      const [l, u, a, c, s6, t, h, p, q, i1, i2] = line.trim().split(/\s+/).map(Number);
      const files = await readFds(child.pid);
      // A socketpair whose two ends it holds moves with its state (core/dump/fds/).
      assertEquals(
        files.objects.filter((o) => o.kind === "unix").map((o) => o.fd).sort((x, y) => x - y),
        [p, q],
      );
      const fds = files.sockets.map((s) => s.fd);
      for (const fd of [l, u, a, c, s6, t]) assert(fds.includes(fd), `fd ${fd} not a socket`);
      const { sockets, reasons } = inspectSockets(child.pid, fds);
      const byFd = new Map(sockets.map((s) => [s.fd, s]));
      assertEquals(byFd.get(l)?.kind, "tcp-listen");
      assertEquals(byFd.get(l)?.backlog, 7);
      assertEquals(byFd.get(l)?.local.addr, "0.0.0.0");
      assertEquals(byFd.get(u)?.kind, "udp");
      // A connection whose both ends the process holds moves with it (c and h: its peer waits
      // in the listener's queue, held by no process yet).
      assertEquals([byFd.get(i1)?.kind, byFd.get(i2)?.kind], ["tcp", "tcp"]);
      const text = reasons.join("\n");
      assertMatch(text, new RegExp(`fd ${a}: a unix socket`));
      assertMatch(text, new RegExp(`fd ${c}: a TCP connection over loopback`));
      assertMatch(text, new RegExp(`fd ${s6}: an IPv6 socket`));
      if (own) {
        assertMatch(text, new RegExp(`fd ${h}: a TCP connection to a process on this node`));
      }
      assertMatch(
        text,
        new RegExp(`fd ${t}: a TCP socket that is neither connected nor listening`),
      );
      // A checkpoint without --tcp-established: the sockets that can move are reasons too, and
      // say what carries them; with it (or a migration) they are not.
      const file = socketReasons(child.pid, files.sockets, false);
      assertMatch(
        file.join("\n"),
        new RegExp(`fd ${l}: a TCP listener on 0\\.0\\.0\\.0:\\d+; .*--tcp-established`),
      );
      assertMatch(file.join("\n"), new RegExp(`fd ${u}: a UDP socket on .*--tcp-established`));
      assertEquals(file.length, reasons.length + 5); // l, u, l2, i1, i2
      assertEquals(socketReasons(child.pid, files.sockets, true), reasons);
      const fdOf = (r: string) => Number(/^fd (\d+)/.exec(r)?.[1]);
      assertEquals(file.map(fdOf), [...file.map(fdOf)].sort((x, y) => x - y), "by descriptor");
      const without = await checkReasons(child.pid, { carrySockets: false });
      const carried = await checkReasons(child.pid, { carrySockets: true });
      assert(without.some((r) => r.startsWith(`fd ${l}: a TCP listener`)), without.join("\n"));
      assert(!carried.some((r) => r.startsWith(`fd ${l}:`)), carried.join("\n"));
      assertEquals(await checkReasons(child.pid), carried, "a migration carries them");
    } finally {
      child.kill("SIGKILL");
      await child.status;
      await child.stdout.cancel().catch(() => {});
    }
  },
});

const SHARED = `
import os, socket, sys, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 0))
kid = os.fork()
if kid == 0:
    time.sleep(30); os._exit(0)
print(u.fileno(), kid, flush=True)
time.sleep(30)
`;

Deno.test({
  name: "sockets: an IP socket another process holds too (inherited) is a reason, naming it",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    const child = new Deno.Command("python3", {
      args: ["-c", SHARED],
      stdout: "piped",
      stderr: "null",
      stdin: "null",
    }).spawn();
    let kid = 0;
    try {
      const line = await firstLine(child.stdout);
      const [u, k] = line.trim().split(/\s+/).map(Number);
      kid = k;
      const files = await readFds(child.pid);
      assertMatch(
        files.reasons.join("\n"),
        new RegExp(`fd ${u}: a socket \\(socket:\\[\\d+\\]\\) that process ${kid} holds too`),
      );
      const reasons = await checkReasons(child.pid);
      assert(reasons.some((r) => r.startsWith(`fd ${u}: a socket`)), reasons.join("\n"));
    } finally {
      if (kid > 0) Deno.kill(kid, "SIGKILL");
      child.kill("SIGKILL");
      await child.status;
      await child.stdout.cancel().catch(() => {});
    }
  },
});
