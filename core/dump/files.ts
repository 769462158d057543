/**
 * A process's open files and working directory, and the identity of every
 * file it maps (path, size, mtime, inode and a SHA-256 of the content), so
 * a restore can prove it maps the very same bytes.
 *
 * @module
 */
import { HashStore, stampOf } from "./hash_store.ts";
import { createHash } from "node:crypto";
import type { FileId } from "../image/schema.ts";
import { isShmPath } from "../image/fds.ts";
import { parseFdInfo } from "./proc.ts";
import { type ObjectFd, type RelayedFd, surveyObjects } from "./fds/survey.ts";

/** How an open descriptor is carried. */
export type FdKind = "regular" | "device" | "stdio";

/** One open descriptor in the image. */
export interface FdRecord {
  /** Descriptor number. */
  fd: number;
  /** Kind. */
  kind: FdKind;
  /** Path (regular files, devices) or the link text (stdio). */
  path: string;
  /** open(2) flags. */
  flags: number;
  /** File position. */
  pos: bigint;
  /** What the file is (type, owner, mode, size, mtime, device, inode). */
  id?: FileId;
}

/** Devices that are reopened by path. */
export const PORTABLE_DEVICES = [
  "/dev/null",
  "/dev/zero",
  "/dev/urandom",
  "/dev/random",
  "/dev/full",
];

/** The identity of a file as the checkpoint saw it. */
export interface FileIdentity {
  /** Path. */
  path: string;
  /** Size in bytes. */
  size: number;
  /** Modification time, ms since the epoch. */
  mtimeMs: number;
  /** SHA-256 of the content, hex. */
  sha256: string;
  /** Type, owner, mode, device and inode. */
  id?: FileId;
}

/** What `path` is now (it follows a /proc/PID/fd or cwd link to the file itself). */
export function fileId(path: string): FileId {
  const st = Deno.statSync(path);
  return {
    mode: st.mode ?? 0,
    uid: st.uid ?? 0,
    gid: st.gid ?? 0,
    size: st.size,
    mtimeMs: st.mtime?.getTime() ?? 0,
    dev: BigInt(st.dev),
    ino: BigInt(st.ino ?? 0),
  };
}

/** Kernel objects the process made that move with their state (see core/dump/fds/). */
export type ObjectKind =
  | "eventfd"
  | "timerfd"
  | "signalfd"
  | "epoll"
  | "pipe"
  | "fifo"
  | "memfd"
  | "shm";

/** The anonymous inodes ppm carries, by the name /proc shows. */
const ANON_KINDS: Record<string, ObjectKind> = {
  "anon_inode:[eventfd]": "eventfd",
  "anon_inode:[timerfd]": "timerfd",
  "anon_inode:[signalfd]": "signalfd",
  "anon_inode:[eventpoll]": "epoll",
};

/** What some descriptors ppm does not carry are, for the reason it gives. */
const NOT_CARRIED: [RegExp, string][] = [
  [/^anon_inode:\[io_uring\]$/, "an io_uring instance"],
  [/^anon_inode:\[?pidfd\]?$|^pidfd:/, "a pidfd"],
  [/^anon_inode:\[?inotify\]?$/, "an inotify instance"],
  [/^anon_inode:\[fanotify\]$/, "a fanotify instance"],
  [/^anon_inode:\[userfaultfd\]$/, "a userfaultfd"],
  [/^anon_inode:\[perf_event\]$/, "a perf event"],
  [/^anon_inode:bpf-/, "a BPF object"],
  [/^anon_inode:kvm-|^\/dev\/kvm$/, "a KVM object"],
  [/^anon_inode:\[?dmabuf\]?$|^\/dmabuf:/, "a DMA buffer"],
  [/^anon_inode:sync_file$/, "a sync file"],
  [/^[a-z_]+:\[\d+\]$/, "a namespace or another kernel object"],
];

/** The reason a descriptor that ppm does not carry stays, naming what it is. */
function notCarried(fd: number, target: string): { reason: string } {
  const what = NOT_CARRIED.find(([re]) => re.test(target))?.[1] ??
    (target.startsWith("anon_inode:") ? "an anonymous kernel object" : "a special file");
  return { reason: `fd ${fd}: ${what} (${target}) cannot be carried` };
}

/** Whether `target` is a memfd's link text: "/memfd:NAME (deleted)". */
export function isMemfdLink(target: string): boolean {
  return target.startsWith("/memfd:") && target.endsWith(" (deleted)");
}

/**
 * Classifies descriptor `fd` whose link reads `target`: a file kind, a
 * kernel object that moves with its state (core/dump/fds/ looks closer),
 * "socket" (core/dump/sockets.ts, or a socketpair), or a reason it cannot
 * be carried.
 */
export function classifyFd(
  fd: number,
  target: string,
  isRegular: boolean,
  isFifo = false,
): FdKind | ObjectKind | "socket" | { reason: string } {
  if (PORTABLE_DEVICES.includes(target)) return "device";
  // A standard stream on a pipe, a FIFO (even one whose name is gone: a
  // migrated process's relay) or a terminal.
  if (
    fd <= 2 &&
    (isFifo || target.startsWith("pipe:") || target.startsWith("/dev/pts/") ||
      target.startsWith("/dev/tty"))
  ) {
    return "stdio";
  }
  if (isRegular && isMemfdLink(target)) return "memfd";
  if (target.startsWith("/") && target.endsWith(" (deleted)")) {
    return { reason: `fd ${fd}: ${target} was deleted` };
  }
  if (target.startsWith("/") && isRegular) return isShmPath(target) ? "shm" : "regular";
  if (target.startsWith("/") && isFifo) return "fifo";
  if (target.startsWith("socket:")) return "socket";
  if (target.startsWith("pipe:")) return "pipe";
  if (ANON_KINDS[target]) return ANON_KINDS[target];
  if (target.startsWith("/")) {
    return { reason: `fd ${fd}: ${target} (not a regular file, a FIFO or a portable device)` };
  }
  return notCarried(fd, target);
}

/** A socket descriptor: its number and file status flags. */
export interface SocketFd {
  /** Descriptor number. */
  fd: number;
  /** open(2)-style flags (O_NONBLOCK, O_CLOEXEC, ...). */
  flags: number;
}

/** What {@link readFds} found. */
export interface OpenFds {
  /** Files, devices and standard streams: opened again by path. */
  fds: FdRecord[];
  /** Sockets (to look at with core/dump/sockets.ts); socketpairs of the process's own are objects. */
  sockets: SocketFd[];
  /** Kernel objects that move with their state (core/dump/fds/dump.ts reads it). */
  objects: ObjectFd[];
  /** With `relay` (a migration): pipes and unix stream sockets whose other end stays (core/dump/fds/relayed.ts). */
  relayed: RelayedFd[];
  /** Why some descriptors cannot be carried. */
  reasons: string[];
}

/**
 * Reads the descriptors of `pid`: files, sockets, kernel objects that move
 * with their state, and reasons for the ones that cannot be carried. It
 * changes nothing in the process (`ppm checkpoint --check` runs it on a
 * running one).
 */
export async function readFds(pid: number, opts: { relay?: boolean } = {}): Promise<OpenFds> {
  const fds: FdRecord[] = [];
  const sockets: (SocketFd & { target: string; info: string })[] = [];
  const candidates: ObjectFd[] = [];
  const reasons: string[] = [];
  const nums: number[] = [];
  for await (const e of Deno.readDir(`/proc/${pid}/fd`)) nums.push(Number(e.name));
  nums.sort((a, b) => a - b);
  for (const fd of nums) {
    let target: string;
    try {
      target = await Deno.readLink(`/proc/${pid}/fd/${fd}`);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) continue; // closed meanwhile
      if (e instanceof Deno.errors.InvalidData) {
        reasons.push(`fd ${fd}: its path is not valid UTF-8 (ppm carries UTF-8 paths only)`);
        continue;
      }
      throw e;
    }
    let regular = false, fifo = false;
    let id: FileId | undefined;
    try {
      id = fileId(`/proc/${pid}/fd/${fd}`);
      regular = (id.mode & 0o170000) === 0o100000;
      fifo = (id.mode & 0o170000) === 0o010000;
    } catch { /* not statable */ }
    const kind = classifyFd(fd, target, regular, fifo);
    if (typeof kind === "object") {
      reasons.push(kind.reason);
      continue;
    }
    let text: string;
    try {
      text = await Deno.readTextFile(`/proc/${pid}/fdinfo/${fd}`);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) continue; // closed meanwhile
      throw e;
    }
    const info = parseFdInfo(text);
    if (kind === "socket") sockets.push({ fd, flags: info.flags, target, info: text });
    else if (kind === "stdio") {
      fds.push({ fd, kind, path: target, flags: info.flags, pos: info.pos });
    } else if (kind === "regular" || kind === "device") {
      fds.push({ fd, kind, path: target, flags: info.flags, pos: info.pos, id });
    } else {
      candidates.push({ fd, kind, target, flags: info.flags, pos: info.pos, info: text, id });
    }
  }
  const survey = surveyObjects(pid, candidates, sockets, opts.relay ?? false);
  return {
    fds,
    sockets: survey.sockets,
    objects: survey.objects,
    relayed: survey.relayed,
    reasons: [...reasons, ...survey.reasons],
  };
}

/** Size and mtime of a file now (cheap; taken while the process is frozen). */
export function statIdentity(path: string): Promise<Omit<FileIdentity, "sha256">> {
  // Synchronous: one system call, no trip through the runtime's thread pool (it runs while frozen).
  const st = Deno.statSync(path);
  return Promise.resolve({ path, size: st.size, mtimeMs: st.mtime?.getTime() ?? 0 });
}

const hashes = new HashStore();

/**
 * SHA-256 of a file's content, hex. Remembered per device, inode, path,
 * size, mtime and ctime, in this process and, for root, across the node's
 * ppm processes of this boot (hash_store.ts): the libraries every process
 * maps are hashed once, not once per checkpoint, restore or migration.
 */
export async function sha256File(path: string): Promise<string> {
  const stamp = stampOf(path);
  const known = hashes.get(stamp);
  if (known) return known;
  const at = Date.now();
  const digest = await hashContent(path);
  hashes.set(stamp, digest, at);
  return digest;
}

async function hashContent(path: string): Promise<string> {
  const h = createHash("sha256");
  const f = await Deno.open(path, { read: true });
  try {
    const buf = new Uint8Array(1 << 20);
    for (let i = 0; i < 1 << 24; i++) {
      const n = await f.read(buf);
      if (n === null) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    f.close();
  }
  return h.digest("hex");
}

/** The full identity of a file. */
export async function fileIdentity(path: string): Promise<FileIdentity> {
  const id = fileId(path);
  return { path, size: id.size, mtimeMs: id.mtimeMs, sha256: await sha256File(path), id };
}
