/**
 * IPv4 forwarding on an old node: a flow from a peer outside the cluster
 * still arrives here and is forwarded, rewritten, to the new node. That
 * needs forwarding on, and ICMP redirects off (the new node is on the same
 * network: the kernel would tell the peer to go there directly, which it
 * cannot, since it dials this node's address).
 *
 * @module
 */

const CONF = "/proc/sys/net/ipv4/conf";

/** Turns IPv4 forwarding on and ICMP redirects off on every interface; returns what changed. */
export async function enableForwarding(): Promise<string[]> {
  const changed: string[] = [];
  const set = async (path: string, value: string) => {
    const now = (await Deno.readTextFile(path).catch(() => "")).trim();
    if (now === value || now === "") return;
    await Deno.writeTextFile(path, value);
    changed.push(`${path.slice(CONF.length + 1)}=${value}`);
  };
  const names: string[] = [];
  for await (const e of Deno.readDir(CONF)) names.push(e.name);
  for (const n of names) await set(`${CONF}/${n}/send_redirects`, "0");
  await set(`${CONF}/all/forwarding`, "1");
  return changed;
}
