/**
 * The node-to-node transport: authenticated TCP connections carrying
 * msgpack control messages and byte streams. See docs/transport.md.
 *
 * @module
 */

export {
  AuthError,
  DEFAULT_MAX_CLOCK_SKEW_MS,
  DEFAULT_STEP_TIMEOUT_MS,
  MAX_STEP_TIMEOUT_MS,
  PROTOCOL_VERSION,
  type RefusalCode,
} from "./auth.ts";
export {
  type ConnectOptions,
  connectPeer,
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
} from "./frame.ts";
export { TAG_BYTES } from "./mac.ts";
export {
  DEFAULT_RECV_TIMEOUT_MS,
  DEFAULT_STREAM_BUFFER_BYTES,
  DEFAULT_TOTAL_BUFFER_BYTES,
  PeerConnection,
  type PeerConnectionOptions,
  type TransportStats,
} from "./peer.ts";
