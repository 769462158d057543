/**
 * Writing all of a buffer to something whose `write` may take only part of
 * it (Deno.FsFile, Deno.Conn, a frame writer's connection).
 *
 * @module
 */

/**
 * Writes all of `bytes` to `writer`, calling its `write` until everything
 * went. A write that takes nothing throws ("a write made no progress after
 * N of M bytes") rather than trying again forever; errors of `write` pass
 * through.
 *
 * @param writer a file, a connection, or anything with the same `write`
 * @param bytes what to write
 */
export async function writeAll(
  writer: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  for (let off = 0; off < bytes.length;) {
    const n = await writer.write(bytes.subarray(off));
    if (n <= 0) throw new Error(`a write made no progress after ${off} of ${bytes.length} bytes`);
    off += n;
  }
}
