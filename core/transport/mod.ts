/**
 * The node-to-node transport: authenticated, encrypted TCP connections
 * carrying msgpack control messages and byte streams. See docs/transport.md.
 *
 * @module
 */

export {
  AuthError,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_CLOCK_SKEW_MS,
  MAX_HANDSHAKE_TIMEOUT_MS,
  PROTOCOL_VERSION,
  type RefusalCode,
} from "./auth.ts";
export { AEAD_NAME, TAG_BYTES } from "./cipher.ts";
export { type MigrationChannel, STREAM } from "./channel.ts";
export {
  type ConnectOptions,
  connectPeer,
  DEFAULT_MAX_PENDING_HANDSHAKES,
  DEFAULT_MAX_PENDING_PER_SOURCE,
  type ListenOptions,
  listenPeers,
  type PeerListener,
  type Refusal,
} from "./conn.ts";
export {
  type Frame,
  FrameReader,
  FrameWriter,
  KIND,
  MAX_CONTROL_PAYLOAD,
  MAX_DATA_CHUNK,
  MAX_DATA_PAYLOAD,
  MAX_STREAM_ID,
  PRE_AUTH_MAX_PAYLOAD,
} from "./frame.ts";
export {
  DEFAULT_RECV_TIMEOUT_MS,
  DEFAULT_STREAM_BUFFER_BYTES,
  DEFAULT_TOTAL_BUFFER_BYTES,
  PeerConnection,
  type PeerConnectionOptions,
  type TransportStats,
} from "./peer.ts";
