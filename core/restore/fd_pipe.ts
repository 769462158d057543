/**
 * A pipe or FIFO made again by the restored process: a new pipe (pipe2) or
 * the FIFO's path opened for reading and for writing (fd_paths.ts made it
 * where it was missing), its size set, its unread bytes written back in
 * order (packet by packet when a writer has O_DIRECT), then each of the
 * process's descriptions of it: the two new ends where they fit, another
 * open of the same pipe (through /proc/self/fd, or the FIFO's path) for
 * any other, each given its flags and put at its number.
 *
 * @module
 */
import type { FdEntry } from "../image/schema.ts";
import { Calls, cstr, fdError, FL, NR } from "./fd_calls.ts";

/** Opens `path` in the process with `flags` (non-blocking, close-on-exec added). */
async function openIn(c: Calls, fd: number, path: string, flags: number): Promise<number> {
  return Number(c.must(fd, `opening ${path}`, NR.openat, [
    FL.AT_FDCWD,
    await c.small(cstr(path)),
    flags | FL.O_NONBLOCK | FL.O_CLOEXEC,
    0,
  ]));
}

/** The new read and write ends of the pipe of `first`. */
async function ends(c: Calls, first: FdEntry, packets: boolean): Promise<[number, number]> {
  if (first.kind === "fifo") {
    const r = await openIn(c, first.fd, first.path, FL.O_RDONLY);
    return [r, await openIn(c, first.fd, first.path, FL.O_WRONLY)];
  }
  const at = await c.small(new Uint8Array(8));
  c.must(first.fd, "making its pipe", NR.pipe2, [
    at,
    FL.O_CLOEXEC | FL.O_NONBLOCK | (packets ? FL.O_DIRECT : 0),
  ]);
  const v = new DataView((await c.read(at, 8)).buffer);
  return [v.getInt32(0, true), v.getInt32(4, true)];
}

/** Writes the pipe's contents `data` through its write end `w`. */
async function fill(c: Calls, fd: number, w: number, data: Uint8Array[]): Promise<void> {
  for (const chunk of data) {
    const at = await c.stage(fd, chunk);
    const n = c.must(fd, "writing its unread bytes back", NR.write, [w, at, chunk.length]);
    if (n !== BigInt(chunk.length)) {
      throw fdError(fd, "writing its unread bytes back", `${n} of ${chunk.length} bytes fit`);
    }
  }
}

/**
 * Makes the pipe or FIFO whose descriptions (not copies) are `group`, its
 * contents on one of them, and puts each at its number.
 */
export async function makePipe(c: Calls, group: FdEntry[]): Promise<void> {
  const first = group[0];
  const state = group.find((f) => f.pipe)?.pipe ?? { size: 65536, data: [] };
  const packets = group.some((f) => f.flags & FL.O_DIRECT);
  const [r, w] = await ends(c, first, packets);
  if (first.kind === "fifo" && packets) c.setFl(w, FL.O_NONBLOCK | FL.O_DIRECT);
  const size = Number(c.must(first.fd, "reading its size", NR.fcntl, [w, FL.F_GETPIPE_SZ]));
  if (size !== state.size) {
    c.must(first.fd, `making it ${state.size} bytes large`, NR.fcntl, [
      w,
      FL.F_SETPIPE_SZ,
      state.size,
    ]);
  }
  await fill(c, first.fd, w, state.data);
  // Each description: a new end where one fits, another open of the same pipe otherwise.
  const slots = [r, w];
  const used = [false, false];
  const slotOf: number[] = [];
  for (const f of group) {
    const acc = f.flags & 3;
    const k = acc === FL.O_RDONLY ? 0 : acc === FL.O_WRONLY ? 1 : -1;
    if (k >= 0 && !used[k]) {
      used[k] = true;
      slotOf.push(k);
    } else {
      const path = f.kind === "fifo" ? f.path : `/proc/self/fd/${slots[0]}`;
      slots.push(await openIn(c, f.fd, path, acc));
      slotOf.push(slots.length - 1);
    }
  }
  const placed = new Set<number>();
  group.forEach((f, i) => {
    const s = slotOf[i];
    c.setFl(slots[s], f.flags);
    // The others still to place or close: `place` moves one that sits on this number.
    const others = slots.map((_, j) => j).filter((j) => j !== s && !placed.has(j));
    const live = others.map((j) => slots[j]);
    c.place(slots[s], f.fd, f.flags, live);
    others.forEach((j, n) => slots[j] = live[n]);
    slots[s] = f.fd;
    placed.add(s);
  });
  for (const k of [0, 1]) if (!used[k]) c.close(slots[k]);
}
