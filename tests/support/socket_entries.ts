/**
 * Socket options as an image's socket entries carry them (core/image/sockets.ts),
 * valid values for tests that build SOCKETS and NETWORK records.
 *
 * @module
 */
import type { SocketOptions } from "../../core/image/sockets.ts";

/** A TCP socket's options, each valid. */
export const SOCKET_OPTIONS: SocketOptions = {
  reuseaddr: true,
  keepalive: false,
  sndbuf: 16384,
  rcvbuf: 131072,
  nodelay: true,
  keepidle: 7200,
  keepintvl: 75,
  keepcnt: 9,
};
