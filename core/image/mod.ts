/**
 * The checkpoint image format: a versioned stream of checksummed records
 * (docs/image-format.md). Write with {@link ImageWriter} into a sink, read
 * with {@link readImage} from a source; {@link byteSink} and
 * {@link byteSource} connect both to files and sockets.
 *
 * @module
 */

export { CHECKSUMS, crc32ieee } from "./checksum.ts";
export { crc32c } from "./crc32c.ts";
export { FIX_CORRUPT, FIX_TRUNCATED, ImageError } from "./errors.ts";
export * from "./format.ts";
export {
  type ByteReader,
  type ByteSink,
  byteSink,
  byteSource,
  type ByteWriter,
  pathSource,
} from "../host/bytes.ts";
export { readImage } from "./reader.ts";
export { type ImageSink, ImageWriter } from "./writer.ts";
