/**
 * What a migration and its relays need of a connection: control messages
 * and numbered byte streams (core/transport's PeerConnection provides it;
 * tests use in-memory ones), and the stream ids a migration uses on it
 * (the conversation is core/migrate/protocol.ts).
 *
 * @module
 */

/** Stream ids on a migration's connection: the image, then the relayed stdio. */
export const STREAM = { IMAGE: 1, STDOUT: 2, STDERR: 3, STDIN: 4, PRECOPY: 5 } as const;

/** The channel migration needs; core/transport's PeerConnection provides it. */
export interface MigrationChannel {
  /** Sends a control message. */
  send(msg: unknown): Promise<void>;
  /** Receives the next control message. */
  recv(timeoutMs?: number): Promise<unknown>;
  /** A sink writing into byte stream `id`. */
  streamSink(id: number): (chunk: Uint8Array) => Promise<void>;
  /** Ends byte stream `id`. */
  endStream(id: number): Promise<void>;
  /** The bytes of stream `id` as they arrive. */
  streamSource(id: number): AsyncIterable<Uint8Array>;
  /** Closes the connection. */
  close(): void;
  /** Settles once the connection is closed, by either side (when the channel can tell). */
  readonly closed?: Promise<void>;
  /** The IP addresses of both ends, when it runs over TCP (the page stream uses them). */
  readonly addrs?: { local: string; remote: string };
}
