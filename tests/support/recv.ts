/**
 * Reading a socket in tests without blocking forever.
 *
 * @module
 */
import { MSG, recvBytes } from "../../ffi/socket.ts";

/** Up to `n` bytes from socket `fd` as text, waiting at most about two seconds for them. */
export async function recvWithin(fd: number, n: number): Promise<string> {
  let s = "";
  for (let i = 0; i < 200 && s.length < n; i++) {
    try {
      s += new TextDecoder().decode(recvBytes(fd, n - s.length, MSG.DONTWAIT));
    } catch {
      await new Promise((r) => setTimeout(r, 10)); // EAGAIN: not yet
    }
  }
  return s;
}
