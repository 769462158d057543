/** readFdWithin: a bounded wait for input on a raw descriptor (the stdin relay's reader). */
import { join } from "node:path";
import { close, mkfifo, O, open, readFdWithin } from "../../ffi/libc.ts";
import { assertEquals } from "../support/assert.ts";

Deno.test("readFdWithin: nothing in time is null, data is read, end of file is 0", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "fifo");
  mkfifo(path);
  const fd = open(path, O.RDONLY | O.NONBLOCK);
  const w = await Deno.open(path, { write: true });
  try {
    const buf = new Uint8Array(16);
    assertEquals(await readFdWithin(fd, buf, 50), null);
    await w.write(new TextEncoder().encode("hi"));
    assertEquals(await readFdWithin(fd, buf, 2000), 2);
    assertEquals(new TextDecoder().decode(buf.subarray(0, 2)), "hi");
    w.close();
    assertEquals(await readFdWithin(fd, buf, 2000), 0);
  } finally {
    try {
      w.close();
    } catch { /* closed */ }
    close(fd);
    await Deno.remove(dir, { recursive: true });
  }
});
