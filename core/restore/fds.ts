/**
 * The restored process makes its kernel objects again, itself, with system
 * calls injected at the end of its restore (finish.ts): each object is
 * made at the lowest free number, given its state, and moved to the
 * number the image gives it (dup3, close-on-exec as it was); copies (dup)
 * follow their original; epoll instances come last, once every descriptor
 * they watch is in place, and add each under the number it was added with
 * (the kernel keys them by file and number).
 *
 * In order: eventfd (counter written, semaphore mode), timerfd (clock,
 * interval, time left as a relative time since clocks differ between
 * nodes, unread ticks with TFD_IOC_SET_TICKS), signalfd (mask), memfd
 * (name, contents, size, mode, position, seals last), pipes and FIFOs
 * (size, unread bytes, then each end's flags), socketpairs (buffer sizes,
 * queued messages sent again from the other end, shutdown, options), then
 * copies, then epoll. Everything is made non-blocking while it is filled,
 * so no injected call can wait, and given its own flags after.
 *
 * @module
 */
import type { FdEntry } from "../image/schema.ts";
import { OBJECT_KINDS } from "../image/fds.ts";
import type { Injector } from "../ptrace/inject.ts";
import { Calls, cstr, fdError, FL, NR, u64 } from "./fd_calls.ts";
import { makeSocketpair } from "./fd_socketpair.ts";
import { makePipe } from "./fd_pipe.ts";
import { makeRelayed } from "./fd_relayed.ts";

/** TFD_IOC_SET_TICKS: _IOW('T', 0, u64). */
const TFD_IOC_SET_TICKS = 0x40085400;
const ENOTTY = 25n;

async function makeEventfd(c: Calls, f: FdEntry): Promise<number> {
  const s = f.eventfd!;
  const flags = FL.O_CLOEXEC | (f.flags & FL.O_NONBLOCK) | (s.semaphore ? 1 : 0);
  const fd = Number(c.must(f.fd, "making its eventfd", NR.eventfd2, [0, flags]));
  if (s.count > 0n) {
    const at = await c.small(u64(s.count));
    if (c.must(f.fd, "setting its counter", NR.write, [fd, at, 8]) !== 8n) {
      throw fdError(f.fd, "setting its counter", "a short write");
    }
  }
  return fd;
}

async function makeTimerfd(c: Calls, f: FdEntry): Promise<number> {
  const s = f.timerfd!;
  const fd = Number(c.must(f.fd, `making its timerfd on clock ${s.clock}`, NR.timerfd_create, [
    s.clock,
    FL.O_CLOEXEC | (f.flags & FL.O_NONBLOCK),
  ]));
  let value = s.value.sec * 1_000_000_000n + BigInt(s.value.nsec);
  let flags = 0;
  if ((s.settimeFlags & 2) && value > 0n) {
    // Cancel-on-set needs an absolute time: now on this node's clock, plus what was left.
    const at = await c.small(new Uint8Array(16));
    c.must(f.fd, "reading its clock", NR.clock_gettime, [s.clock === 8 ? 0 : s.clock, at]);
    const now = new DataView((await c.read(at, 16)).buffer);
    value += now.getBigInt64(0, true) * 1_000_000_000n + now.getBigInt64(8, true);
  }
  if (s.settimeFlags & 2) flags = 3; // TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET
  const spec = u64(
    s.interval.sec,
    BigInt(s.interval.nsec),
    value / 1_000_000_000n,
    value % 1_000_000_000n,
  );
  c.must(f.fd, "setting its timer", NR.timerfd_settime, [fd, flags, await c.small(spec), 0]);
  if (s.ticks > 0n) {
    const r = c.try(NR.ioctl, [fd, TFD_IOC_SET_TICKS, await c.small(u64(s.ticks))]);
    if (r === -ENOTTY) {
      throw fdError(
        f.fd,
        `giving back its ${s.ticks} unread expirations`,
        "this kernel cannot (TFD_IOC_SET_TICKS needs CONFIG_CHECKPOINT_RESTORE)",
        "restore on a kernel built with CONFIG_CHECKPOINT_RESTORE",
      );
    }
    if (r < 0n) throw fdError(f.fd, "giving back its unread expirations", `errno ${-r}`);
  }
  return fd;
}

async function makeSignalfd(c: Calls, f: FdEntry): Promise<number> {
  const at = await c.small(u64(f.signalfd!.mask));
  return Number(c.must(f.fd, "making its signalfd", NR.signalfd4, [
    -1,
    at,
    8,
    FL.O_CLOEXEC | (f.flags & FL.O_NONBLOCK),
  ]));
}

async function makeMemfd(c: Calls, f: FdEntry): Promise<number> {
  const s = f.memfd!;
  const MFD_CLOEXEC = 1, MFD_ALLOW_SEALING = 2;
  let fd = Number(c.must(f.fd, "making its memfd", NR.memfd_create, [
    await c.small(cstr(s.name)),
    MFD_CLOEXEC | MFD_ALLOW_SEALING,
  ]));
  const CHUNK = 1 << 20;
  for (let off = 0; off < s.data.length; off += CHUNK) {
    const part = s.data.subarray(off, Math.min(s.data.length, off + CHUNK));
    const at = await c.stage(f.fd, part);
    if (
      c.must(f.fd, "writing its contents", NR.pwrite64, [fd, at, part.length, off]) !==
        BigInt(part.length)
    ) {
      throw fdError(f.fd, "writing its contents", "a short write");
    }
  }
  c.must(f.fd, "setting its size", NR.ftruncate, [fd, s.size]);
  c.must(f.fd, "setting its mode", NR.fchmod, [fd, s.mode]);
  // Sealing needs a writable description: before any other open.
  if (s.seals) c.must(f.fd, "sealing it", NR.fcntl, [fd, FL.F_ADD_SEALS, s.seals]);
  if ((f.flags & 3) !== FL.O_RDWR) {
    // Opened again read-only (or write-only) through /proc: the same file, another way.
    const path = await c.small(cstr(`/proc/self/fd/${fd}`));
    const again = Number(c.must(f.fd, "opening it again", NR.openat, [
      FL.AT_FDCWD,
      path,
      (f.flags & 3) | FL.O_CLOEXEC,
      0,
    ]));
    c.close(fd);
    fd = again;
  }
  if (f.pos > 0n) c.must(f.fd, "setting its position", NR.lseek, [fd, f.pos, 0]);
  return fd;
}

function makeEpoll(c: Calls, f: FdEntry): Promise<number> {
  return Promise.resolve(
    Number(c.must(f.fd, "making its epoll instance", NR.epoll_create1, [FL.O_CLOEXEC])),
  );
}

/**
 * Adds what epoll instance `f` (at its number) watches. A standard stream
 * may have become something that cannot be watched (/dev/null for the
 * stdin of a migrated process): it is left out, as the kernel would refuse
 * it to the process too; anything else that cannot be watched fails.
 */
async function watch(c: Calls, f: FdEntry, fds: FdEntry[]): Promise<void> {
  const EPOLL_CTL_ADD = 1, EPERM = -1n;
  for (const it of f.epoll!.items) {
    const ev = new Uint8Array(12); // struct epoll_event is packed on x86-64
    const v = new DataView(ev.buffer);
    v.setUint32(0, it.events, true);
    v.setBigUint64(4, it.data, true);
    const r = c.try(NR.epoll_ctl, [f.fd, EPOLL_CTL_ADD, it.fd, await c.small(ev)]);
    const target = fds.find((x) => x.fd === it.fd);
    const stream = it.fd <= 2 && (target?.kind === "stdio" || target?.kind === "device");
    if (r < 0n && !(r === EPERM && stream)) {
      throw fdError(f.fd, `watching descriptor ${it.fd}`, `errno ${-r}`);
    }
  }
}

const MAKERS: Record<string, (c: Calls, f: FdEntry) => Promise<number>> = {
  eventfd: makeEventfd,
  timerfd: makeTimerfd,
  signalfd: makeSignalfd,
  memfd: makeMemfd,
  epoll: makeEpoll,
};

/** Makes one object of a single descriptor and puts it at its number. */
async function makeOne(c: Calls, f: FdEntry): Promise<void> {
  const fd = await MAKERS[f.kind](c, f);
  c.setFl(fd, f.flags);
  c.place(fd, f.fd, f.flags);
}

/** The copies (dup) of descriptors among `fds` whose original is in `done`. */
function copies(c: Calls, fds: FdEntry[], done: (f: FdEntry) => boolean): void {
  for (const f of fds) {
    const o = f.dupOf === undefined ? undefined : fds.find((x) => x.fd === f.dupOf);
    if (o && done(o)) {
      c.must(f.fd, `copying descriptor ${o.fd} to it`, NR.dup3, [
        o.fd,
        f.fd,
        f.flags & FL.O_CLOEXEC,
      ]);
    }
  }
}

/**
 * Throws unless every copy's original and every pipe's and socketpair's
 * descriptions are among `objs`: a caller that gave descriptors other
 * files since the image was checked (a migration's standard streams) must
 * not leave an object half made.
 */
function checkWhole(objs: FdEntry[]): void {
  for (const f of objs) {
    const o = f.dupOf === undefined ? f : objs.find((x) => x.fd === f.dupOf && x.kind === f.kind);
    const group = objs.filter((x) => x.object === f.object && x.dupOf === undefined);
    const whole = f.object === undefined || f.dupOf !== undefined ||
      (f.kind === "unix" ? group.length === 2 : group.some((x) => x.pipe));
    if (!o || !whole) {
      throw fdError(
        f.fd,
        `${f.kind} is not whole here`,
        `descriptor ${f.dupOf ?? "of the same object"} was given another file`,
        "a migration gives descriptors 0-2 the source's standard streams: an object there cannot move",
      );
    }
  }
}

/**
 * Makes the kernel objects among `fds` (the image's descriptors) again in
 * the stopped process `pid`, through `inj`, each at its number; and its
 * relayed descriptors (fd_relayed.ts), the agent's ends of which go into
 * `relays` (by the process's descriptor number; the caller owns them, and
 * closes them also when this throws). The
 * numbers must be free (after the stub's own were closed); files opened by
 * path are in place already. Throws a PpmError naming the descriptor that
 * failed (the caller ends the process).
 */
export async function restoreFds(
  inj: Injector,
  pid: number,
  fds: FdEntry[],
  relays?: Map<number, number>,
): Promise<void> {
  const objs = fds.filter((f) => OBJECT_KINDS.includes(f.kind as never));
  const relayed = fds.filter((f) => f.kind === "relayed");
  if (!objs.length && !relayed.length) return;
  if (relayed.length && !relays) {
    throw fdError(
      relayed[0].fd,
      "relaying it",
      "a descriptor whose other end stayed on another node is relayed by a migration only",
    );
  }
  checkWhole(objs);
  const c = new Calls(inj, pid);
  try {
    // Before the epoll instances, which may watch them.
    for (const f of relayed) relays!.set(f.fd, await makeRelayed(c, f));
    const made = new Set<number>();
    for (const f of objs) {
      if (f.dupOf !== undefined || f.kind === "epoll" || made.has(f.fd)) continue;
      if (f.kind === "pipe" || f.kind === "fifo") {
        const group = objs.filter((x) => x.object === f.object && x.dupOf === undefined);
        await makePipe(c, group);
        group.forEach((x) => made.add(x.fd));
      } else if (f.kind === "unix") {
        const group = objs.filter((x) => x.object === f.object && x.dupOf === undefined);
        await makeSocketpair(c, group);
        group.forEach((x) => made.add(x.fd));
      } else {
        await makeOne(c, f);
        made.add(f.fd);
      }
    }
    copies(c, objs, (o) => o.kind !== "epoll");
    const epolls = objs.filter((f) => f.kind === "epoll" && f.dupOf === undefined);
    for (const f of epolls) await makeOne(c, f);
    copies(c, objs, (o) => o.kind === "epoll");
    for (const f of epolls) await watch(c, f, fds);
  } finally {
    c.release();
  }
}
