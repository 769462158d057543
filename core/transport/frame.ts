/**
 * Framing over a byte stream (a TCP connection). A frame is
 *
 *     u8 kind | u32 LE payload length | payload | [16-byte tag, once encrypted]
 *
 * Kinds: CONTROL (a msgpack message), DATA (u16 LE stream id, then a chunk of
 * that byte stream), END_DATA (u16 LE stream id: the stream ends) and ERROR
 * (msgpack `{code, message}`: the sender gives up on the connection). After
 * the handshake the payload is encrypted and the tag added (cipher.ts); before
 * it, frames are limited to {@link PRE_AUTH_MAX_PAYLOAD} bytes, checked before
 * anything is allocated. Every defect of the input is a {@link PpmError}
 * naming the frame and the peer.
 *
 * @module
 */

import { EXIT, PpmError } from "../errors.ts";
import { writeAll } from "../host/write_all.ts";
import type { ByteReader, ByteWriter } from "../host/bytes.ts";
import { decodeMessage, encodeMessage, MAX_CONTROL_PAYLOAD } from "./codec.ts";
import { type FrameCipher, TAG_BYTES } from "./cipher.ts";

export { MAX_CONTROL_PAYLOAD } from "./codec.ts";

/** Frame kinds on the wire. */
export const KIND = {
  /** A control message: msgpack. */
  CONTROL: 1,
  /** A chunk of a byte stream: u16 LE stream id, then the bytes. */
  DATA: 2,
  /** The end of a byte stream: u16 LE stream id. */
  END_DATA: 3,
  /** The sender gives up: msgpack `{code, message}`. */
  ERROR: 4,
} as const;

/** One of the {@link KIND} values. */
export type FrameKind = typeof KIND[keyof typeof KIND];

/** Bytes of the frame header: kind and length. */
export const HEADER_BYTES = 5;

/** Bytes of the stream id at the start of DATA and END_DATA payloads. */
export const STREAM_ID_BYTES = 2;

/** The largest stream id. */
export const MAX_STREAM_ID = 0xffff;

/** Most stream bytes in one DATA frame (4 MiB). */
export const MAX_DATA_CHUNK = 4 * 1024 * 1024;

/** Largest DATA payload: the stream id and a chunk. */
export const MAX_DATA_PAYLOAD = STREAM_ID_BYTES + MAX_DATA_CHUNK;

/** Largest ERROR payload. */
export const MAX_ERROR_PAYLOAD = 64 * 1024;

/**
 * Largest payload of a frame before the connection is authenticated (the
 * handshake's frames are a few hundred bytes): a client without the secret
 * cannot make a node allocate more than this per connection.
 */
export const PRE_AUTH_MAX_PAYLOAD = 4096;

/** Size of a reader's buffer before authentication: a whole clear frame fits. */
const PRE_AUTH_BUFFER = 8192;

/** Payload limits by kind. */
const MAX_PAYLOAD: Record<FrameKind, number> = {
  [KIND.CONTROL]: MAX_CONTROL_PAYLOAD,
  [KIND.DATA]: MAX_DATA_PAYLOAD,
  [KIND.END_DATA]: STREAM_ID_BYTES,
  [KIND.ERROR]: MAX_ERROR_PAYLOAD,
};

/** A decoded frame. */
export type Frame =
  | { kind: typeof KIND.CONTROL; value: unknown; size: number }
  | { kind: typeof KIND.DATA; stream: number; data: Uint8Array }
  | { kind: typeof KIND.END_DATA; stream: number }
  | { kind: typeof KIND.ERROR; code: string; message: string };

/** "CONTROL", "DATA", ...: the name of a kind, for messages. */
export function kindName(kind: number): string {
  const e = Object.entries(KIND).find(([, v]) => v === kind);
  return e ? e[0] : `kind ${kind}`;
}

/** The fix for malformed input. */
const FIX_PROTOCOL =
  "the peer does not speak the ppm transport (wrong port?), runs another ppm version, " +
  "or the connection is being tampered with";

/** Throws a usage error unless `stream` is a valid stream id. */
export function checkStreamId(stream: number): void {
  if (!Number.isInteger(stream) || stream < 0 || stream > MAX_STREAM_ID) {
    throw new PpmError(
      "transport: bad stream id",
      `${stream} is not an integer from 0 to ${MAX_STREAM_ID}`,
      "",
      EXIT.USAGE,
    );
  }
}

/** Payloads up to this size are read through the shared read buffer and copied out. */
const SMALL_PAYLOAD = 64 * 1024;

/** Options of {@link FrameReader}. */
export interface FrameReaderOptions {
  /** Who sends, for messages: "node-b (10.0.0.2:7790)". */
  peer?: string;
  /** Size of the read buffer once encrypted (default 256 KiB, at least 128 KiB). */
  readBufferSize?: number;
  /**
   * Largest payload of a frame in clear, i.e. before {@link FrameReader.encrypt}
   * (default {@link PRE_AUTH_MAX_PAYLOAD}, 4 KiB). Only tests of the framing
   * itself raise it.
   */
  maxClearPayload?: number;
}

/**
 * Reads frames from a byte stream with chunks of any sizes. Until
 * {@link encrypt}, frames are in clear and at most `maxClearPayload` bytes,
 * read through a small buffer. Then small frames go through one reused read
 * buffer and large ones through one reused ciphertext buffer, and each payload
 * is decrypted into a fresh buffer of its own that is never reused, so every
 * payload (and every DATA chunk) may be kept as it is. After an error every
 * call throws that error again.
 */
export class FrameReader {
  #r: ByteReader;
  #buf: Uint8Array;
  #bufSize: number;
  #maxClear: number;
  #scratch: Uint8Array | undefined;
  #start = 0;
  #end = 0;
  #eof = false;
  #index = 0;
  #bytes = 0;
  #cipher: FrameCipher | undefined;
  #failure: PpmError | undefined;
  /** Who sends, for messages. */
  peer: string;

  /**
   * @param r the connection, or anything with the same `read`
   * @param opts the peer's name for messages, buffer size and the clear-frame limit
   */
  constructor(r: ByteReader, opts: FrameReaderOptions = {}) {
    this.#r = r;
    this.peer = opts.peer ?? "peer";
    this.#bufSize = Math.max(opts.readBufferSize ?? 256 * 1024, 128 * 1024);
    this.#maxClear = opts.maxClearPayload ?? PRE_AUTH_MAX_PAYLOAD;
    this.#buf = new Uint8Array(PRE_AUTH_BUFFER);
  }

  /** Frames read so far (the index of the next frame). */
  get framesRead(): number {
    return this.#index;
  }

  /** Bytes of complete frames read so far. */
  get bytesRead(): number {
    return this.#bytes;
  }

  /**
   * Every later frame is encrypted: `cipher` decrypts it and checks its tag.
   * Call it between frames (not while a {@link next} is pending). It also
   * gives the reader its full-size read buffer.
   */
  encrypt(cipher: FrameCipher): void {
    this.#cipher = cipher;
    if (this.#buf.length < this.#bufSize) {
      const buf = new Uint8Array(this.#bufSize);
      buf.set(this.#buf.subarray(this.#start, this.#end));
      this.#end -= this.#start;
      this.#start = 0;
      this.#buf = buf;
    }
  }

  /**
   * The next frame, or null when the peer closed the connection between two
   * frames.
   *
   * @throws PpmError for a connection that ends inside a frame, an unknown
   *   kind, a length over the kind's limit, a malformed payload, a tag that
   *   does not match, or a failed read
   */
  async next(): Promise<Frame | null> {
    if (this.#failure) throw this.#failure;
    try {
      return await this.#next();
    } catch (e) {
      this.#failure = e instanceof PpmError
        ? e
        : this.#error(`unexpected failure: ${(e as Error)?.message ?? e}`);
      throw this.#failure;
    }
  }

  /** The frames until the peer closes the connection. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Frame> {
    for (let f; (f = await this.next());) yield f;
  }

  #error(why: string, fix = FIX_PROTOCOL): PpmError {
    return new PpmError(`transport: frame ${this.#index} from ${this.peer}`, why, fix);
  }

  #truncated(got: number, of: number, part: string): PpmError {
    return this.#error(
      `the connection ended after ${got} of ${of} ${part} bytes`,
      "the peer stopped or the network failed; retry",
    );
  }

  async #read(p: Uint8Array): Promise<number | null> {
    let n: number | null;
    try {
      n = await this.#r.read(p);
    } catch (e) {
      throw this.#error(`reading failed: ${(e as Error)?.message ?? e}`, "retry");
    }
    if (n === 0) throw this.#error("a read made no progress", "");
    return n;
  }

  /** Buffers at least `min` bytes (at most the buffer size); fewer only at the end. */
  async #fill(min: number): Promise<number> {
    while (this.#end - this.#start < min && !this.#eof) {
      if (this.#buf.length - this.#start < min) {
        this.#buf.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      }
      const n = await this.#read(this.#buf.subarray(this.#end));
      if (n === null) this.#eof = true;
      else this.#end += n;
    }
    return this.#end - this.#start;
  }

  async #next(): Promise<Frame | null> {
    const have = await this.#fill(HEADER_BYTES);
    if (have === 0) return null;
    if (have < HEADER_BYTES) throw this.#truncated(have, HEADER_BYTES, "header");
    const b = this.#buf, s = this.#start;
    const kind = b[s] as FrameKind;
    const length = (b[s + 1] | b[s + 2] << 8 | b[s + 3] << 16 | b[s + 4] << 24) >>> 0;
    const max = MAX_PAYLOAD[kind];
    if (max === undefined) throw this.#error(`unknown frame kind ${kind}`);
    if (length > max) {
      throw this.#error(`length ${length} exceeds the limit of ${max} for ${kindName(kind)}`);
    }
    if (!this.#cipher && length > this.#maxClear) {
      throw this.#error(
        `length ${length} exceeds the limit of ${this.#maxClear} for a frame before authentication`,
      );
    }
    if ((kind === KIND.DATA || kind === KIND.END_DATA) && length < STREAM_ID_BYTES) {
      throw this.#error(`a ${kindName(kind)} frame of ${length} bytes has no stream id`);
    }
    this.#start += HEADER_BYTES;
    const payload = this.#cipher
      ? await this.#sealed(kind, length, this.#cipher)
      : await this.#clear(kind, length);
    const frame = this.#decode(kind, payload);
    this.#index++;
    this.#bytes += HEADER_BYTES + length + (this.#cipher ? TAG_BYTES : 0);
    return frame;
  }

  /** Whether `total` bytes go through the read buffer rather than a buffer of their own. */
  #small(total: number): boolean {
    return total <= Math.min(SMALL_PAYLOAD, this.#buf.length);
  }

  /** Reads a clear payload into a buffer of its own. */
  async #clear(kind: FrameKind, length: number): Promise<Uint8Array> {
    if (this.#small(length)) {
      const got = await this.#fill(length);
      if (got < length) throw this.#truncated(got, length, `${kindName(kind)} payload`);
      const payload = this.#buf.slice(this.#start, this.#start + length);
      this.#start += length;
      return payload;
    }
    const payload = new Uint8Array(length);
    await this.#readInto(payload, kind, length);
    return payload;
  }

  /**
   * Reads an encrypted payload and its tag (through the read buffer, or the
   * reused ciphertext buffer) and decrypts it into a fresh buffer.
   */
  async #sealed(kind: FrameKind, length: number, cipher: FrameCipher): Promise<Uint8Array> {
    const total = length + TAG_BYTES;
    let sealed: Uint8Array;
    if (this.#small(total)) {
      const got = await this.#fill(total);
      if (got < length) throw this.#truncated(got, length, `${kindName(kind)} payload`);
      if (got < total) throw this.#truncated(got - length, TAG_BYTES, "tag");
      sealed = this.#buf.subarray(this.#start, this.#start + total);
      this.#start += total;
    } else {
      sealed = this.#scratchFor(total);
      await this.#readInto(sealed, kind, length);
    }
    const plain = cipher.open(kind, sealed.subarray(0, length), sealed.subarray(length));
    if (!plain) {
      throw this.#error(
        "its tag does not match: it was altered, reordered or replayed in transit",
        "check the network path for tampering; the nodes must share one cluster secret",
      );
    }
    return plain;
  }

  /** A buffer for `total` bytes of ciphertext: the reused one up to a DATA frame's size. */
  #scratchFor(total: number): Uint8Array {
    const reusable = MAX_DATA_PAYLOAD + TAG_BYTES;
    if (total > reusable) return new Uint8Array(total); // a CONTROL frame over 4 MiB: rare
    this.#scratch ??= new Uint8Array(reusable);
    return this.#scratch.subarray(0, total);
  }

  /**
   * Fills `into` with what is buffered, then straight from the connection;
   * bytes past `length` are the tag.
   */
  async #readInto(into: Uint8Array, kind: FrameKind, length: number): Promise<void> {
    let got = Math.min(this.#end - this.#start, into.length);
    into.set(this.#buf.subarray(this.#start, this.#start + got));
    this.#start += got;
    while (got < into.length) {
      const n = this.#eof ? null : await this.#read(into.subarray(got));
      if (n === null) {
        throw got < length
          ? this.#truncated(got, length, `${kindName(kind)} payload`)
          : this.#truncated(got - length, TAG_BYTES, "tag");
      }
      got += n;
    }
  }

  #decode(kind: FrameKind, payload: Uint8Array): Frame {
    switch (kind) {
      case KIND.DATA:
      case KIND.END_DATA: {
        const stream = payload[0] | payload[1] << 8;
        return kind === KIND.DATA
          ? { kind, stream, data: payload.subarray(STREAM_ID_BYTES) }
          : { kind, stream };
      }
      case KIND.CONTROL:
        return { kind, value: this.#msgpack(kind, payload), size: payload.length };
      case KIND.ERROR: {
        const v = this.#msgpack(kind, payload) as Record<string, unknown> | null;
        if (typeof v?.code !== "string" || typeof v?.message !== "string") {
          throw this.#error("the ERROR payload is not a map of code and message strings");
        }
        return { kind, code: v.code, message: v.message };
      }
    }
  }

  #msgpack(kind: FrameKind, payload: Uint8Array): unknown {
    try {
      return decodeMessage(payload);
    } catch (e) {
      throw this.#error(
        `the ${kindName(kind)} payload is not valid msgpack: ${(e as Error)?.message ?? e}`,
      );
    }
  }
}

/** Options of {@link FrameWriter}. */
export interface FrameWriterOptions {
  /** Who receives, for messages. */
  peer?: string;
}

/**
 * Writes frames to a byte stream. Calls may overlap: each frame is written
 * whole, in call order, so concurrent writers never interleave bytes. A call
 * refused before writing anything (a bad argument, a message that cannot be
 * encoded) leaves the writer usable; once a write fails, every later call
 * fails with that error.
 */
export class FrameWriter {
  #w: ByteWriter;
  #tail: Promise<void> = Promise.resolve();
  #failure: PpmError | undefined;
  #cipher: FrameCipher | undefined;
  #willEncrypt = false;
  #index = 0;
  #bytes = 0;
  /** Who receives, for messages. */
  peer: string;

  /**
   * @param w the connection, or anything with the same `write`
   * @param opts the peer's name for messages
   */
  constructor(w: ByteWriter, opts: FrameWriterOptions = {}) {
    this.#w = w;
    this.peer = opts.peer ?? "peer";
  }

  /** Frames written so far. */
  get framesWritten(): number {
    return this.#index;
  }

  /** Bytes of frames written so far. */
  get bytesWritten(): number {
    return this.#bytes;
  }

  /** The error that broke the writer, if one did. */
  get failure(): PpmError | undefined {
    return this.#failure;
  }

  /** Settles when every frame queued so far is written (or the writer failed). */
  flush(): Promise<void> {
    return this.#tail;
  }

  /** Frames queued after this call are encrypted by `cipher` (and end with its tag). */
  encrypt(cipher: FrameCipher): Promise<void> {
    this.#willEncrypt = true;
    return this.#run(() => {
      this.#cipher = cipher;
      return Promise.resolve();
    });
  }

  /**
   * Writes a CONTROL frame.
   *
   * @throws PpmError for a value msgpack cannot hold or one over 16 MiB encoded
   */
  control(value: unknown): Promise<void> {
    let payload: Uint8Array;
    try {
      payload = encodeMessage(value);
    } catch (e) {
      return Promise.reject(
        new PpmError(
          `transport: cannot send a message to ${this.peer}`,
          `it cannot be encoded: ${(e as Error)?.message ?? e}`,
          "",
          EXIT.USAGE,
        ),
      );
    }
    if (payload.length > MAX_CONTROL_PAYLOAD) {
      return Promise.reject(
        new PpmError(
          `transport: cannot send a message to ${this.peer}`,
          `it takes ${payload.length} bytes, more than the limit of ${MAX_CONTROL_PAYLOAD}`,
          "send large data as a byte stream",
          EXIT.USAGE,
        ),
      );
    }
    return this.#run(() => this.#frame(KIND.CONTROL, new Uint8Array(0), payload));
  }

  /**
   * Writes `data` to byte stream `stream` as DATA frames of at most 4 MiB.
   * `data` is not copied: it must stay unchanged until the promise settles.
   * Nothing is written for empty data.
   */
  data(stream: number, data: Uint8Array): Promise<void> {
    try {
      checkStreamId(stream);
    } catch (e) {
      return Promise.reject(e);
    }
    const sid = streamId(stream);
    const parts: Promise<void>[] = [];
    for (let off = 0; off < data.length; off += MAX_DATA_CHUNK) {
      const chunk = data.subarray(off, off + MAX_DATA_CHUNK);
      parts.push(this.#run(() => this.#frame(KIND.DATA, sid, chunk)));
    }
    return Promise.all(parts).then(() => {});
  }

  /** Writes END_DATA for `stream`. */
  endData(stream: number): Promise<void> {
    try {
      checkStreamId(stream);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#run(() => this.#frame(KIND.END_DATA, streamId(stream), new Uint8Array(0)));
  }

  /**
   * Writes an ERROR frame; `message` is cut to fit (to 4000 characters, or
   * 1000 in clear so that it stays under the limit before authentication).
   */
  error(code: string, message: string): Promise<void> {
    const room = this.#willEncrypt ? 4000 : 1000;
    const payload = encodeMessage({ code: code.slice(0, 100), message: message.slice(0, room) });
    return this.#run(() => this.#frame(KIND.ERROR, new Uint8Array(0), payload));
  }

  /** Runs `op` after the previous calls, unless the writer failed. */
  #run(op: () => Promise<void>): Promise<void> {
    const p = this.#tail.then(() => {
      if (this.#failure) throw this.#failure;
      return op();
    });
    this.#tail = p.then(() => {}, () => {});
    return p;
  }

  /** Writes one frame whose payload is `head` then `body` (encrypted, once encrypting). */
  async #frame(kind: FrameKind, head: Uint8Array, body: Uint8Array): Promise<void> {
    const length = head.length + body.length;
    let tag: Uint8Array = NO_TAG;
    if (this.#cipher) ({ parts: [head, body], tag } = this.#cipher.seal(kind, head, body));
    const total = HEADER_BYTES + length + tag.length;
    if (length <= SMALL_PAYLOAD) {
      const buf = new Uint8Array(total);
      fillHeader(buf, kind, length);
      buf.set(head, HEADER_BYTES);
      buf.set(body, HEADER_BYTES + head.length);
      buf.set(tag, HEADER_BYTES + length);
      await this.#write(buf);
    } else {
      const h = new Uint8Array(HEADER_BYTES + head.length);
      fillHeader(h, kind, length);
      h.set(head, HEADER_BYTES);
      await this.#write(h);
      await this.#write(body);
      if (tag.length) await this.#write(tag);
    }
    this.#index++;
    this.#bytes += total;
  }

  async #write(p: Uint8Array): Promise<void> {
    try {
      await writeAll(this.#w, p);
    } catch (e) {
      this.#failure = new PpmError(
        `transport: frame ${this.#index} to ${this.peer}`,
        `writing failed: ${(e as Error)?.message ?? e}`,
        "the peer closed the connection or the network failed; retry",
      );
      throw this.#failure;
    }
  }
}

const NO_TAG = new Uint8Array(0);

/** The u16 LE stream id prefix. */
function streamId(stream: number): Uint8Array {
  return new Uint8Array([stream & 0xff, stream >>> 8]);
}

/** Fills kind and length at the start of `buf`. */
function fillHeader(buf: Uint8Array, kind: number, length: number): void {
  buf[0] = kind;
  new DataView(buf.buffer, buf.byteOffset).setUint32(1, length, true);
}
