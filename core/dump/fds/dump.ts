/**
 * The state of a frozen process's kernel objects (found by survey.ts), as
 * FILES entries: each read from /proc/PID/fdinfo and from ppm's copy of the
 * descriptor (pidfd_getfd), so that the process, should it run on here,
 * finds everything as it left it: eventfd counter and mode, timerfd clock,
 * time left, interval and unread ticks, signalfd mask, epoll watch list,
 * a pipe's unread bytes (tee), a socketpair's queued messages (MSG_PEEK),
 * a memfd's name, contents and seals, a /dev/shm file's contents.
 *
 * @module
 */
import { close } from "../../../ffi/libc.ts";
import { F, fcntl, timerfdGettime } from "../../../ffi/fds.ts";
import type { FdEntry, TimeState } from "../../image/fds.ts";
import { copyFds } from "../sockets.ts";
import {
  parseEpollInfo,
  parseEventfdInfo,
  parseSignalfdInfo,
  parseTimerfdInfo,
} from "../fdinfo.ts";
import { fileContents } from "./content.ts";
import { probeSemaphore } from "./eventfd.ts";
import { pipeContents, pipeFill } from "./pipe.ts";
import { describeKind, type ObjectFd } from "./survey.ts";
import { peekQueue, type Sender, unixOptions } from "./unix.ts";

/** Most bytes of contents (pipes, queues, memfd, /dev/shm) one image carries. */
export const MAX_CONTENT = 12 << 20;

const O_DIRECT = 0o40000;

/** What {@link dumpObjects} read. */
export interface DumpedObjects {
  /** The FILES entries, by descriptor number. */
  entries: FdEntry[];
  /** Why some cannot move after all (found only by reading them). */
  reasons: string[];
}

const time = (ns: bigint): TimeState => ({
  sec: ns / 1_000_000_000n,
  nsec: Number(ns % 1_000_000_000n),
});

/** Reads the state of every object of `objs` of the frozen process `pid` (whose sender identity is `sender`). */
export function dumpObjects(pid: number, objs: ObjectFd[], sender: Sender): DumpedObjects {
  const entries: FdEntry[] = [];
  const reasons: string[] = [];
  const own = objs.filter((o) => o.dupOf === undefined);
  const copies = copyFds(pid, own.map((o) => o.fd));
  let budget = MAX_CONTENT;
  const spend = (o: ObjectFd, bytes: number): boolean => {
    if (bytes <= budget) {
      budget -= bytes;
      return true;
    }
    reasons.push(
      `fd ${o.fd}: ${describeKind(o.kind)} (${o.target}) holds ${bytes} bytes; ` +
        `an image carries at most ${MAX_CONTENT >> 20} MiB of descriptor contents`,
    );
    return false;
  };
  try {
    for (const o of objs) {
      const e: FdEntry = { fd: o.fd, kind: o.kind, path: o.target, flags: o.flags, pos: 0n };
      if (o.dupOf !== undefined) {
        entries.push({ ...e, dupOf: o.dupOf });
        continue;
      }
      const copy = copies.get(o.fd)!;
      const info = () => Deno.readTextFileSync(`/proc/${pid}/fdinfo/${o.fd}`);
      const why = (r: string) => reasons.push(`fd ${o.fd}: ${describeKind(o.kind)}: ${r}`);
      if (o.object !== undefined) e.object = o.object;
      switch (o.kind) {
        case "eventfd": {
          const st = parseEventfdInfo(info());
          if (!st) {
            why("its counter cannot be read");
            break;
          }
          const semaphore = st.semaphore ?? probeSemaphore(copy, st.count);
          const after = parseEventfdInfo(info());
          if (after?.count !== st.count) why("its counter changed while it was read");
          e.eventfd = { count: st.count, semaphore };
          break;
        }
        case "timerfd": {
          // Counts a periodic timer's missed expirations into its ticks first (see timerfdGettime).
          const set = timerfdGettime(copy);
          const st = parseTimerfdInfo(info());
          if (!st) {
            why("its state cannot be read");
            break;
          }
          e.timerfd = {
            clock: st.clock,
            ticks: st.ticks,
            settimeFlags: st.settimeFlags,
            value: time(set.valueNs),
            interval: time(set.intervalNs),
          };
          break;
        }
        case "signalfd": {
          const mask = parseSignalfdInfo(info());
          if (mask === undefined) why("its mask cannot be read");
          else e.signalfd = { mask };
          break;
        }
        case "epoll": {
          const items = parseEpollInfo(info());
          if (!items) why("its watched descriptors cannot be read");
          else e.epoll = { items: items.map(({ fd, events, data }) => ({ fd, events, data })) };
          break;
        }
        case "pipe":
        case "fifo": {
          if (o.kind === "fifo" && o.id) e.id = o.id;
          // The contents go on the first end that can read them.
          if (
            (o.flags & 3) === 1 ||
            objs.some((x) =>
              x.object === o.object && x.fd < o.fd && x.dupOf === undefined && (x.flags & 3) !== 1
            )
          ) break;
          const packets = objs.some((x) => x.object === o.object && (x.flags & O_DIRECT));
          if (!spend(o, pipeFill(copy).queued)) break;
          e.pipe = pipeContents(copy, packets);
          break;
        }
        case "unix": {
          const d = o.diag!;
          if (!spend(o, d.rqueue)) break;
          const q = peekQueue(copy, d.type, sender, (d.shutdown & 1) !== 0);
          if ("reason" in q) {
            why(q.reason);
            break;
          }
          const bytes = q.queue.reduce((a, m) => a + m.length, 0);
          if (bytes > d.rqueue && !spend(o, bytes - d.rqueue)) break;
          e.unix = {
            type: d.type,
            end: d.ino < d.peer ? 0 : 1,
            shutdown: d.shutdown & 3,
            queue: q.queue,
            uncredited: q.uncredited,
            options: unixOptions(copy),
          };
          break;
        }
        case "memfd":
        case "shm": {
          const st = Deno.statSync(`/proc/${pid}/fd/${o.fd}`);
          e.pos = o.pos;
          if (o.id) e.id = o.id;
          if (
            o.kind === "shm" &&
            objs.some((x) =>
              x.kind === "shm" && x.fd < o.fd && x.id?.ino === o.id?.ino && x.id?.dev === o.id?.dev
            )
          ) {
            break; // the contents went with the first descriptor of this file
          }
          let seals = 0;
          try {
            seals = fcntl(copy, F.GET_SEALS);
          } catch {
            if (o.kind === "memfd") {
              why("it is not a memfd (F_GET_SEALS fails)");
              break;
            }
          }
          if (!spend(o, st.size)) break;
          const data = fileContents(copy, st.size);
          if (o.kind === "shm") e.shm = { size: st.size, data };
          else {
            e.memfd = {
              name: o.target.slice("/memfd:".length, -" (deleted)".length),
              size: st.size,
              data,
              seals,
              mode: (st.mode ?? 0) & 0o7777,
            };
          }
          break;
        }
      }
      entries.push(e);
    }
  } finally {
    for (const c of copies.values()) close(c);
  }
  return { entries, reasons };
}
