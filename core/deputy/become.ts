/**
 * The original of a moved process turned into its deputy (deputy.c): the
 * same process, its PID, parent, process group, session and standard
 * streams kept, running a tiny program instead of its own, which passes
 * its signals on to the agent and ends the way the moved process ends.
 *
 * It works on the frozen, ptrace-seized thread group (core/ptrace/group.ts,
 * as the checkpoint leaves it held), by system calls injected into its
 * leader (core/ptrace/borrow.ts: every signal blocked meanwhile, seccomp
 * filters suspended where the process has some, arguments in scratch
 * memory below the red zone of its stack). The steps:
 *
 * 1. Checks that change nothing: every thread of the process is frozen
 *    here; it is not in strict seccomp mode (which allows no execve), and
 *    has no seccomp filters unless ppm may suspend them
 *    (PTRACE_O_SUSPEND_SECCOMP needs CAP_SYS_ADMIN); it can run the
 *    deputy: faccessat2(X_OK, AT_EACCESS) called by the process itself,
 *    so with its credentials, in its mount namespace, minding noexec.
 * 2. Descriptors 0, 1, 2 and the keep-list lose close-on-exec, so that
 *    execve keeps them; every other one from 3 up gets it (close_range
 *    with CLOSE_RANGE_CLOEXEC, in the ranges between the kept ones), so
 *    that execve closes them. Until the execve takes hold this is undone
 *    exactly, each descriptor's flag set back as it was read.
 * 3. The signals the freeze caught threads with are queued again, pending
 *    and blocked in the process, where the deputy reads them first; the
 *    SIGSTOP this agent sent (the commit stops the original before it asks
 *    the destination to run the copy) is dropped.
 * 4. The deputy's argv (`ppm-deputy:COMM`, the link's socket, COMM, the
 *    reconnect window) and an empty environment are written below the red
 *    zone, and execve runs. Its de_thread ends the other threads itself
 *    (SIGKILL) and waits until each is released, which for a traced
 *    thread is when its tracer collects its end: so, while the execve
 *    runs, each thread's end is collected here (else the execve would hang
 *    for good). Letting execve end them, rather than injecting an exit in
 *    each thread first, keeps the process whole until execve can no longer
 *    fail: one that fails (the file not runnable, no memory) leaves every
 *    thread as it was.
 * 5. At the PTRACE_EVENT_EXEC stop the process is the deputy: it is let go
 *    (detached: it runs), and the ended threads with it (`Tracee.letGo`, so
 *    that a later `ThreadGroup.kill` cannot end the deputy).
 *
 * A failure before the execve took hold gives the process back as it was
 * frozen (the descriptors' flags, then borrow's give-back: registers,
 * signal mask, scratch memory, the stop), and the caller ends it as it
 * would have without a deputy. The seccomp filters a process has stay with
 * the deputy after the execve (the suspension ends with the detach): a
 * filter that refuses the deputy's own calls (socket, connect, signalfd)
 * makes it exit with DEPUTY_EXIT.FAILED or end by SIGSYS at once.
 *
 * @module
 */
import {
  decodeWaitStatus,
  E,
  ErrnoError,
  errnoName,
  kill,
  PTRACE,
  ptrace,
  ptraceBuf,
  waitpid,
  WALL,
  WNOHANG,
} from "../../ffi/libc.ts";
import { parseMaps, parseStatus } from "../dump/proc.ts";
import { EXIT, PpmError } from "../errors.ts";
import { borrow, type Borrowed } from "../ptrace/borrow.ts";
import { listThreads, type ThreadGroup } from "../ptrace/group.ts";
import { findSyscallInsn, nextSyscallStop } from "../ptrace/inject.ts";
import { getReg, setReg, type Tracee } from "../ptrace/tracee.ts";

/** x86-64 system call numbers. */
const NR = {
  fcntl: 72,
  execve: 59,
  rt_sigqueueinfo: 129,
  close_range: 436,
  faccessat: 269,
  faccessat2: 439,
} as const;

const F_GETFD = 1n, F_SETFD = 2n, FD_CLOEXEC = 1n;
const AT_FDCWD = -100n, X_OK = 1n, AT_EACCESS = 0x200n;
const CLOSE_RANGE_CLOEXEC = 4n;
/** O_CLOEXEC as /proc/PID/fdinfo's flags show it. */
const O_CLOEXEC = 0o2000000;
const PTRACE_O_TRACEEXEC = 0x10;
const PTRACE_EVENT_EXEC = 4;
const SIGINFO_SIZE = 128;
const SIGSTOP = 19;
/** si_code of a signal sent with kill(2). */
const SI_USER = 0;
/** Highest descriptor number close_range takes. */
const FD_MAX = 0xffffffffn;

/** The longest an execve of the deputy may take, its threads' ends collected. */
export const EXEC_WAIT_MS = 10_000;

/** The deputy's reconnect window's bounds, seconds (deputy.c). */
export const RECONNECT_MAX_S = 86_400;

/** What the deputy is, where it reports, and what it keeps. */
export interface DeputySpec {
  /** The installed deputy (core/deputy/binary.ts, `ensureDeputy`): any user may run it. */
  binary: string;
  /** The agent's link socket (core/deputy/link.ts) it connects to. */
  socket: string;
  /** Descriptors from 3 up that stay open (0, 1 and 2 always do, when open). */
  keep?: readonly number[];
  /** Its reconnect window, seconds (0..86400; deputy.c's default, 600, when absent). */
  reconnectS?: number;
  /** The process's name: /proc/PID/comm's bytes without the newline (read there when absent). */
  comm?: Uint8Array;
  /**
   * What the kernel would do to the leader's registers on its way back to
   * user space (an rseq abort, core/checkpoint/threads.ts `rseqAbort`),
   * for a process given back after a failure.
   */
  fixRegs?: (regs: Uint8Array) => Promise<void>;
}

/** A descriptor's flags as read before they were changed (F_GETFD). */
interface FdFlag {
  fd: number;
  flags: bigint;
}

/**
 * Turns the frozen process `group` into its deputy (see the module's
 * text); on return it runs deputy.c, untraced.
 *
 * @throws PpmError when no deputy can be made: the process is then as it
 *   was frozen, still held (the caller ends it); or when it ended meanwhile,
 *   or its execve did not end within {@link EXEC_WAIT_MS}: then it is no
 *   longer as it was, and the caller ends it all the same
 */
export async function becomeDeputy(group: ThreadGroup, spec: DeputySpec): Promise<void> {
  const pid = group.pid;
  const what = `cannot make process ${pid} its own deputy`;
  const args = deputyArgs(pid, spec, what);
  const keep = keptFds(spec.keep ?? [], what);
  const status = parseStatus(Deno.readTextFileSync(`/proc/${pid}/status`));
  checkFrozen(group, what);
  checkSeccomp(pid, status.seccomp, what);
  const maps = parseMaps(Deno.readTextFileSync(`/proc/${pid}/maps`));
  const vdso = maps.find((m) => m.name === "[vdso]");
  if (!vdso) throw new PpmError(what, "it has no vDSO, where ppm runs its system calls", "");
  // The other threads' caught signals, read while they are still in the stops that caught them.
  const othersCaught = group.others.filter((t) => t.deliverOnResume).map((t) => siginfoOf(t));

  await borrow(
    group.leader,
    { vdso, vmas: maps, seccomp: status.seccomp !== 0, fixRegs: spec.fixRegs },
    async (inj) => {
      await checkRunnable(inj, args.path, what);
      const kept = keepOpen(inj, [0, 1, 2, ...keep], what);
      let marked: number[] = [];
      let taken = false; // past the execve's point of no return, or not known: no give-back
      try {
        marked = closeOnExec(inj, pid, keep, what);
        await inj.requeueCaught((info) => !sentByUs(info));
        await queueForProcess(inj, pid, othersCaught.filter((i) => !sentByUs(i)), what);
        for (const t of group.others) t.deliverOnResume = 0;
        const block = await writeArgs(inj, args);
        const at = await findSyscallInsn(pid, vdso.start, vdso.end);
        let r: { errno?: number };
        try {
          r = await execIn(group, at, block, status.seccomp !== 0);
        } catch (e) {
          // Ended, or stuck in its execve: nothing to give back; the caller ends it.
          taken = true;
          inj.consumed();
          throw e;
        }
        if (r.errno) {
          throw new PpmError(
            what,
            `its execve of ${spec.binary} failed (${errnoName(r.errno)})`,
            "see the kernel log (an LSM may refuse it); the process ends as without a deputy",
          );
        }
        taken = true;
        inj.consumed();
      } catch (e) {
        if (!taken && !gone(e)) {
          undo(() => setFlags(inj, marked.map((fd) => ({ fd, flags: 0n }))));
          undo(() => setFlags(inj, kept));
        }
        throw e;
      }
    },
  );
  group.leader.letGo();
  for (const t of group.others) t.letGo();
}

/** The deputy's path, argv and the strings to write, checked. */
interface DeputyArgs {
  path: Uint8Array;
  argv: Uint8Array[];
}

const enc = new TextEncoder();

function deputyArgs(pid: number, spec: DeputySpec, what: string): DeputyArgs {
  const bad = (why: string) => new PpmError(what, why, "", EXIT.USAGE);
  const path = enc.encode(spec.binary);
  const socket = enc.encode(spec.socket);
  if (!spec.binary.startsWith("/") || path.includes(0) || path.length > 1024) {
    throw bad(`the deputy's path is not an absolute path of at most 1024 bytes: ${spec.binary}`);
  }
  if (!spec.socket.startsWith("/") || socket.includes(0) || socket.length > 107) {
    throw bad(`the link's socket is not an absolute path of at most 107 bytes: ${spec.socket}`);
  }
  const r = spec.reconnectS;
  if (r !== undefined && !(Number.isInteger(r) && r >= 0 && r <= RECONNECT_MAX_S)) {
    throw bad(`the reconnect window ${r} is not a whole number of seconds in 0..86400`);
  }
  let comm = spec.comm;
  if (!comm) {
    const raw = Deno.readFileSync(`/proc/${pid}/comm`);
    comm = raw.at(-1) === 10 ? raw.subarray(0, -1) : raw;
  }
  const nul = comm.indexOf(0);
  comm = comm.subarray(0, Math.min(15, nul < 0 ? comm.length : nul));
  const argv0 = new Uint8Array([...enc.encode("ppm-deputy:"), ...comm]);
  const argv = [argv0, socket, comm];
  if (r !== undefined) argv.push(enc.encode(String(r)));
  return { path, argv };
}

function keptFds(keep: readonly number[], what: string): number[] {
  for (const fd of keep) {
    if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
      throw new PpmError(what, `${fd} is not a descriptor number`, "", EXIT.USAGE);
    }
  }
  return [...new Set(keep.filter((fd) => fd > 2))].sort((a, b) => a - b);
}

function checkFrozen(group: ThreadGroup, what: string): void {
  const held = new Set(group.all.map((t) => t.pid));
  const loose = listThreads(group.pid).filter((tid) => !held.has(tid));
  if (loose.length) {
    throw new PpmError(what, `its threads ${loose.join(", ")} are not frozen`, "freeze it again");
  }
}

function checkSeccomp(pid: number, mode: number, what: string): void {
  if (mode === 1) {
    throw new PpmError(
      what,
      "it runs in strict seccomp mode, which allows no execve",
      "nothing: it ends as without a deputy",
    );
  }
  if (mode !== 2) return;
  try {
    ptrace(PTRACE.SETOPTIONS, pid, 0n, BigInt(PTRACE.O_SUSPEND_SECCOMP));
    ptrace(PTRACE.SETOPTIONS, pid, 0n, 0n);
  } catch (e) {
    throw new PpmError(
      what,
      "it runs under seccomp filters, and ppm may not suspend them for the system calls that " +
        `make the deputy (PTRACE_O_SUSPEND_SECCOMP: ${(e as Error).message})`,
      "run the agent as root (CAP_SYS_ADMIN), on a kernel built with CONFIG_CHECKPOINT_RESTORE",
      EXIT.PERMISSION,
      { cause: e },
    );
  }
}

/** PTRACE_GETSIGINFO of a thread in a signal-delivery stop. */
function siginfoOf(t: Tracee): Uint8Array<ArrayBuffer> {
  const info = new Uint8Array(SIGINFO_SIZE);
  ptraceBuf(PTRACE.GETSIGINFO, t.pid, 0n, info);
  return info;
}

/** Whether `info` is a SIGSTOP this process sent with kill(2) (the commit's). */
function sentByUs(info: Uint8Array): boolean {
  const v = new DataView(info.buffer, info.byteOffset, SIGINFO_SIZE);
  return v.getInt32(0, true) === SIGSTOP && v.getInt32(8, true) === SI_USER &&
    v.getInt32(16, true) === Deno.pid;
}

/** Whether `e` says the process ended. */
function gone(e: unknown): boolean {
  return e instanceof PpmError && /ended while frozen|ended during/.test(e.message);
}

/** Runs a step of an undo; a failure there leaves the rest to the caller (who ends the process). */
function undo(step: () => unknown): void {
  try {
    step();
  } catch { /* the process is ended by the caller anyway */ }
}

/** A NUL-terminated copy of `s`. */
function cstr(s: Uint8Array): Uint8Array {
  const out = new Uint8Array(s.length + 1);
  out.set(s);
  return out;
}

/** The process may run the deputy: its own faccessat2, as its execve would judge. */
async function checkRunnable(inj: Borrowed, path: Uint8Array, what: string): Promise<void> {
  const s = cstr(path);
  const at = inj.scratch(s.length);
  await inj.write(at, s);
  let r = inj.call(NR.faccessat2, [AT_FDCWD, at, X_OK, AT_EACCESS]);
  if (r === -BigInt(E.ENOSYS)) r = inj.call(NR.faccessat, [AT_FDCWD, at, X_OK]);
  if (r < 0n) {
    const name = new TextDecoder().decode(path);
    throw new PpmError(
      what,
      `it may not run ${name} (${errnoName(Number(-r))})`,
      "install the deputy where every user may run it: a root-owned directory, mode 0755, on a " +
        "filesystem mounted without noexec, seen from the process's mount namespace " +
        "(PPM_DEPUTY_BIN_DIR)",
      EXIT.PERMISSION,
    );
  }
}

/** Clears close-on-exec on `fds` where open and set; returns their flags as they were. */
function keepOpen(inj: Borrowed, fds: number[], what: string): FdFlag[] {
  const changed: FdFlag[] = [];
  try {
    for (const fd of fds) {
      const flags = inj.call(NR.fcntl, [BigInt(fd), F_GETFD]);
      if (flags < 0n || !(flags & FD_CLOEXEC)) continue; // not open, or kept by execve anyway
      const r = inj.call(NR.fcntl, [BigInt(fd), F_SETFD, flags & ~FD_CLOEXEC]);
      if (r < 0n) {
        throw new PpmError(what, `fcntl(${fd}, F_SETFD) failed (${errnoName(Number(-r))})`, "");
      }
      changed.push({ fd, flags });
    }
  } catch (e) {
    if (!gone(e)) undo(() => setFlags(inj, changed));
    throw e;
  }
  return changed;
}

/** F_SETFD of each descriptor to its flags. */
function setFlags(inj: Borrowed, list: FdFlag[]): void {
  for (const { fd, flags } of list) inj.call(NR.fcntl, [BigInt(fd), F_SETFD, flags]);
}

/** The process's open descriptors from 3 up that `keep` does not hold, without close-on-exec. */
function unmarked(pid: number, keep: number[]): number[] {
  const held = new Set(keep);
  const out: number[] = [];
  for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
    const fd = Number(e.name);
    if (!Number.isInteger(fd) || fd < 3 || held.has(fd)) continue;
    let info: string;
    try {
      info = Deno.readTextFileSync(`/proc/${pid}/fdinfo/${fd}`);
    } catch {
      continue; // closed meanwhile: it cannot be, the process is frozen; nothing to mark
    }
    const flags = parseInt(/^flags:\s*([0-7]+)/m.exec(info)?.[1] ?? "0", 8);
    if (!(flags & O_CLOEXEC)) out.push(fd);
  }
  return out.sort((a, b) => a - b);
}

/** [first, last] ranges from 3 up that leave out `keep` (sorted, each > 2). */
export function rangesAround(keep: readonly number[]): [bigint, bigint][] {
  const out: [bigint, bigint][] = [];
  let lo = 3n;
  for (const k of keep) {
    const fd = BigInt(k);
    if (fd > lo) out.push([lo, fd - 1n]);
    lo = fd + 1n;
  }
  out.push([lo, FD_MAX]);
  return out;
}

/**
 * Marks close-on-exec every descriptor from 3 up but `keep`; returns those
 * that lacked it (to undo).
 */
function closeOnExec(inj: Borrowed, pid: number, keep: number[], what: string): number[] {
  const marked = unmarked(pid, keep);
  for (const [lo, hi] of rangesAround(keep)) {
    const r = inj.call(NR.close_range, [lo, hi, CLOSE_RANGE_CLOEXEC]);
    if (r === 0n) continue;
    // A kernel without CLOSE_RANGE_CLOEXEC (before 5.11): one at a time.
    for (const fd of marked.filter((fd) => BigInt(fd) >= lo && BigInt(fd) <= hi)) {
      const s = inj.call(NR.fcntl, [BigInt(fd), F_SETFD, FD_CLOEXEC]);
      if (s < 0n) {
        throw new PpmError(what, `fcntl(${fd}, F_SETFD) failed (${errnoName(Number(-s))})`, "");
      }
    }
  }
  return marked;
}

/** Queues `infos` (siginfo) for the whole process, by calls in its leader. */
async function queueForProcess(
  inj: Borrowed,
  pid: number,
  infos: Uint8Array[],
  what: string,
): Promise<void> {
  if (!infos.length) return;
  const at = inj.scratch(SIGINFO_SIZE);
  for (const info of infos) {
    await inj.write(at, info);
    const sig = new DataView(info.buffer, info.byteOffset).getInt32(0, true);
    const r = inj.call(NR.rt_sigqueueinfo, [BigInt(pid), BigInt(sig), at]);
    if (r < 0n) {
      throw new PpmError(
        what,
        `queueing signal ${sig} again failed (${errnoName(Number(-r))})`,
        "",
      );
    }
  }
}

/** Where execve's arguments are in the process. */
interface ArgBlock {
  path: bigint;
  argv: bigint;
  envp: bigint;
}

/** Writes the path, argv and an empty envp below the red zone. */
async function writeArgs(inj: Borrowed, args: DeputyArgs): Promise<ArgBlock> {
  const strings = [args.path, ...args.argv].map(cstr);
  const ptrs = (args.argv.length + 2) * 8; // argv, its NULL, envp's NULL
  const size = ptrs + strings.reduce((n, s) => n + s.length, 0);
  const base = inj.scratch(size);
  const block = new Uint8Array(size);
  const v = new DataView(block.buffer);
  let off = ptrs;
  const addrs = strings.map((s) => {
    block.set(s, off);
    const a = base + BigInt(off);
    off += s.length;
    return a;
  });
  addrs.slice(1).forEach((a, i) => v.setBigUint64(i * 8, a, true));
  await inj.write(base, block);
  return { path: addrs[0], argv: base, envp: base + BigInt((args.argv.length + 1) * 8) };
}

/**
 * Runs execve in the leader while the other threads' ends are collected
 * (see the module's text); `errno` when it failed early (nothing changed).
 */
async function execIn(
  group: ThreadGroup,
  at: bigint,
  block: ArgBlock,
  seccomp: boolean,
): Promise<{ errno?: number }> {
  const t = group.leader, pid = group.pid;
  const late: Uint8Array[] = [];
  const regs = t.getRegs();
  setReg(regs, "rip", at);
  setReg(regs, "rax", BigInt(NR.execve));
  setReg(regs, "orig_rax", -1n);
  setReg(regs, "rdi", block.path);
  setReg(regs, "rsi", block.argv);
  setReg(regs, "rdx", block.envp);
  t.setRegs(regs);
  const options = PTRACE.O_TRACESYSGOOD | PTRACE_O_TRACEEXEC |
    (seccomp ? PTRACE.O_SUSPEND_SECCOMP : 0);
  ptrace(PTRACE.SETOPTIONS, pid, 0n, BigInt(options));
  ptrace(PTRACE.SYSCALL, pid);
  // To its entry: a SIGSTOP may stop it on the way (the only signal not blocked).
  if (!nextSyscallStop(t, () => late.push(siginfoOf(t)))) throw ended(pid);
  ptrace(PTRACE.SYSCALL, pid);
  const alive = new Set(group.others);
  const deadline = Date.now() + EXEC_WAIT_MS;
  for (let pause = 0;; pause = Math.min(10, pause + 1)) {
    for (const o of alive) {
      if (collected(o)) alive.delete(o);
    }
    const [r, status] = waitpid(pid, WALL | WNOHANG);
    if (r === pid) {
      const w = decodeWaitStatus(status);
      if (!w.stopped) throw ended(pid);
      if (w.event === PTRACE_EVENT_EXEC) break;
      if (w.stopSig === (5 | 0x80)) {
        const rax = BigInt.asIntN(64, getReg(t.getRegs(), "rax"));
        if (rax < 0n) {
          resend(pid, late);
          return { errno: Number(-rax) };
        }
        break; // its exit without the event: it ran all the same
      }
      if (w.event === 0) late.push(siginfoOf(t));
      ptrace(PTRACE.SYSCALL, pid);
      continue;
    }
    if (Date.now() > deadline) {
      throw new PpmError(
        `cannot make process ${pid} its own deputy`,
        `its execve did not end within ${EXEC_WAIT_MS / 1000} s`,
        `end it: kill -KILL ${pid}`,
        EXIT.TIMEOUT,
      );
    }
    await new Promise((res) => setTimeout(res, pause));
  }
  resend(pid, late);
  return {};
}

/** Collects the end of thread `t` if it came; whether it is gone. */
function collected(t: Tracee): boolean {
  try {
    const [r, status] = waitpid(t.pid, WALL | WNOHANG);
    if (r !== t.pid) return false;
    if (!decodeWaitStatus(status).stopped) return true;
    ptrace(PTRACE.CONT, t.pid, 0n, 0n); // a stop on its way out: SIGKILL is pending, it ends
    return false;
  } catch (e) {
    // ECHILD (10): collected already; ESRCH: gone.
    if (e instanceof ErrnoError && (e.errno === 10 || e.errno === E.ESRCH)) return true;
    throw e;
  }
}

/** Signals that stopped the leader on its way to execve, sent again (ppm's own SIGSTOP is not). */
function resend(pid: number, late: Uint8Array[]): void {
  for (const info of late) {
    if (sentByUs(info)) continue;
    try {
      kill(pid, new DataView(info.buffer, info.byteOffset).getInt32(0, true));
    } catch { /* ended */ }
  }
}

function ended(pid: number): PpmError {
  return new PpmError(
    `process ${pid} ended during its execve of the deputy`,
    "it was killed, or the kernel could not finish the execve",
    "",
  );
}
