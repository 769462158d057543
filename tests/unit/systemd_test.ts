/**
 * Living under systemd: sd_notify datagrams reach $NOTIFY_SOCKET (a real
 * unix datagram socket here), and the StartTransientUnit call that moves an
 * arrived process into its own scope is built from data that cannot become
 * syntax (hostile names and descriptions).
 */
import { join } from "node:path";
import { notifySystemd, scopeCall } from "../../core/host/systemd.ts";
import { AF, bindUnix, closeSocket, MSG, recvBytes, SOCK, socket } from "../../ffi/socket.ts";
import { assert, assertEquals, assertThrows } from "../support/assert.ts";

Deno.test("systemd: READY=1 reaches NOTIFY_SOCKET; nothing is sent without one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ppm-notify-" });
  const path = join(dir, "notify");
  const sock = socket(AF.UNIX, SOCK.DGRAM);
  try {
    bindUnix(sock, path);
    assert(notifySystemd("READY=1\nSTATUS=up", path));
    const data = recvBytes(sock, 4096, MSG.DONTWAIT);
    assertEquals(new TextDecoder().decode(data), "READY=1\nSTATUS=up");
    assertEquals(notifySystemd("READY=1", undefined), false);
    assertEquals(notifySystemd("READY=1", "relative/path"), false);
    assertEquals(notifySystemd("READY=1", join(dir, "absent")), false);
  } finally {
    closeSocket(sock);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("systemd: the scope call holds the PID, a clean description and its property count", () => {
  const a = scopeCall(4242, {
    unit: "ppm-4242-abcdef.scope",
    description: "ppm: process 4242 (evil\n--system\u0000x) from node1",
  });
  const i = a.indexOf("StartTransientUnit");
  assertEquals(a.slice(i + 1, i + 5), ["ssa(sv)a(sa(sv))", "ppm-4242-abcdef.scope", "fail", "3"]);
  assertEquals(a.slice(i + 5, i + 9), ["PIDs", "au", "1", "4242"]);
  const desc = a[a.indexOf("Description") + 2];
  assertEquals(desc, "ppm: process 4242 (evil?--system?x) from node1");
  assertEquals(a.at(-1), "0");
  const sliced = scopeCall(7, { unit: "x.scope", description: "d", slice: "job_1.slice" });
  assertEquals(sliced[sliced.indexOf("StartTransientUnit") + 4], "4");
  assertEquals(sliced.slice(-4), ["Slice", "s", "job_1.slice", "0"]);
});

Deno.test("systemd: bad PIDs and unit names are refused before busctl runs", () => {
  for (const pid of [0, 1, -5, 1.5, NaN]) {
    assertThrows(() => scopeCall(pid, { unit: "a.scope", description: "" }));
  }
  for (const unit of ["a.service", "../a.scope", "a b.scope", "-.scope\n", ".scope x", ""]) {
    assertThrows(() => scopeCall(99, { unit, description: "" }), Error, undefined);
  }
  assertThrows(() => scopeCall(99, { unit: "a.scope", description: "", slice: "x;y.slice" }));
});
