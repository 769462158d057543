/**
 * Half-done handshakes on a listener that is about to move. A connection in
 * SYN_RECV (this node answered the SYN, the client's ACK has not come) is
 * not in the accept queue yet, so it would not move with the listener, and
 * the new node would reset it. The process is frozen by now, but the kernel
 * still completes handshakes into the accept queue: waiting a moment for
 * them, before the flows are dropped, lets them move as queued connections.
 *
 * @module
 */

/** /proc/net/tcp's state number for SYN_RECV (request socks are listed so). */
const SYN_RECV = 0x03;

/** The number of SYN_RECV entries of /proc/net/tcp text `table` whose local port is in `ports`. */
export function halfOpen(table: string, ports: ReadonlySet<number>): number {
  let n = 0;
  for (const line of table.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || parseInt(f[3], 16) !== SYN_RECV) continue;
    const port = parseInt(f[1].split(":")[1] ?? "", 16);
    if (ports.has(port)) n++;
  }
  return n;
}

/**
 * Waits (at most `boundMs`, polling every few ms) until no handshake is
 * half done on `ports`; returns how many were still half done at the end.
 * Synchronous: the process is frozen and the wait is short.
 */
export function settleHandshakes(
  ports: ReadonlySet<number>,
  boundMs = 300,
  read: () => string = () => Deno.readTextFileSync("/proc/net/tcp"),
): number {
  if (!ports.size) return 0;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const deadline = performance.now() + boundMs;
  for (let i = 0; i < 1000; i++) {
    const n = halfOpen(read(), ports);
    if (n === 0 || performance.now() >= deadline) return n;
    Atomics.wait(nap, 0, 0, 5);
  }
  return halfOpen(read(), ports);
}
