/**
 * Parsers for the kind-specific lines of /proc/PID/fdinfo/FD: eventfd
 * (count, and on newer kernels the semaphore flag), timerfd (clock, ticks,
 * settime flags, time left, interval), signalfd (mask) and epoll (one line
 * per watched descriptor). Pure functions of the text; a line missing or
 * out of shape gives undefined (or is left out), never a guess.
 *
 * @module
 */

const U64_MAX = (1n << 64n) - 1n;

/** `key:` followed by one token, as the kernel prints it (spaces or a tab after the colon). */
function field(text: string, key: string): string | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith(key + ":")) return line.slice(key.length + 1).trim();
  }
  return undefined;
}

/** An unsigned 64-bit number written in `radix`, or undefined. */
function u64(s: string | undefined, radix: 10 | 16): bigint | undefined {
  if (s === undefined) return undefined;
  const ok = radix === 16 ? /^[0-9a-f]{1,16}$/i : /^[0-9]{1,20}$/;
  if (!ok.test(s)) return undefined;
  const n = BigInt(radix === 16 ? "0x" + s : s);
  return n <= U64_MAX ? n : undefined;
}

/** An eventfd's state. */
export interface EventfdInfo {
  /** The counter. */
  count: bigint;
  /** EFD_SEMAPHORE, when the kernel shows it (6.6 and later); undefined on older kernels. */
  semaphore?: boolean;
}

/** The eventfd lines of an fdinfo text, or undefined when they are missing or out of shape. */
export function parseEventfdInfo(text: string): EventfdInfo | undefined {
  const count = u64(field(text, "eventfd-count"), 16);
  if (count === undefined || count === U64_MAX) return undefined;
  const sem = field(text, "eventfd-semaphore");
  if (sem !== undefined && sem !== "0" && sem !== "1") return undefined;
  return sem === undefined ? { count } : { count, semaphore: sem === "1" };
}

/** A time as (seconds, nanoseconds). */
export interface Timespec {
  /** Seconds. */
  sec: bigint;
  /** Nanoseconds, below 1e9. */
  nsec: number;
}

/** A timerfd's state. */
export interface TimerfdInfo {
  /** Its clock (CLOCK_REALTIME 0, MONOTONIC 1, BOOTTIME 7, REALTIME_ALARM 8, BOOTTIME_ALARM 9). */
  clock: number;
  /** Expirations not read yet. */
  ticks: bigint;
  /** The flags of its last timerfd_settime (TFD_TIMER_ABSTIME 1, TFD_TIMER_CANCEL_ON_SET 2). */
  settimeFlags: number;
  /** Time left to the next expiry (0: disarmed or due). */
  value: Timespec;
  /** Interval (0: one shot). */
  interval: Timespec;
}

/** Clocks a timerfd can have. */
export const TIMERFD_CLOCKS: readonly number[] = [0, 1, 7, 8, 9];

function timespec(s: string | undefined): Timespec | undefined {
  const m = s?.match(/^\((\d{1,20}), (\d{1,9})\)$/);
  if (!m) return undefined;
  const sec = BigInt(m[1]);
  if (sec >= 1n << 63n) return undefined;
  return { sec, nsec: Number(m[2]) };
}

/** The timerfd lines of an fdinfo text, or undefined when they are missing or out of shape. */
export function parseTimerfdInfo(text: string): TimerfdInfo | undefined {
  const clock = Number(field(text, "clockid") ?? NaN);
  const ticks = u64(field(text, "ticks"), 10);
  const flags = field(text, "settime flags");
  const value = timespec(field(text, "it_value"));
  const interval = timespec(field(text, "it_interval"));
  if (!TIMERFD_CLOCKS.includes(clock) || ticks === undefined || !value || !interval) {
    return undefined;
  }
  if (flags === undefined || !/^[0-7]{1,11}$/.test(flags)) return undefined;
  const settimeFlags = parseInt(flags, 8);
  if (settimeFlags & ~3) return undefined;
  return { clock, ticks, settimeFlags, value, interval };
}

/** A signalfd's mask (bit n-1 for signal n), or undefined when missing or out of shape. */
export function parseSignalfdInfo(text: string): bigint | undefined {
  const s = field(text, "sigmask");
  return s !== undefined && /^[0-9a-f]{16}$/i.test(s) ? u64(s, 16) : undefined;
}

/** One descriptor an epoll instance watches. */
export interface EpollItem {
  /** The number it was added under. */
  fd: number;
  /** Its events mask (EPOLLIN ..., EPOLLET, EPOLLONESHOT ...). */
  events: number;
  /** Its user data. */
  data: bigint;
  /** The watched file's inode. */
  ino: bigint;
  /** Its device (the kernel's s_dev). */
  sdev: number;
}

const EPOLL_LINE =
  /^tfd:\s+(\d{1,10}) events:\s+([0-9a-f]{1,8}) data:\s+([0-9a-f]{1,16})\s+pos:(-?\d+) ino:([0-9a-f]{1,16}) sdev:([0-9a-f]{1,8})/;

/**
 * The watched descriptors of an epoll instance's fdinfo text, or undefined
 * when a `tfd:` line is out of shape (every watched descriptor is needed).
 */
export function parseEpollInfo(text: string): EpollItem[] | undefined {
  const out: EpollItem[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("tfd:")) continue;
    const m = EPOLL_LINE.exec(line);
    if (!m) return undefined;
    const fd = Number(m[1]);
    if (fd > 0x7fffffff) return undefined;
    out.push({
      fd,
      events: parseInt(m[2], 16) >>> 0,
      data: BigInt("0x" + m[3]),
      ino: BigInt("0x" + m[5]),
      sdev: parseInt(m[6], 16),
    });
  }
  return out;
}
