/** `ppm vcluster` argument validation and the pieces computed from it. */
import { assertEquals, assertThrows } from "../support/assert.ts";
import { PpmError } from "../../core/errors.ts";
import { qemuArgs } from "../../core/vcluster/qemu.ts";
import {
  guestPath,
  macAddress,
  nodeAddress,
  parseNode,
  parseSpec,
  validateName,
} from "../../core/vcluster/spec.ts";
import { consoleTrouble, unexpectedTaint } from "../../core/vcluster/console.ts";
import { encodeRequest, FrameReader } from "../../core/vcluster/client.ts";
import { ppm } from "../support/cli.ts";

Deno.test("vcluster spec: defaults", () => {
  assertEquals(parseSpec({}), {
    name: "default",
    nodes: 2,
    kernel: "6.1",
    memory: 1024,
    init: "busybox",
  });
});

Deno.test("vcluster spec: accepts valid values", () => {
  assertEquals(parseSpec({ name: "ci-2", nodes: "3", kernel: "6.12", memory: "2048" }), {
    name: "ci-2",
    nodes: 3,
    kernel: "6.12",
    memory: 2048,
    init: "busybox",
  });
  assertEquals(parseSpec({ init: "systemd" }).init, "systemd");
});

Deno.test("vcluster spec: rejects bad nodes, kernel, memory and names with usage errors", () => {
  const bad = [
    { nodes: "0" },
    { nodes: "9" },
    { nodes: "two" },
    { nodes: "1.5" },
    { kernel: "5.10" },
    { init: "openrc" },
    { init: "" },
    { memory: "64" },
    { memory: "lots" },
    { name: "Bad Name" },
    { name: "-x" },
    { name: "averyveryverylongname" },
  ];
  for (const o of bad) {
    assertThrows(
      () => parseSpec(o),
      (e: unknown) => e instanceof PpmError && e.exitCode === 2,
      JSON.stringify(o),
    );
  }
  assertThrows(() => validateName("../etc"), PpmError);
});

Deno.test("vcluster spec: node names and numbers", () => {
  assertEquals(parseNode("node2", 3), 2);
  assertEquals(parseNode("3", 3), 3);
  assertThrows(() => parseNode("node4", 3), PpmError);
  assertThrows(() => parseNode("host1", 3), PpmError);
  assertEquals(nodeAddress(2), "10.77.0.2");
  assertEquals(macAddress(10), "52:54:00:77:00:0a");
});

Deno.test("vcluster qemu args: tap, private bridge addresses, read-only host root, agent ports", () => {
  const args = qemuArgs({
    cluster: "t",
    index: 2,
    nodes: 3,
    memory: 512,
    vmlinuz: "/boot/vmlinuz-x",
    initramfs: "/tmp/i.cpio",
    runDir: "/run/ppm/vcluster/t",
    consoleLog: "/tmp/c.log",
    guestPath: "/var/lib/ppm/vcluster/t/bin",
  });
  const s = args.join(" ");
  for (
    const want of [
      "ifname=tap2,script=no",
      "ppm.node=node2",
      "ppm.ip=10.77.0.2/24",
      "ppm.hosts=node1=10.77.0.1,node2=10.77.0.2,node3=10.77.0.3",
      "readonly=on",
      "name=ppm.7",
      "-daemonize",
      "process=ppm-t-node2",
    ]
  ) if (!s.includes(want)) throw new Error(`missing ${want} in ${s}`);
  assertEquals(args[args.indexOf("-m") + 1], "512");
  if (s.includes("ppm.init=")) throw new Error(`busybox guests get no ppm.init: ${s}`);
  const sd = qemuArgs({
    cluster: "t",
    index: 1,
    nodes: 1,
    memory: 512,
    vmlinuz: "/boot/vmlinuz-x",
    initramfs: "/tmp/i.cpio",
    runDir: "/run/ppm/vcluster/t",
    consoleLog: "/tmp/c.log",
    guestPath: "/var/lib/ppm/vcluster/t/bin",
    init: "systemd",
  });
  const append = sd[sd.indexOf("-append") + 1];
  if (!append.split(" ").includes("ppm.init=systemd")) throw new Error(append);
});

Deno.test("vcluster cli: invalid arguments exit 2 before touching anything", async () => {
  for (
    const args of [["up", "--nodes", "0"], ["up", "--memory", "1"], ["up", "--name", "No!"], [
      "up",
      "--init",
      "runit",
    ], [
      "down",
      "--name",
      "x y",
    ]]
  ) {
    const r = await ppm(["vcluster", ...args]);
    assertEquals(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
  }
  const r = await ppm(["vcluster", "exec", "--name", "nosuch", "node1", "--", "true"]);
  assertEquals(r.code, 4);
});

Deno.test("console: oops, BUG, WARNING and panics are caught; taint O and E are allowed", () => {
  const log =
    "boot ok\n[  1.0] WARNING: CPU: 0 PID: 1 at foo\nfine\n[ 2.0] BUG: kernel NULL pointer dereference\n";
  assertEquals(consoleTrouble(log).length, 2);
  assertEquals(consoleTrouble("ppm: loading out-of-tree module taints kernel.\n"), []);
  assertEquals(unexpectedTaint(12288), "");
  assertEquals(unexpectedTaint(12288 | 512), "W");
});

Deno.test("agent frames: requests encode argv and env; the reader reassembles split frames", () => {
  const body = encodeRequest(["echo", "hi"], { A: "1" }, "/");
  const dv = new DataView(body.buffer);
  assertEquals([dv.getUint32(0, true), dv.getUint32(4, true)], [2, 1]);
  assertEquals(new TextDecoder().decode(body.subarray(8)), "/\0A=1\0echo\0hi\0");
  const frame = new Uint8Array([79, 11, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 104, 105, 33]);
  const r = new FrameReader();
  assertEquals(r.push(frame.subarray(0, 7)), []);
  const got = r.push(frame.subarray(7));
  assertEquals(got.length, 1);
  assertEquals(got[0].type, "O");
  assertEquals(new TextDecoder().decode(got[0].body), "hi!");
  assertThrows(() => new FrameReader().push(new Uint8Array([79, 1, 0, 0, 0])));
});

Deno.test("vcluster paths: host paths are the same in guests, except the host's /tmp", () => {
  assertEquals(guestPath("/work/main"), "/work/main");
  assertEquals(guestPath("/tmp/ci/x"), "/run/host/tmp/ci/x");
  assertEquals(guestPath("/tmp"), "/run/host/tmp");
  assertEquals(guestPath("/tmpfoo"), "/tmpfoo");
});
