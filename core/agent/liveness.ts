/**
 * Whether a node that went silent is still up: its kernel answers a TCP
 * connection attempt (accepted, or refused with a reset when its agent is
 * down), while a dead node or a cut link answers nothing.
 *
 * @module
 */

/** What a probe of a node's port found. */
export type NodeAnswer = "listening" | "refused" | "silent";

/** Tries a TCP connection to `host:port` for at most `timeoutMs`. */
export async function probeNode(
  host: string,
  port: number,
  timeoutMs: number,
): Promise<NodeAnswer> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const attempt = Deno.connect({ hostname: host, port }).then(
    (conn): NodeAnswer => {
      conn.close();
      return "listening";
    },
    (e): NodeAnswer => e instanceof Deno.errors.ConnectionRefused ? "refused" : "silent",
  );
  const late = new Promise<NodeAnswer>((res) => timer = setTimeout(() => res("silent"), timeoutMs));
  try {
    return await Promise.race([attempt, late]);
  } finally {
    clearTimeout(timer);
    // A connection that completes after the deadline is closed by `attempt` itself.
  }
}
