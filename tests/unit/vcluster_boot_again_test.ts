/**
 * A guest whose QEMU died while it booted is started once more
 * (core/vcluster/cluster.ts `bootAgain`); any other failure to boot, or a
 * second crash, is the cluster's failure.
 */
import { bootAgain } from "../../core/vcluster/cluster.ts";
import { PpmError } from "../../core/errors.ts";
import { assertEquals, assertRejects } from "../support/assert.ts";

const crashed = () => new PpmError("node3 of cluster t did not come up", "QEMU exited");

Deno.test("vcluster: a guest whose QEMU crashed while booting boots once more", async () => {
  const calls: string[] = [];
  let waits = 0;
  await bootAgain(
    () => {
      calls.push("wait");
      return ++waits === 1 ? Promise.reject(crashed()) : Promise.resolve();
    },
    () => (calls.push("restart"), Promise.resolve()),
    (why) => calls.push(`say ${why}`),
  );
  assertEquals(calls, ["wait", "say its QEMU exited while it booted", "restart", "wait"]);
});

Deno.test("vcluster: a second crash, or a guest that fails to boot, is not retried", async () => {
  let restarts = 0;
  await assertRejects(
    () =>
      bootAgain(
        () => Promise.reject(crashed()),
        () => (restarts++, Promise.resolve()),
        () => {},
      ),
  );
  assertEquals(restarts, 1);
  await assertRejects(
    () =>
      bootAgain(
        () => Promise.reject(new PpmError("node1 did not come up", "the guest failed to boot")),
        () => (restarts++, Promise.resolve()),
        () => {},
      ),
  );
  assertEquals(restarts, 1, "a guest that failed to boot is not started again");
});
