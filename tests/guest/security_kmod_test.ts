/**
 * The module's defences, in one boot of a three-node 6.1 cluster:
 *
 * - /dev/ppm is mode 0600, and every ioctl but INFO refuses an
 *   unprivileged user and root of a new user namespace (a container's
 *   root) with EPERM, also with a descriptor that real root opened for
 *   them; root gets past every permission check.
 * - A moved TCP connection survives blind RSTs: from a third node, RSTs
 *   with the connection's ports and far-off sequence numbers (and data at
 *   a made-up number first) neither end the peer's redirect entry nor the
 *   connection, which still carries data after the entry's linger time.
 * - Malformed packets (TCP headers cut short, bad data offsets, IP
 *   fragments, IP options, broken TCP options, out-of-window RST, FIN and
 *   data) through both hooks of every node: no oops or warning, and the
 *   connection still works.
 * - A RST with exactly the expected sequence number still ends it: the
 *   entry starts closing and the connection is reset.
 * - A grant (PPM_IOC_GRANT, for a process coming home into its deputy) is
 *   taken by the task it names, running the program it names, as nobody:
 *   root's rights then. Refused (EPERM) to another task, a traced one, one
 *   with a seccomp filter, with no_new_privs, sharing its filesystem
 *   context, running another program, or running one its user can read
 *   (dumpable).
 *
 * The moved process holds one connection and no listener (spoof_rst
 * server). The helpers are tests/programs/ioctl_probe.c, grant_probe.c and spoof_rst.c.
 */
import { join } from "node:path";
import { stateDir } from "../../core/paths.ts";
import { ensureStub } from "../../core/restore/stub.ts";
import { generateSecret } from "../../core/security/secret.ts";
import { guestPath, netnsName } from "../../core/vcluster/spec.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { highPids, type TestCluster, withCluster } from "../support/cluster.ts";
import { buildPrograms } from "../support/programs.ts";
import { Agents } from "./support/agents.ts";

const CLUSTER = "tsec";
const NODES = [1, 2, 3];
const PORT = 7101;
const OLD = "10.77.0.1";
const NEW = "10.77.0.2";
const PEER = "10.77.0.3";
/** The test's own address on the cluster's bridge: a host outside the cluster. */
const OUTSIDE = "10.77.0.254";
const PRIVILEGED = [
  "DUMP_TASK",
  "DUMP_VMAS",
  "RESTORE",
  "REDIRECT_ADD",
  "REDIRECT_DEL",
  "REDIRECT_LIST",
  "QUEUE_ACCEPT",
  "GRANT",
];

interface Entry {
  id: number;
  action: string;
  state: string;
  old: { addr: string; port: number };
  peer: { addr: string; port: number };
}

/** The probe's answers: ioctl name (or "open") -> "ok" or an errno name. */
function answers(out: string): Record<string, string> {
  return Object.fromEntries(
    out.trim().split("\n").map((l) => l.split(" ") as [string, string]),
  );
}

async function redirects(c: TestCluster, n: number): Promise<Entry[]> {
  return JSON.parse(await c.ok(n, ["ppm", "redirects", "--json"]));
}

/** Waits until node n's `file` has a line matching `re`; returns the match. */
async function line(c: TestCluster, n: number, file: string, re: RegExp, seconds = 60) {
  await c.waitFor(n, `grep -qE '${re.source}' ${file} || grep -q FAIL ${file}`, seconds);
  const text = await c.ok(n, ["cat", file]);
  const m = text.match(new RegExp(re.source, "m"));
  assert(m, `node${n} ${file}:\n${text}`);
  return m;
}

Deno.test({
  name: "guest 6.1: /dev/ppm permissions, blind RSTs and malformed packets",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const progs = await buildPrograms(join(stateDir(), "test-programs"));
    const spoofHost = progs.spoof_rst;
    const spoof = guestPath(spoofHost);
    const secret = join(stateDir(), "test-secret-sec");
    await Deno.remove(secret).catch(() => {});
    await generateSecret(secret);
    const t0 = Date.now();
    await withCluster({ name: CLUSTER, nodes: 3, kernel: "6.1", memory: 1024 }, async (c) => {
      const ns = netnsName(CLUSTER);
      const ip = await new Deno.Command("ip", {
        args: ["-n", ns, "addr", "add", `${OUTSIDE}/24`, "dev", "br0"],
      }).output();
      assertEquals(ip.code, 0, "cannot give br0 an address");
      await Promise.all(
        NODES.map(async (n) => assertEquals((await c.ppm(n, ["module", "load"])).code, 0)),
      );
      const agents = new Agents(c, secret);
      // The agents take a while to start in a guest: meanwhile, the permissions.
      const started = agents.startAll(NODES);
      started.catch(() => {});

      await t.step("every ioctl refuses an unprivileged user and a container's root", async () => {
        assertEquals((await c.ok(1, ["stat", "-c", "%a %U", "/dev/ppm"])).trim(), "600 root");
        // A copy every user may run (the state directory need not be readable to all).
        await c.ok(1, [
          "sh",
          "-c",
          `mkdir -p -m 755 /tmp/bin && install -m 755 ${guestPath(progs.ioctl_probe)} /tmp/bin/`,
        ]);
        const probe = "/tmp/bin/ioctl_probe";
        const nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups";
        const run = async (what: string, cmd: string) => {
          const r = answers(await c.ok(1, ["sh", "-c", cmd]));
          console.log(`  ${what}: ${JSON.stringify(r)}`);
          return r;
        };
        const root = await run("root", probe);
        assertEquals([root.open, root.INFO, root.REDIRECT_LIST], ["ok", "ok", "ok"]);
        for (const name of ["RESTORE", "REDIRECT_ADD", "REDIRECT_DEL", "QUEUE_ACCEPT"]) {
          assert(root[name] !== "EPERM", `root was refused ${name}`);
        }
        // Pid 1 is not the probe's tracee: dump refuses even root.
        assertEquals([root.DUMP_TASK, root.DUMP_VMAS], ["EPERM", "EPERM"]);

        assertEquals(await run("nobody", `exec ${nobody} ${probe}`), { open: "EACCES" });
        for (
          const [what, cmd] of [
            ["nobody, root's descriptor", `exec 3<>/dev/ppm; exec ${nobody} ${probe} 3`],
            ["container root", `exec ${probe} --userns`],
            [
              "container root, root's descriptor",
              `exec 3<>/dev/ppm; exec ${probe} --userns 3`,
            ],
          ]
        ) {
          const r = await run(what, cmd);
          assertEquals([r.open, r.INFO], ["ok", "ok"], what);
          for (const name of PRIVILEGED) assertEquals(r[name], "EPERM", `${what}: ${name}`);
        }
      });

      await t.step(
        "a grant is taken only by its task, running its program, unwatched",
        async () => {
          const stub = guestPath(await ensureStub());
          await c.ok(1, [
            "sh",
            "-c",
            `mkdir -p -m 755 /tmp/bin && install -m 711 ${stub} /tmp/bin/stub711 && ` +
            `install -m 711 ${stub} /tmp/bin/other711 && install -m 755 ${stub} /tmp/bin/stub755`,
          ]);
          const probe = guestPath(progs.grant_probe);
          const nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups";
          const run = async (mode: string, granted: string, cmd: string) => {
            // The kernel's reason for a refusal, in the same call (each call costs a second).
            const out = await c.ok(1, [
              "sh",
              "-c",
              `${probe} ${mode} ${granted} ${cmd} 2>&1; dmesg | grep 'grant refused' | tail -n 1`,
            ]);
            console.log(`  ${mode} ${granted} | ${cmd}: ${out.trim().replaceAll("\n", " / ")}`);
            return out;
          };
          // Taken: the stub then reads /dev/null as its spec, as root, and refuses it.
          const taken = /cannot read the spec passed by the agent[\s\S]*exit 2/;
          const refused = /grant was refused: Operation not permitted[\s\S]*exit 4/;
          // As nobody, from a shell that is nobody's already (setpriv keeps root's capabilities
          // up to its own execve, which would let the kernel think the stub readable).
          const asNobody = (prog: string, extra = "") =>
            `${nobody} ${extra} sh -c 'exec ${prog} --into 3 4'`;
          assertMatch(await run("plain", "/tmp/bin/stub711", asNobody("/tmp/bin/stub711")), taken);
          // Root's own process may read the stub (dumpable), and gains nothing.
          assertMatch(await run("plain", "/tmp/bin/stub711", "/tmp/bin/stub711 --into 3 4"), taken);
          for (
            const [mode, granted, cmd] of [
              ["other", "/tmp/bin/stub711", asNobody("/tmp/bin/stub711")],
              ["traced", "/tmp/bin/stub711", asNobody("/tmp/bin/stub711")],
              ["seccomp", "/tmp/bin/stub711", asNobody("/tmp/bin/stub711")],
              ["sharefs", "/tmp/bin/stub711", asNobody("/tmp/bin/stub711")],
              ["plain", "/tmp/bin/stub711", asNobody("/tmp/bin/stub711", "--no-new-privs")],
              ["plain", "/tmp/bin/stub711", asNobody("/tmp/bin/other711")],
              ["plain", "/tmp/bin/stub755", asNobody("/tmp/bin/stub755")],
            ]
          ) {
            assertMatch(await run(mode, granted, cmd), refused, `${mode} ${granted} ${cmd}`);
          }
        },
      );

      await started;
      await agents.waitMesh(NODES);
      let lport = 0;
      let entryId = 0;
      /** The later steps need the moved connection: without it they fail at once. */
      const moved = () => assert(entryId > 0, "the connection did not move (see above)");
      const ping = async (n: number) => {
        await c.ok(3, ["touch", "/tmp/rst/ping"]);
        await line(c, 3, "/tmp/rc.out", new RegExp(`^ping-ok ${n}$`));
      };
      const peerEntry = async () =>
        (await redirects(c, 3)).find((e) =>
          e.action === "peer" && e.old.addr === OLD && e.old.port === PORT &&
          e.peer.addr === PEER && e.peer.port === lport
        );

      await t.step(
        "a moved connection survives blind RSTs from a third node",
        () =>
          agents.explain(NODES, async () => {
            const server = (await c.ok(1, [
              "sh",
              "-c",
              `${highPids()}cd /tmp; ${spoof} server ${PORT} > /tmp/es.out 2>&1 < /dev/null & echo $!`,
            ])).trim();
            await c.waitFor(1, "grep -q '^ready' /tmp/es.out", 60);
            await c.ok(3, [
              "sh",
              "-c",
              `cd /tmp; ${spoof} client ${OLD} ${PORT} /tmp/rst > /tmp/rc.out 2>&1 < /dev/null &`,
            ]);
            await line(c, 3, "/tmp/rc.out", /^ping-ok 0$/);
            lport = Number((await line(c, 3, "/tmp/rc.out", /^conn ([0-9]+)$/))[1]);
            const m = await c.ppm(1, ["migrate", server, "--to", "node2", "--json"], 300_000);
            assertEquals(m.code, 0, m.stderr);
            console.log(
              `  moved: frozen ${(JSON.parse(m.stdout).timesUs.frozen / 1000).toFixed(0)} ms`,
            );
            await ping(1);
            const before = await peerEntry();
            assert(before, JSON.stringify(await redirects(c, 3)));
            assertEquals(before.state, "open");

            // node1 forges node2's end of the flow towards the client on node3.
            const r = await c.ok(1, [spoof, "send", NEW, `${PORT}`, PEER, `${lport}`, "far"]);
            assertMatch(r, /^sent \d+/);
            // Past the 10 s an entry lingers once closing: it is still there and open.
            await new Promise((res) => setTimeout(res, 12_000));
            const after = await peerEntry();
            assertEquals([after?.id, after?.state], [before.id, "open"]);
            await ping(2);
            entryId = before.id;
          }),
      );

      await t.step("malformed packets through both hooks of every node do not oops", async () => {
        moved();
        // In at node3 (the flow's peer entry: rewritten) from node1, and in at node1 (the
        // flow's drop entry, and no entry) from outside the cluster. Out at node3 (peer
        // rewrite, rerouted), node1 (drop) and node2 (answer): there only what a parser
        // must refuse, or that carries no ACK, RST or FIN, since a node's own packets are
        // believed.
        const sends: [number, string[]][] = [
          [1, [NEW, `${PORT}`, PEER, `${lport}`, "hostile"]],
          [3, [PEER, `${lport}`, OLD, `${PORT}`, "malformed"]],
          [1, [OLD, `${PORT}`, PEER, `${lport}`, "malformed"]],
          [2, [NEW, `${PORT}`, PEER, `${lport}`, "malformed"]],
        ];
        for (const [n, args] of sends) {
          assertMatch(await c.ok(n, [spoof, "send", ...args]), /^sent/);
        }
        for (const from of [[PEER, `${lport}`], [OUTSIDE, "40000"]]) {
          const r = await new Deno.Command("ip", {
            args: ["netns", "exec", ns, spoofHost, "send", ...from, OLD, `${PORT}`, "hostile"],
          }).output();
          assertEquals(r.code, 0, new TextDecoder().decode(r.stderr));
        }
        await ping(3);
        const e = await peerEntry();
        assertEquals([e?.id, e?.state], [entryId, "open"]);
        for (const n of NODES) {
          const log = await c.ok(n, ["dmesg"]);
          assert(
            !/Oops|BUG:|WARNING:|general protection|Call Trace/.test(log),
            `node${n}:\n${log}`,
          );
        }
      });

      await t.step("a RST with the exact expected sequence number still ends it", async () => {
        moved();
        await c.ok(3, ["touch", "/tmp/rst/seq"]);
        const seq = (await line(c, 3, "/tmp/rc.out", /^seq ([0-9]+)$/))[1];
        await c.ok(1, [spoof, "send", NEW, `${PORT}`, PEER, `${lport}`, "rst", seq]);
        await line(c, 3, "/tmp/rc.out", /^reset$/);
        const e = (await redirects(c, 3)).find((x) => x.id === entryId);
        assert(!e || e.state === "closing", JSON.stringify(e));
      });
      console.log(`  cluster up to done: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    });
  },
});
