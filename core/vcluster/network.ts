/**
 * The cluster's private network: a network namespace of its own holding a
 * bridge and one tap device per guest. Nothing is attached to the machine's
 * real interfaces, so guest traffic (multicast included) stays on the bridge.
 *
 * @module
 */
import { EXIT, PpmError } from "../errors.ts";
import { run, runOk } from "../host/run.ts";
import { exists } from "../paths.ts";

/** Tap device name of node `i`. */
export function tapName(i: number): string {
  return `tap${i}`;
}

/** True when the namespace exists. */
export function netnsExists(ns: string): Promise<boolean> {
  return exists(`/run/netns/${ns}`);
}

/** Creates namespace `ns` with bridge br0 and taps tap1..tapN, all up. */
export async function createNetwork(ns: string, nodes: number): Promise<void> {
  if (await netnsExists(ns)) await deleteNetwork(ns);
  await runOk("ip", ["netns", "add", ns], `cannot create network namespace ${ns}`);
  try {
    const ipn = (args: string[], what: string) => runOk("ip", ["-n", ns, ...args], what);
    await ipn(["link", "set", "lo", "up"], "cannot bring up lo");
    await ipn(
      [
        "link",
        "add",
        "br0",
        "type",
        "bridge",
        "stp_state",
        "0",
        "forward_delay",
        "0",
        "mcast_snooping",
        "0",
      ],
      "cannot create the bridge",
    );
    await ipn(["link", "set", "br0", "up"], "cannot bring up the bridge");
    for (let i = 1; i <= nodes; i++) {
      await ipn(["tuntap", "add", "dev", tapName(i), "mode", "tap"], `cannot create ${tapName(i)}`);
      await ipn(["link", "set", tapName(i), "master", "br0"], `cannot attach ${tapName(i)}`);
      await ipn(["link", "set", tapName(i), "up"], `cannot bring up ${tapName(i)}`);
    }
  } catch (e) {
    await deleteNetwork(ns);
    throw e;
  }
}

/** Sets node `i`'s link up or down (cuts it off the bridge, for failure tests). */
export async function setLink(ns: string, i: number, up: boolean): Promise<void> {
  await runOk(
    "ip",
    ["-n", ns, "link", "set", tapName(i), up ? "up" : "down"],
    `cannot set ${tapName(i)}`,
  );
}

/** Deletes the namespace and with it the bridge and taps; a missing one is fine. */
export async function deleteNetwork(ns: string): Promise<void> {
  if (!(await netnsExists(ns))) return;
  const r = await run("ip", ["netns", "del", ns]);
  if (r.code !== 0 && await netnsExists(ns)) {
    throw new PpmError(
      `cannot delete network namespace ${ns}`,
      r.stderr.trim(),
      `ip netns del ${ns}`,
      EXIT.FAILURE,
    );
  }
}
