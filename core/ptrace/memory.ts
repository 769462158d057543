/**
 * A traced process's memory, read through /proc/PID/mem (which ptrace
 * access allows for a stopped tracee).
 *
 * @module
 */

/**
 * Reads up to `len` bytes of process `pid`'s memory at `addr`; fewer when
 * the read ends early (an unmapped page).
 */
export async function readMem(pid: number, addr: bigint, len: number): Promise<Uint8Array> {
  const f = await Deno.open(`/proc/${pid}/mem`, { read: true });
  try {
    await f.seek(addr, Deno.SeekMode.Start);
    const buf = new Uint8Array(len);
    let off = 0;
    while (off < len) {
      const n = await f.read(buf.subarray(off));
      if (!n) break;
      off += n;
    }
    return buf.subarray(0, off);
  } finally {
    f.close();
  }
}
