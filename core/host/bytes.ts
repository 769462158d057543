/**
 * Byte sinks and sources over files and sockets (Deno.FsFile and Deno.Conn
 * both have these read and write shapes): the image is written to and read
 * from them (core/image), frames go through them (core/transport).
 *
 * @module
 */

import { readAhead } from "./ahead.ts";
import { writeAll } from "./write_all.ts";

/** Something bytes can be written to, like Deno.FsFile or Deno.Conn. */
export interface ByteWriter {
  /** Writes some of `p`, returning how many bytes were written. */
  write(p: Uint8Array): Promise<number>;
}

/** Something bytes can be read from, like Deno.FsFile or Deno.Conn. */
export interface ByteReader {
  /** Reads into `p`, returning how many bytes were read, or null at the end. */
  read(p: Uint8Array): Promise<number | null>;
}

/** Receives bytes in order; it must be done with a chunk when its promise settles. */
export type ByteSink = (chunk: Uint8Array) => Promise<void>;

/**
 * A sink (for core/image's ImageWriter, say) that writes every chunk fully to `w`.
 *
 * @param w a file, a connection, or anything with the same `write`
 */
export function byteSink(w: ByteWriter): ByteSink {
  return (chunk) => writeAll(w, chunk);
}

/** Reads are not started into less than this much free buffer space. */
const MIN_READ = 64 * 1024;

/**
 * A source (for core/image's readImage, say) reading `r` until it ends.
 * Each chunk is a fresh region of a buffer that is never reused, so records
 * may keep views of it.
 *
 * @param r a file, a connection, or anything with the same `read`
 * @param bufferSize the size of the buffers read into
 */
export async function* byteSource(
  r: ByteReader,
  bufferSize = 1024 * 1024,
): AsyncGenerator<Uint8Array> {
  let buf = new Uint8Array(0), pos = 0;
  for (;;) {
    if (buf.length - pos < Math.min(MIN_READ, bufferSize)) {
      buf = new Uint8Array(bufferSize);
      pos = 0;
    }
    const n = await r.read(buf.subarray(pos));
    if (n === null) return;
    yield buf.subarray(pos, pos += n);
  }
}

/** Bytes per buffer of {@link pathSource}: most 4 MiB records then lie inside one chunk. */
const FILE_BUFFER = 8 * 1024 * 1024;

/**
 * A source reading the file at `path` (a {@link byteSource}); the file is
 * closed when the source ends or the reader stops. The next chunk is read
 * (on the runtime's I/O threads) while the caller works on the current one.
 *
 * @param path the image file
 * @param bufferSize the size of the buffers read into
 */
export async function* pathSource(
  path: string | URL,
  bufferSize = FILE_BUFFER,
): AsyncGenerator<Uint8Array> {
  using file = await Deno.open(path, { read: true });
  yield* readAhead(byteSource(file, bufferSize));
}
