/**
 * Socket migration between three 6.1 guests running `ppm daemon`. Clients
 * run on node3 (a cluster peer: its own module rewrites the flow) or on
 * the bridge from the host side, inside the test's network namespace, at
 * 10.77.0.254 (a peer without ppm: node1 forwards the flow to node2, which
 * answers with node1's address).
 *
 * - An echo server moves node1 → node2 while a client streams checksummed
 *   bytes through it; every byte comes back in order, with no reset. Both
 *   paths. Its listener moves too: new clients dialing node1 reach node2.
 * - A client moves node1 → node2 while streaming to a server on node3.
 * - An echo server moves node1 → node2, the node of its client, which keeps
 *   dialing node1's address: node2 hands the client's packets to it locally.
 * - Python's http.server (single-threaded) moves under a request loop.
 * - A UDP request/response server moves; its client resumes.
 * - The asyncio and Go servers, once moved, are checkpointed on their new
 *   node with their connection and listener (`--tcp-established --kill`)
 *   and restored there while their client on node3 streams on: every byte
 *   comes back, no reset; the checkpoint's drops stay until the restore,
 *   which removes them.
 * - A failed socket migration (restore failure, destination crash before
 *   the commit) leaves the connection working at the source and no
 *   redirect entry on any node.
 *
 * The stall a peer sees is printed (a benchmark figure), not asserted.
 */
import { join } from "node:path";
import { ensurePackages } from "../../core/host/packages.ts";
import { stateDir } from "../../core/paths.ts";
import { generateSecret } from "../../core/security/secret.ts";
import { setLink } from "../../core/vcluster/network.ts";
import { guestPath, netnsName } from "../../core/vcluster/spec.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { highPids, type TestCluster, withCluster } from "../support/cluster.ts";
import { buildGoProgram, buildPrograms } from "../support/programs.ts";
import { Agents } from "./support/agents.ts";
import { TEST_PACKAGES } from "../support/packages.ts";

const CLUSTER = "tsock";
const NODES = [1, 2, 3];
const OUTSIDE = "10.77.0.254";

/** Runs `argv` on the host inside the cluster's namespace, in the background; returns it. */
function outside(argv: string[], out: string): Deno.ChildProcess {
  return new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      netnsName(CLUSTER),
      "sh",
      "-c",
      `exec "$@" > ${out} 2>&1`,
      "sh",
      ...argv,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

async function migrate(c: TestCluster, from: number, pid: string, to: number) {
  const r = await c.ppm(from, ["migrate", pid, "--to", `node${to}`, "--json"], 300_000);
  assertEquals(r.code, 0, `node${from} → node${to}: ${r.stderr}`);
  const m = JSON.parse(r.stdout);
  console.log(
    `  node${from} → node${to}: ${m.sockets} sockets, frozen ${
      (m.timesUs.frozen / 1000).toFixed(0)
    } ms`,
  );
  return m;
}

/** Starts `cmd` on node n in /tmp with its output in `out`; returns its PID. */
async function spawn(c: TestCluster, n: number, cmd: string, out: string): Promise<string> {
  return (await c.ok(n, [
    "sh",
    "-c",
    `${highPids()}cd /tmp; ${cmd} > ${out} 2>&1 < /dev/null & echo $!`,
  ]))
    .trim();
}

/** Ticks a stream client streams on after the event a step watches, before it is ended. */
const TICKS_AFTER = 5;

/**
 * Lets stream client `pid` (running on node `on`, its output in `out` on
 * node `outOn`) stream TICKS_AFTER more ticks, then ends its stream
 * (SIGUSR1: it half-closes and checks the rest of the echo), and waits for
 * its last line.
 */
async function endStream(c: TestCluster, on: number, pid: string, outOn: number, out: string) {
  const now = Number(
    (await c.ok(outOn, ["sh", "-c", `grep -c '^tick ' ${out} || true`])).trim() || "0",
  );
  await c.waitFor(
    outOn,
    `[ $(grep -c '^tick ' ${out}) -ge ${
      now + TICKS_AFTER
    } ] || grep -q '^ok stream_client\\|^FAIL' ${out}`,
    120,
  );
  await c.exec(on, ["kill", "-USR1", pid]);
  await c.waitFor(outOn, `grep -q '^ok stream_client\\|^FAIL' ${out}`, 240);
}

/** Waits for the `ok stream_client` line in node n's `out` (or the host file) and returns the stall. */
function stallOf(text: string): number {
  const m = /^ok stream_client bytes=(\d+) max_stall_ms=(\d+)/m.exec(text);
  assert(m, `the client did not finish cleanly:\n${text.slice(-2000)}`);
  assert(Number(m[1]) > 0);
  return Number(m[2]);
}

async function redirects(c: TestCluster, n: number): Promise<{ id: number; action: string }[]> {
  return JSON.parse(await c.ok(n, ["ppm", "redirects", "--json"]));
}

/** The drop entries a checkpoint with --kill left on node n for port `port` (a day idle). */
async function checkpointDrops(c: TestCluster, n: number, port: number): Promise<unknown[]> {
  const list: { action: string; old: { port: number }; idleTimeout: number }[] = JSON.parse(
    await c.ok(n, ["ppm", "redirects", "--json"]),
  );
  return list.filter((r) =>
    (r.action === "drop" || r.action === "drop-syn") && r.old.port === port &&
    r.idleTimeout === 86400
  );
}

/**
 * Checkpoints server `pid` on node n with its sockets (`--tcp-established
 * --kill`: its connection and listener go in the image, their peers' packets
 * are dropped here meanwhile) and restores it there, its output into
 * /tmp/NAME-r.out and .err. Checks the drops stay until the restore, which
 * removes them.
 */
async function checkpointRestore(
  c: TestCluster,
  n: number,
  pid: string,
  port: number,
  name: string,
): Promise<void> {
  const img = `/tmp/${name}.img`;
  const ck = await c.ppm(
    n,
    ["checkpoint", pid, "-o", img, "--tcp-established", "--kill", "--json"],
    120_000,
  );
  assertEquals(ck.code, 0, `checkpoint on node${n}: ${ck.stderr}`);
  const figures = JSON.parse(ck.stdout);
  const carried = figures.sockets as { carried: number; dropsKept: number };
  // A listener (new connections and all its packets, on each address) and a connection.
  assert(carried.carried >= 2 && carried.dropsKept >= 3, ck.stdout);
  assertEquals((await checkpointDrops(c, n, port)).length, carried.dropsKept);
  // ppm image lists them.
  const shown = JSON.parse(await c.ok(n, ["ppm", "image", "inspect", img, "--json"]));
  assertEquals(shown.sockets.length, carried.carried, JSON.stringify(shown.sockets));
  assertEquals(shown.drops, carried.dropsKept);
  // It arrived here: the node's agent collects it once ended, and its PID is free again.
  try {
    // Bounded generously: a process of many threads under a loaded TCG guest ends slowly.
    await c.waitFor(n, `[ ! -e /proc/${pid} ]`, 90);
  } catch (e) {
    const r = await c.exec(n, [
      "sh",
      "-c",
      `grep -E '^(State|PPid|Threads)' /proc/${pid}/status; ls /proc/${pid}/task | head; ` +
      "tail -n 30 /tmp/agent.log",
    ], 30_000).catch((x) => ({ stdout: `(cannot read: ${(x as Error).message})` }));
    if (e instanceof Error) e.message += `\nprocess ${pid} on node${n}:\n${r.stdout}`;
    throw e;
  }
  const rs = await c.ppm(n, [
    "restore",
    img,
    "--stdout",
    `/tmp/${name}-r.out`,
    "--stderr",
    `/tmp/${name}-r.err`,
    "--json",
  ], 120_000);
  assertEquals(rs.code, 0, `restore on node${n}: ${rs.stderr}`);
  const r = JSON.parse(rs.stdout);
  assertEquals(String(r.pid), pid, "the restored process has another PID");
  assertEquals(r.sockets.restored, carried.carried, rs.stdout);
  assertEquals(r.sockets.drops.removed, carried.dropsKept, rs.stdout);
  assertEquals(await checkpointDrops(c, n, port), [], "the checkpoint's drops stayed");
  console.log(
    `  checkpointed on node${n} with ${carried.carried} sockets (frozen ${
      (figures.timesUs.frozen / 1000).toFixed(0)
    } ms, ${carried.dropsKept} drops), restored there`,
  );
}

Deno.test({
  name: "guest 6.1: sockets move with the process; peers in and outside the cluster keep talking",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    await ensurePackages(TEST_PACKAGES.socket, "the socket test's programs");
    const progs = await buildPrograms(join(stateDir(), "test-programs"));
    const echo = guestPath(progs.echo_server), client = guestPath(progs.stream_client);
    const goEcho = guestPath(await buildGoProgram("go_echo", join(stateDir(), "test-programs")));
    const secret = join(stateDir(), "test-secret-sock");
    await Deno.remove(secret).catch(() => {});
    await generateSecret(secret);
    const hostOut = await Deno.makeTempDir({ prefix: "ppm-sock-" });
    const started: Deno.ChildProcess[] = [];
    await withCluster({ name: CLUSTER, nodes: 3, kernel: "6.1", memory: 1024 }, async (c) => {
      const ns = netnsName(CLUSTER);
      const ip = new Deno.Command("ip", {
        args: ["-n", ns, "addr", "add", `${OUTSIDE}/24`, "dev", "br0"],
      });
      assertEquals((await ip.output()).code, 0, "cannot give br0 an address");
      const agents = new Agents(c, secret);
      try {
        await Promise.all(
          NODES.map(async (n) => assertEquals((await c.ppm(n, ["module", "load"])).code, 0)),
        );
        await agents.startAll(NODES);
        await agents.waitMesh(NODES);

        await t.step(
          "an echo server moves while a client on node3 streams (cluster path)",
          async () => {
            const server = await spawn(c, 1, `${echo} 7001`, "/tmp/es1.out");
            await c.waitFor(1, "grep -q '^ready' /tmp/es1.out", 60);
            const cl = await spawn(c, 3, `${client} 10.77.0.1 7001 120 128`, "/tmp/sc1.out");
            await c.waitFor(3, "grep -q '^tick 3 ' /tmp/sc1.out", 120);
            await migrate(c, 1, server, 2);
            const peer = await redirects(c, 3);
            assert(peer.some((r) => r.action === "peer"), JSON.stringify(peer));
            await endStream(c, 3, cl, 3, "/tmp/sc1.out");
            const stall = stallOf(await c.ok(3, ["cat", "/tmp/sc1.out"]));
            console.log(`  the client on node3 saw a stall of ${stall} ms`);
          },
        );

        await t.step(
          "Python's asyncio echo server (its listener and connections in an epoll set, a " +
            "socketpair to wake its loop) moves while a client on node3 streams",
          async () => {
            const script = [
              "import asyncio, os, sys",
              "async def handle(r, w):",
              "    while True:",
              "        data = await r.read(65536)",
              "        if not data: break",
              "        w.write(data)",
              "        await w.drain()",
              "    if w.can_write_eof(): w.write_eof()",
              "    await w.drain()",
              "    w.close()",
              "async def main():",
              "    srv = await asyncio.start_server(handle, '0.0.0.0', 7010)",
              "    print('ready', os.getpid(), flush=True)",
              "    async with srv:",
              "        await asyncio.sleep(150)",
              "    print('ok asyncio', flush=True)",
              "asyncio.run(main())",
            ].join("\n");
            const server = (await c.ok(1, [
              "sh",
              "-c",
              `${highPids()}cd /tmp; /usr/bin/python3 -u -c "$0" > /tmp/pa.out 2>&1 < /dev/null & echo $!`,
              script,
            ])).trim();
            await c.waitFor(1, "grep -q '^ready' /tmp/pa.out", 120);
            const cl = await spawn(c, 3, `${client} 10.77.0.1 7010 150 128`, "/tmp/pa-c.out");
            await c.waitFor(3, "grep -q '^tick 3 ' /tmp/pa-c.out", 120);
            await migrate(c, 1, server, 2);
            // Then on node2, while the client streams on: checkpointed with its connection and
            // listener, ended, restored there. Its sockets are reasons without --tcp-established.
            const without = await c.ppm(2, ["checkpoint", "--check", server, "--json"]);
            assertEquals(without.code, 1, without.stdout);
            assert(
              JSON.parse(without.stdout).reasons.some((x: string) =>
                /TCP listener on 0\.0\.0\.0:7010; .*--tcp-established/.test(x)
              ),
              without.stdout,
            );
            const withFlag = await c.ppm(2, ["checkpoint", "--check", server, "--tcp-established"]);
            assertEquals(withFlag.code, 0, withFlag.stdout);
            await checkpointRestore(c, 2, server, 7010, "pa");
            await endStream(c, 3, cl, 3, "/tmp/pa-c.out");
            const stall = stallOf(await c.ok(3, ["cat", "/tmp/pa-c.out"]));
            console.log(
              `  the asyncio server's client saw its longest stall (the move or the checkpoint) ` +
                `of ${stall} ms`,
            );
            assertEquals(await c.ok(1, ["sh", "-c", `grep -c Error /tmp/pa.out || true`]), "0\n");
            assertEquals(
              await c.ok(2, ["sh", "-c", "grep -c -e Error -e Traceback /tmp/pa-r.err || true"]),
              "0\n",
            );
            assertEquals((await c.exec(2, ["kill", "-0", server])).code, 0, "the server ended");
          },
        );

        await t.step(
          "a Go echo server (goroutines, GC threads, the netpoller, SIGURG preemption) moves " +
            "while a client on node3 streams",
          async () => {
            const server = await spawn(c, 1, `${goEcho} 7011 150`, "/tmp/ge.out");
            await c.waitFor(1, "grep -q '^ready' /tmp/ge.out", 60);
            const cl = await spawn(c, 3, `${client} 10.77.0.1 7011 150 128`, "/tmp/ge-c.out");
            await c.waitFor(3, "grep -q '^tick 3 ' /tmp/ge-c.out", 120);
            const tids = (n: number) =>
              c.ok(n, ["ls", `/proc/${server}/task`]).then((x) => x.trim().split(/\s+/));
            const before = await tids(1);
            await migrate(c, 1, server, 2);
            // Every thread came along with its TID (the runtime may start more afterwards).
            const after = await tids(2);
            assertEquals(
              before.filter((t) => !after.includes(t)),
              [],
              `threads on node2: ${after}`,
            );
            const threads = before.length;
            // Then on node2, while the client streams on: checkpointed with its connection and
            // listener, ended, restored there; its ticker goes on.
            await checkpointRestore(c, 2, server, 7011, "ge");
            await c.waitFor(2, "grep -q '^tick ' /tmp/ge-r.out", 60);
            await endStream(c, 3, cl, 3, "/tmp/ge-c.out");
            const stall = stallOf(await c.ok(3, ["cat", "/tmp/ge-c.out"]));
            console.log(
              `  the Go server (${threads} threads) gave its client a longest stall (the move or ` +
                `the checkpoint) of ${stall} ms`,
            );
            assertEquals(await c.ok(2, ["sh", "-c", "grep -c FAIL /tmp/ge-r.err || true"]), "0\n");
            assertEquals((await c.exec(2, ["kill", "-0", server])).code, 0, "the server ended");
          },
        );

        await t.step(
          "new clients dialing node1 reach the migrated listener (SYN-CHANGE)",
          async () => {
            await spawn(c, 3, `${client} 10.77.0.1 7001 3 64`, "/tmp/sc2.out");
            await c.waitFor(3, "grep -q '^ok stream_client\\|^FAIL' /tmp/sc2.out", 120);
            stallOf(await c.ok(3, ["cat", "/tmp/sc2.out"]));
            const p = outside([client, "10.77.0.1", "7001", "3", "64"], join(hostOut, "sc2.out"));
            started.push(p);
            assertEquals(
              (await p.status).code,
              0,
              await Deno.readTextFile(join(hostOut, "sc2.out")),
            );
            stallOf(await Deno.readTextFile(join(hostOut, "sc2.out")));
            // The server's output (relayed to node1) shows both clients arriving at it.
            const served = await c.ok(1, ["cat", "/tmp/es1.out"]);
            assertMatch(served, /^conn 1 10\.77\.0\.3:/m);
            assertMatch(served, /^conn 2 10\.77\.0\.254:/m);
          },
        );

        await t.step(
          "connections waiting in the accept queue are accepted on the new node",
          async () => {
            // A server that accepts only once /tmp/go exists (on the node it runs on).
            const server = await spawn(
              c,
              1,
              "/usr/bin/python3 -c 'import os, socket, time\n" +
                "l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n" +
                'l.bind(("", 7005)); l.listen(8); print("ready", flush=True)\n' +
                'while not os.path.exists("/tmp/go"): time.sleep(0.2)\n' +
                "while True:\n    c, a = l.accept(); d = c.recv(100)\n" +
                '    c.sendall(b"served:" + d); c.close()\n\'',
              "/tmp/aq.out",
            );
            await c.waitFor(1, "grep -q '^ready' /tmp/aq.out", 60);
            const cl = [
              "import socket, sys",
              "s = socket.create_connection(('10.77.0.1', 7005), timeout=300)",
              "s.sendall(b'client-' + sys.argv[1].encode())",
              "print(s.recv(100).decode(), flush=True)",
            ].join("\n");
            for (const i of [1, 2, 3]) {
              await c.ok(3, [
                "sh",
                "-c",
                `cd /tmp; /usr/bin/python3 -c "$0" ${i} > /tmp/aqc${i}.out 2>&1 &`,
                cl,
              ]);
            }
            // All three have connected: they wait in the listener's accept queue.
            await c.waitFor(
              1,
              "[ $(ss -tn state established '( sport = :7005 )' | tail -n +2 | wc -l) -ge 3 ]",
              120,
            );
            await migrate(c, 1, server, 2);
            await c.ok(2, ["touch", "/tmp/go"]);
            for (const i of [1, 2, 3]) {
              await c.waitFor(3, `grep -q . /tmp/aqc${i}.out`, 120);
              assertEquals(
                (await c.ok(3, ["cat", `/tmp/aqc${i}.out`])).trim(),
                `served:client-${i}`,
              );
            }
          },
        );

        await t.step(
          "an echo server moves while a client outside the cluster streams (forwarding)",
          async () => {
            const server = await spawn(c, 1, `${echo} 7002`, "/tmp/es2.out");
            await c.waitFor(1, "grep -q '^ready' /tmp/es2.out", 60);
            const out = join(hostOut, "sc3.out");
            const p = outside([client, "10.77.0.1", "7002", "120", "128"], out);
            started.push(p);
            for (let i = 0; i < 600; i++) {
              if (/^tick 3 /m.test(await Deno.readTextFile(out).catch(() => ""))) break;
              await new Promise((r) => setTimeout(r, 200));
            }
            await migrate(c, 1, server, 2);
            const fwd = await redirects(c, 1);
            assert(fwd.some((r) => r.action === "forward"), JSON.stringify(fwd));
            // TICKS_AFTER more ticks through the forwarding, then the end of its stream.
            const ticksIn = async () =>
              (await Deno.readTextFile(out).catch(() => "")).match(/^tick /gm)?.length ?? 0;
            const now = await ticksIn();
            for (let i = 0; i < 600 && await ticksIn() < now + TICKS_AFTER; i++) {
              await new Promise((r) => setTimeout(r, 200));
            }
            try {
              Deno.kill(p.pid, "SIGUSR1");
            } catch {
              // It ended on its own (its 120 s passed): its status tells how.
            }
            assertEquals((await p.status).code, 0, await Deno.readTextFile(out));
            console.log(
              `  the outside client saw a stall of ${stallOf(await Deno.readTextFile(out))} ms`,
            );
          },
        );

        await t.step("a client moves while streaming to a server on node3", async () => {
          await spawn(c, 3, `${echo} 7003`, "/tmp/es3.out");
          await c.waitFor(3, "grep -q '^ready' /tmp/es3.out", 60);
          const cl = await spawn(c, 1, `${client} 10.77.0.3 7003 120 128`, "/tmp/sc4.out");
          await c.waitFor(1, "grep -q '^tick 3 ' /tmp/sc4.out", 120);
          await migrate(c, 1, cl, 2);
          // It runs on node2 now; its output still comes to node1's file.
          await endStream(c, 2, cl, 1, "/tmp/sc4.out");
          console.log(
            `  the server on node3 saw the client stall ${
              stallOf(await c.ok(1, ["cat", "/tmp/sc4.out"]))
            } ms`,
          );
        });

        await t.step(
          "an echo server moves to the node of its client, which dialed the old node",
          async () => {
            // The client on node2 keeps dialing node1's address; the server comes to node2, so
            // node2 must hand the client's packets to it locally (a packet sent out to node1 and
            // forwarded back would carry node2's own address as its source: a martian).
            const server = await spawn(c, 1, `${echo} 7006`, "/tmp/es6.out");
            await c.waitFor(1, "grep -q '^ready' /tmp/es6.out", 60);
            const cl = await spawn(c, 2, `${client} 10.77.0.1 7006 120 128`, "/tmp/sc6.out");
            await c.waitFor(2, "grep -q '^tick 3 ' /tmp/sc6.out", 120);
            await migrate(c, 1, server, 2);
            const local = await redirects(c, 2);
            assert(local.some((r) => r.action === "peer"), JSON.stringify(local));
            await endStream(c, 2, cl, 2, "/tmp/sc6.out");
            const stall = stallOf(await c.ok(2, ["cat", "/tmp/sc6.out"]));
            console.log(`  the client on node2 saw a stall of ${stall} ms`);
          },
        );

        await t.step(
          "Python's http.server moves under a request loop; every request is answered",
          async () => {
            // The same files on every node, as a shared file system would have them.
            for (const n of [1, 2]) {
              await c.ok(n, [
                "sh",
                "-c",
                "mkdir -p /tmp/www && echo hello-ppm > /tmp/www/index.txt",
              ]);
            }
            const server = await spawn(
              c,
              1,
              "cd /tmp/www && /usr/bin/python3 -c 'from http.server import HTTPServer, " +
                'SimpleHTTPRequestHandler as H; HTTPServer(("", 8000), H).serve_forever()\'',
              "/tmp/http.out",
            );
            await c.waitFor(1, "ss -ltn | grep -q ':8000 '", 60);
            // New connections are held back during the freeze (their SYNs dropped) and
            // half-done handshakes complete into the accept queue, which moves: no
            // connection may be reset. The client counts any reset, and asks again once.
            const loop = [
              "import time, urllib.request",
              "ok = 0; resets = 0; worst = 0.0; t_end = time.time() + 40",
              "def get():",
              "    u = 'http://10.77.0.1:8000/index.txt'",
              "    return urllib.request.urlopen(u, timeout=30).read()",
              "while time.time() < t_end:",
              "    t = time.time()",
              "    try:",
              "        body = get()",
              "    except ConnectionResetError:",
              "        resets += 1; print('reset', flush=True); body = get()",
              "    assert body == b'hello-ppm\\n', body",
              "    ok += 1; worst = max(worst, time.time() - t)",
              "    print('tick', ok, flush=True); time.sleep(0.1)",
              "print('done', ok, 'worst_ms', int(worst * 1000), 'resets', resets, flush=True)",
            ].join("\n");
            await c.ok(3, [
              "sh",
              "-c",
              'cd /tmp; /usr/bin/python3 -c "$0" > /tmp/load.out 2>&1 < /dev/null &',
              loop,
            ]);
            await c.waitFor(3, "grep -q '^tick 5$' /tmp/load.out", 120);
            await migrate(c, 1, server, 2);
            await c.waitFor(3, "grep -q '^done\\|Error' /tmp/load.out", 240);
            const out = await c.ok(3, ["cat", "/tmp/load.out"]);
            const m = /^done (\d+) worst_ms (\d+) resets (\d+)/m.exec(out);
            assert(m, out.slice(-2000));
            assertEquals(Number(m[3]), 0, `${m[3]} connections were reset: ${out.slice(-2000)}`);
            console.log(
              `  ${m[1]} requests, all answered; the slowest took ${m[2]} ms; ${m[3]} reset`,
            );
          },
        );

        await t.step("a UDP request/response server moves; its client resumes", async () => {
          const server = await spawn(
            c,
            1,
            "/usr/bin/python3 -c 'import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n" +
              's.bind(("", 9999))\nwhile True:\n    d, a = s.recvfrom(2048)\n    s.sendto(b"re:" + d, a)\'',
            "/tmp/udp.out",
          );
          await c.waitFor(1, "ss -lun | grep -q ':9999 '", 60);
          const cl = [
            "import socket, time",
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)",
            "got = 0; lost = 0; i = 0; t_end = time.time() + 40",
            "while time.time() < t_end:",
            "    i += 1; s.sendto(b'%d' % i, ('10.77.0.1', 9999))",
            "    try:",
            "        d, _ = s.recvfrom(2048)",
            "        if d == b're:%d' % i: got += 1",
            "        print('tick', i, 'got', got, flush=True)",
            "    except socket.timeout: lost += 1",
            "    time.sleep(0.1)",
            "print('done got', got, 'lost', lost, flush=True)",
          ].join("\n");
          await c.ok(3, [
            "sh",
            "-c",
            'cd /tmp; /usr/bin/python3 -c "$0" > /tmp/udpc.out 2>&1 &',
            cl,
          ]);
          await c.waitFor(3, "grep -q 'got 5$' /tmp/udpc.out", 120);
          await migrate(c, 1, server, 2);
          const before = Number(
            (await c.ok(3, ["sh", "-c", "tail -1 /tmp/udpc.out"])).trim().split(" ").at(-1),
          );
          await c.waitFor(3, "grep -q '^done' /tmp/udpc.out", 120);
          const out = await c.ok(3, ["cat", "/tmp/udpc.out"]);
          const m = /^done got (\d+) lost (\d+)/m.exec(out);
          assert(m, out);
          assert(Number(m[1]) > before + 10, `no answers after the move: ${out.slice(-500)}`);
          console.log(`  UDP: ${m[1]} answers, ${m[2]} lost (during the freeze)`);
        });

        await t.step(
          "a peer whose keepalive is shorter than the freeze keeps its idle connection",
          async () => {
            // A server with 40 MiB to move and no pre-copy: frozen for seconds. Its client probes
            // after 1 s idle, 1 s apart, and gives up after two unanswered (UCX's probes come
            // after 10 s, 2 s apart): without the drops' keepalive answers it dies in the freeze.
            const srv = [
              "import socket",
              "mem = bytearray(40 << 20)",
              "for i in range(0, len(mem), 4096): mem[i] = 1",
              "l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)",
              "l.bind(('', 7021)); l.listen(); print('ready', flush=True)",
              "c, _ = l.accept()",
              "while True:",
              "    d = c.recv(1)",
              "    if not d: break",
              "    c.sendall(d)",
            ].join("\n");
            const server = (await c.ok(1, [
              "sh",
              "-c",
              `${highPids()}cd /tmp; /usr/bin/python3 -c "$0" > /tmp/ka-s.out 2>&1 < /dev/null & echo $!`,
              srv,
            ])).trim();
            await c.waitFor(1, "grep -q '^ready' /tmp/ka-s.out", 60);
            const cl = [
              "import os, socket, time",
              "s = socket.create_connection(('10.77.0.1', 7021))",
              "s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)",
              "s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)",
              "s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)",
              "s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)",
              "s.sendall(b'a'); print('ready', s.recv(1), flush=True)",
              "t_end = time.time() + 240",
              "while not os.path.exists('/tmp/ka.go') and time.time() < t_end: time.sleep(0.2)",
              "try:",
              "    s.sendall(b'b'); print('answer', s.recv(1), flush=True)",
              "except OSError as e: print('error', e, flush=True)",
            ].join("\n");
            await c.ok(3, [
              "sh",
              "-c",
              'rm -f /tmp/ka.go; cd /tmp; /usr/bin/python3 -c "$0" > /tmp/ka.out 2>&1 &',
              cl,
            ]);
            try {
              await c.waitFor(3, "grep -q '^ready' /tmp/ka.out", 60);
              // Idle long enough for its probes to start before the freeze.
              await new Promise((r) => setTimeout(r, 3000));
              const r = await c.ppm(
                1,
                ["migrate", server, "--to", "node2", "--precopy-rounds", "0", "--json"],
                300_000,
              );
              assertEquals(r.code, 0, r.stderr);
              const frozen = (JSON.parse(r.stdout).timesUs.frozen / 1000).toFixed(0);
              await c.ok(3, ["touch", "/tmp/ka.go"]);
              await c.waitFor(3, "grep -q '^answer\\|^error' /tmp/ka.out", 60);
              const out = await c.ok(3, ["cat", "/tmp/ka.out"]);
              assertMatch(out, /^answer b'b'/m, `frozen ${frozen} ms: ${out}`);
              console.log(`  frozen ${frozen} ms; the peer's keepalive (1 s, 2 probes) held`);
            } finally {
              for (const n of [1, 2]) await c.exec(n, ["kill", server]);
            }
          },
        );

        await t.step(
          "a failed socket migration keeps the connection at the source, no redirect left",
          () =>
            agents.explain(NODES, async () => {
              const server = await spawn(c, 1, `${echo} 7004`, "/tmp/es4.out");
              await c.waitFor(1, "grep -q '^ready' /tmp/es4.out", 60);
              const cl = await spawn(c, 3, `${client} 10.77.0.1 7004 200 128`, "/tmp/sc5.out");
              await c.waitFor(3, "grep -q '^tick 3 ' /tmp/sc5.out", 120);
              const tables = async () => {
                const t: Record<number, number[]> = {};
                for (const n of NODES) t[n] = (await redirects(c, n)).map((x) => x.id).sort();
                return t;
              };
              // The client streams through both: in the crash case node2's agent dies holding
              // the restored copy and its lock (a drop on the connection), which the source has
              // it release once the client's packets come back here (no entry left, no reset).
              for (const f of ["restore", "crash-before-commit"]) {
                await agents.restart(2, NODES, f);
                const before = await tables();
                const asking = c.ppm(1, ["migrate", server, "--to", "node2"], 300_000);
                if (f.startsWith("crash")) {
                  // The source keeps its copy stopped until node2's next agent says it is absent.
                  await agents.waitDead(2);
                  await agents.start(2);
                }
                const r = await asking;
                assert(r.code !== 0, r.stdout);
                assertMatch(r.stderr, /runs on here/);
                console.log(`  ${f}: ${r.stderr.split("\n")[0]}`);
                const state = await c.ok(1, ["sh", "-c", `cut -d' ' -f3 /proc/${server}/stat`]);
                assert(state.trim() !== "T", `the server stayed stopped after the ${f} fault`);
                const after = await tables();
                for (const n of NODES) {
                  // Entries of earlier migrations may expire meanwhile; none may be added.
                  const added = after[n].filter((id) => !before[n].includes(id));
                  assertEquals(added, [], `node${n} kept redirect entries after the ${f} fault`);
                }
                assertEquals(
                  (await c.exec(1, ["kill", "-0", server])).code,
                  0,
                  "the server left node1",
                );
              }
              await agents.waitSeen(2, NODES);
              await endStream(c, 3, cl, 3, "/tmp/sc5.out");
              console.log(`  the client saw ${stallOf(await c.ok(3, ["cat", "/tmp/sc5.out"]))} ms`);
            }),
        );

        await t.step("the module cannot be unloaded while redirects are active", async () => {
          const r = await c.ppm(3, ["module", "unload"]);
          assertEquals(r.code, 6, r.stderr);
          assertMatch(r.stderr, /redirects? (is|are) active/);
        });

        await t.step(
          "when the new node dies, its redirects go and the peer sees a reset, not a hang",
          () =>
            agents.explain(NODES, async () => {
              const server = await spawn(c, 1, `${echo} 7009`, "/tmp/es9.out");
              await c.waitFor(1, "grep -q '^ready' /tmp/es9.out", 60);
              await spawn(c, 3, `${client} 10.77.0.1 7009 300 64`, "/tmp/sc9.out");
              await c.waitFor(3, "grep -q '^tick 3 ' /tmp/sc9.out", 120);
              await migrate(c, 1, server, 2);
              await c.waitFor(3, "grep -q '^tick 10 ' /tmp/sc9.out", 120);
              const t0 = Date.now();
              await setLink(netnsName(CLUSTER), 2, false);
              try {
                await c.waitFor(3, "grep -q '^FAIL' /tmp/sc9.out", 120);
              } finally {
                await setLink(netnsName(CLUSTER), 2, true);
              }
              const out = await c.ok(3, ["cat", "/tmp/sc9.out"]);
              assertMatch(out, /FAIL stream_client: .*(reset|Broken pipe)/);
              console.log(
                `  the client saw the reset ${((Date.now() - t0) / 1000).toFixed(0)} s after`,
              );
            }),
        );
      } finally {
        for (const p of started) {
          try {
            p.kill("SIGKILL");
          } catch { /* ended */ }
          await p.status.catch(() => {});
        }
        await Deno.remove(hostOut, { recursive: true }).catch(() => {});
      }
    });
  },
});
