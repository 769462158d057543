/**
 * Attacks on checkpoint and restore (6.1 guest, one boot): hostile names and
 * paths restore exactly and add nothing; a file swapped for a symlink (or
 * for another file) is refused and nothing runs; credentials, capabilities,
 * no_new_privs, seccomp filters and the dumpable flag come back exactly,
 * for an unprivileged process, a root process with an empty bounding set
 * and a seccomp-filtered one; an image someone else could have edited is
 * refused. See docs/security.md.
 */
import { join } from "node:path";
import { ensurePackages } from "../../core/host/packages.ts";
import { stateDir } from "../../core/paths.ts";
import { guestPath } from "../../core/vcluster/spec.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { type TestCluster, withCluster } from "../support/cluster.ts";
import { buildPrograms } from "../support/programs.ts";
import { TEST_PACKAGES } from "../support/packages.ts";
import { settle, type Settled, unsettle } from "../support/settle.ts";

const BIN = join(stateDir(), "test-programs");

/** The /proc/PID/status lines that make up a process's credentials. */
const CRED_FIELDS = [
  "Uid",
  "Gid",
  "Groups",
  "CapInh",
  "CapPrm",
  "CapEff",
  "CapBnd",
  "CapAmb",
  "NoNewPrivs",
  "Seccomp",
  "Seccomp_filters",
];

/** Credentials of `pid` as the kernel shows them, plus who owns its /proc entry (dumpable). */
async function creds(c: TestCluster, pid: string): Promise<string> {
  const re = `^(${CRED_FIELDS.join("|")}):`;
  return await c.ok(1, [
    "sh",
    "-c",
    `grep -E '${re}' /proc/${pid}/status; stat -c 'proc owner %u:%g' /proc/${pid}/status; echo personality $(cat /proc/${pid}/personality)`,
  ]);
}

/** Bytes of `path` on node 1 as hex (od), so newlines and any byte compare exactly. */
async function bytesOf(c: TestCluster, cmd: string): Promise<string> {
  return (await c.ok(1, ["sh", "-c", `${cmd} | od -An -tx1 | tr -d ' \\n'`])).trim();
}

/**
 * Starts `confined` (as `user`: a setpriv prefix) in `dir` with `name` and
 * `file`, waits for tick 3, returns its PID.
 */
async function start(
  c: TestCluster,
  bin: string,
  o: { tag: string; dir: string; name: string; file: string; as: string; extra?: string },
): Promise<string> {
  // Its output files are its own: a restore opens them with its rights.
  const own = o.as.includes("65534") ? "chown 65534:65534" : "true";
  const pid = (await c.ok(1, [
    "sh",
    "-c",
    `: > /tmp/${o.tag}.out; : > /tmp/${o.tag}.err; ${own} /tmp/${o.tag}.out /tmp/${o.tag}.err; cd "$(printf '${o.dir}')" && ${o.as} ${bin} 300 "$(printf '${o.name}')" "$(printf '${o.file}')" ${
      o.extra ?? ""
    } > /tmp/${o.tag}.out 2> /tmp/${o.tag}.err & echo $!`,
  ])).trim();
  await c.waitFor(1, `grep -q '^tick 3 ' /tmp/${o.tag}.out || grep -q FAIL /tmp/${o.tag}.err`, 120);
  const err = await c.ok(1, ["cat", `/tmp/${o.tag}.err`]);
  assertEquals(err, "", `${o.tag} did not start well`);
  return pid;
}

/** Checkpoints `pid` with --kill into /tmp/TAG.img; returns the image path. */
async function checkpointKill(c: TestCluster, pid: string, tag: string): Promise<string> {
  const img = `/tmp/${tag}.img`;
  const ck = await c.ppm(1, ["checkpoint", pid, "-o", img, "--kill"]);
  assertEquals(ck.code, 0, `checkpoint of ${tag}: ${ck.stderr}`);
  await c.waitFor(1, `! kill -0 ${pid} 2>/dev/null`, 30);
  return img;
}

async function restore(c: TestCluster, img: string, tag: string) {
  return await c.ppm(1, [
    "restore",
    img,
    "--stdout",
    `/tmp/${tag}.out`,
    "--stderr",
    `/tmp/${tag}.err`,
  ]);
}

/** Waits for the end of `pid` and checks it ended well. */
async function finishes(c: TestCluster, pid: string, tag: string): Promise<void> {
  await c.waitFor(1, `! kill -0 ${pid} 2>/dev/null`, 240);
  const err = await c.ok(1, ["cat", `/tmp/${tag}.err`]);
  assertEquals(err, "", `${tag}: ${err}`);
  assertMatch(await c.ok(1, ["cat", `/tmp/${tag}.out`]), /^ok confined 300/m);
}

const NOBODY = "setpriv --reuid=65534 --regid=65534 --groups=65534,100 --";

Deno.test({
  name: "guest 6.1: security of checkpoint and restore",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const programs = await buildPrograms(BIN);
    await ensurePackages(TEST_PACKAGES.security, "the security tests");
    const bin = guestPath(programs.confined);
    await withCluster({ name: "tsec", nodes: 1, kernel: "6.1", memory: 1536 }, async (c) => {
      assertEquals((await c.ppm(1, ["module", "load"])).code, 0);
      // The programs run as other users: in this guest (its own copy of the host's directories),
      // the state directory that holds them (root's, 0700 when ppm made it) may be passed through.
      await c.ok(1, ["chmod", "711", guestPath(stateDir())]);
      // The restored programs run to their ends (30 s each) while the next steps go on.
      const ends: Promise<Settled<void>>[] = [];

      await t.step("hostile names and paths restore exactly and add nothing", async () => {
        const dir = "/tmp/w d\\ngroups 1 0\\nfd 9 2 0 /etc/shadow";
        const file = `${dir}/f\\nsock 1 1 1 1\\nmap 0 2 x`;
        const name = "n\\ngroups 0";
        await c.ok(1, [
          "sh",
          "-c",
          `d="$(printf '${dir}')"; f="$(printf '${file}')"; mkdir -p "$d" && : > "$f" && chown 65534:65534 "$d" "$f" && chmod 600 "$f"`,
        ]);
        const pid = await start(c, bin, { tag: "hostile", dir, name, file, as: NOBODY });
        const comm = await bytesOf(c, `cat /proc/${pid}/comm`);
        const cwd = await bytesOf(c, `readlink /proc/${pid}/cwd`);
        const fd3 = await bytesOf(c, `readlink /proc/${pid}/fd/3`);
        const before = await creds(c, pid);
        const img = await checkpointKill(c, pid, "hostile");
        const r = await restore(c, img, "hostile");
        assertEquals(r.code, 0, r.stderr);
        assertEquals(await bytesOf(c, `cat /proc/${pid}/comm`), comm, "name");
        assertEquals(await bytesOf(c, `readlink /proc/${pid}/cwd`), cwd, "cwd");
        assertEquals(await bytesOf(c, `readlink /proc/${pid}/fd/3`), fd3, "fd 3");
        assertEquals(await creds(c, pid), before);
        assertMatch(before, /^Groups:\s+100 65534\s*$/m);
        // Nothing else was opened for it: stdio, its file, nothing at 9 or above.
        const fds = (await c.ok(1, ["ls", `/proc/${pid}/fd`])).trim().split(/\s+/).sort();
        assertEquals(fds, ["0", "1", "2", "3"]);
        ends.push(settle(finishes(c, pid, "hostile")));
      });

      await t.step(
        "its file swapped for a symlink, or another file, is refused; nothing runs",
        async () => {
          await c.ok(1, [
            "sh",
            "-c",
            "mkdir -p /tmp/u && chown 65534:65534 /tmp/u && : > /tmp/u/f && chown 65534:65534 /tmp/u/f && chmod 600 /tmp/u/f",
          ]);
          const shadow = await c.ok(1, ["sha256sum", "/etc/shadow"]);
          const pid = await start(c, bin, {
            tag: "swap",
            dir: "/tmp/u",
            name: "swap",
            file: "/tmp/u/f",
            as: NOBODY,
          });
          const img = await checkpointKill(c, pid, "swap");
          await c.ok(1, ["sh", "-c", "rm /tmp/u/f && ln -s /etc/shadow /tmp/u/f"]);
          let r = await restore(c, img, "swap");
          assert(r.code !== 0, "a restore through a symlink succeeded");
          assertMatch(r.stderr, /symlink|symbolic link/);
          assertEquals((await c.exec(1, ["kill", "-0", pid])).code !== 0, true, "it runs");
          // Another file of the same user, same mode, in its place: another inode.
          await c.ok(1, [
            "sh",
            "-c",
            "rm /tmp/u/f && : > /tmp/u/f && chown 65534:65534 /tmp/u/f && chmod 600 /tmp/u/f",
          ]);
          r = await restore(c, img, "swap");
          assert(r.code !== 0, "a restore onto another file succeeded");
          assertMatch(r.stderr, /another file|differs/);
          assertEquals(await c.ok(1, ["sha256sum", "/etc/shadow"]), shadow);
          assertEquals((await c.exec(1, ["kill", "-0", pid])).code !== 0, true, "it runs");
        },
      );

      const credCases: [string, string, string][] = [
        ["unprivileged", NOBODY, ""],
        ["root, empty bounding set", "setpriv --bounding-set=-all --", ""],
        ["seccomp-filtered, no_new_privs, not dumpable", NOBODY, "seccomp"],
      ];
      for (const [i, [what, as, extra]] of credCases.entries()) {
        await t.step(`credentials come back exactly: ${what}`, async () => {
          const tag = `cred${i}`;
          await c.ok(1, [
            "sh",
            "-c",
            `mkdir -p /tmp/${tag} && : > /tmp/${tag}/f && ${
              as.includes("65534") ? "chown -R 65534:65534" : "true"
            } /tmp/${tag}`,
          ]);
          const pid = await start(c, bin, {
            tag,
            dir: `/tmp/${tag}`,
            name: tag,
            file: `/tmp/${tag}/f`,
            as,
            extra,
          });
          const before = await creds(c, pid);
          if (extra) assertMatch(before, /^Seccomp:\s+2$/m);
          if (as.includes("bounding")) assertMatch(before, /^CapBnd:\s+0+$/m);
          const img = await checkpointKill(c, pid, tag);
          const r = await restore(c, img, tag);
          assertEquals(r.code, 0, r.stderr);
          assertEquals(await creds(c, pid), before);
          ends.push(settle(finishes(c, pid, tag)));
        });
      }

      await t.step("every restored program runs to its end, with nothing on stderr", async () => {
        for (const e of ends) unsettle(await e);
      });

      await t.step("an image someone else could have edited is refused", async () => {
        const img = "/tmp/cred0.img";
        await c.ok(1, ["chmod", "666", img]);
        let r = await c.ppm(1, ["restore", img]);
        assert(r.code !== 0, "a world-writable image was restored");
        assertMatch(r.stderr, /writable by others/);
        await c.ok(1, ["sh", "-c", `chmod 644 ${img} && chown 65534 ${img}`]);
        r = await c.ppm(1, ["restore", img]);
        assert(r.code !== 0, "a user's image was restored");
        assertMatch(r.stderr, /owned by uid 65534/);
      });
    });
  },
});
