/**
 * The restore's end, in the attached stub: it runs to its PPM_IOC_RESTORE,
 * the module replaces its memory with the plan's, and at the ioctl's
 * return the process is finished from inside (system calls injected
 * through ptrace: its exe link, credentials, queued signals, its own
 * descriptors closed, its kernel objects made again (fds.ts), its timers
 * (timers.ts), seccomp), then given the image's registers, FPU state and
 * signal mask. A refusal kills the process; so does the caller
 * on any other failure.
 *
 * @module
 */
import { kill, PTRACE, ptrace } from "../../ffi/libc.ts";
import { decode } from "../../ffi/struct.ts";
import { ppmRestore } from "../../ffi/uapi.ts";
import { EXIT, PpmError } from "../errors.ts";
import { getReg, setReg, type Tracee } from "../ptrace/tracee.ts";
import {
  findSyscallInsn,
  inject,
  type Injector,
  injector,
  lendSpare,
  nextSyscallStopAsync,
} from "../ptrace/inject.ts";
import { readMem } from "../ptrace/memory.ts";
import type { LoadedImage } from "../image/schema.ts";
import { restoreCreds, restoreSeccomp, verifyCreds } from "./creds.ts";
import { restoreFds } from "./fds.ts";
import { restoreTimers } from "./timers.ts";
import { mapFd, mappedFiles } from "./memory_plan.ts";
import { stubError, type StubFiles } from "./launch.ts";
import {
  applySched,
  finishThread,
  makeThreads,
  requeueThreadSignals,
  setupThread,
  startThreads,
} from "./threads.ts";

const SYS = {
  ioctl: 16,
  prctl: 157,
  rt_sigqueueinfo: 129,
  rt_tgsigqueueinfo: 297,
  close_range: 436,
} as const;

/**
 * Runs the attached stub to the entry of its ioctl and checks that this
 * CPU's FPU state is the image's size (else kills it); returns the
 * address of its request.
 */
export async function runToIoctl(t: Tracee, img: LoadedImage, stub: StubFiles): Promise<bigint> {
  let regs = await nextSyscallStopAsync(t);
  for (let i = 0; regs && getReg(regs, "orig_rax") !== BigInt(SYS.ioctl) && i < 64; i++) {
    ptrace(PTRACE.SYSCALL, t.pid);
    regs = await nextSyscallStopAsync(t);
  }
  if (!regs) throw new PpmError("cannot restore", await stubError(stub), "nothing was changed");
  const xsaveHere = t.getXstate().length;
  if (xsaveHere !== img.cpu.xstate.length) {
    t.kill();
    throw new PpmError(
      "cannot restore",
      `the FPU state is ${img.cpu.xstate.length} bytes, this CPU's is ${xsaveHere}`,
      "restore on a node with the same CPU features",
      EXIT.INCOMPATIBLE,
    );
  }
  return getReg(regs, "rdx");
}

/** The last lines of the kernel log that name ppm, or "". */
async function dmesgTail(): Promise<string> {
  try {
    const out = await new Deno.Command("dmesg", {
      args: ["--notime"],
      stdout: "piped",
      stderr: "null",
    }).output();
    return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.includes("ppm")).slice(
      -3,
    ).join("\n");
  } catch {
    return "";
  }
}

/**
 * Lets the stub's ioctl (its request at `reqAddr`) replace its memory;
 * returns its registers at the ioctl's exit. Throws when the process died
 * meanwhile (the module kills it when it fails after the memory was
 * replaced), or when the module refused the image (then kills it).
 */
export async function runIoctl(t: Tracee, reqAddr: bigint): Promise<Uint8Array<ArrayBuffer>> {
  ptrace(PTRACE.SYSCALL, t.pid);
  const exit = await nextSyscallStopAsync(t);
  if (!exit) {
    throw new PpmError(
      "restore failed after the memory was replaced; the new process was killed",
      (await dmesgTail()) || "see dmesg",
      "the image may be damaged; nothing else was changed",
    );
  }
  const ret = BigInt.asIntN(64, getReg(exit, "rax"));
  if (ret !== 0n) {
    const raw = await readMem(t.pid, reqAddr, ppmRestore.size).catch(() =>
      new Uint8Array(ppmRestore.size)
    );
    const req = decode(ppmRestore, raw);
    t.kill();
    throw new PpmError(
      "the module refused the image",
      `${req.error as string} (at plan offset ${req.failed_at}, error ${-ret})`,
      "the image is damaged or does not fit this node; nothing was changed",
    );
  }
  return exit;
}

/**
 * Queues the image's pending signals again, with their full siginfo and in
 * order: the process sends them to itself, which the kernel allows for
 * every si_code. The siginfo is staged in the injector's scratch memory.
 */
async function requeueSignals(inj: Injector, pid: number, img: LoadedImage) {
  for (const q of img.signals.queue) {
    const at = inj.scratch(q.info.length);
    await inj.write(at, q.info);
    const sig = BigInt(new DataView(q.info.buffer, q.info.byteOffset).getInt32(0, true));
    const r = q.shared
      ? inj.call(SYS.rt_sigqueueinfo, [BigInt(pid), sig, at])
      : inj.call(SYS.rt_tgsigqueueinfo, [BigInt(pid), BigInt(pid), sig, at]);
    if (r !== 0n) {
      throw new PpmError("cannot restore", `re-queueing signal ${sig} failed (${-r})`, "");
    }
  }
}

/**
 * Finishes the process from inside at its ioctl's exit (`exit`: its
 * registers there; `base`: the stub's first descriptor): its threads made
 * (threads.ts), then in every thread what only it can do, then the image's
 * registers, FPU state and signal mask. It stays stopped; returns the
 * threads other than the leader, stopped and traced. On failure the
 * threads made are ended (the caller ends the leader).
 */
export async function finishInTracee(
  t: Tracee,
  img: LoadedImage,
  exit: Uint8Array<ArrayBuffer>,
  base: number,
  relays?: Map<number, number>,
): Promise<Tracee[]> {
  // The process's own finishing system calls, from the vDSO's syscall instruction.
  const at = await findSyscallInsn(t.pid, img.mm.vdso, img.mm.vdsoEnd);
  const files = mappedFiles(img);
  const exeFd = mapFd(base, files.findIndex((f) => f.path === img.task.exe));
  inject(t, at, exit, SYS.prctl, [35n, 13n, BigInt(exeFd)]); // PR_SET_MM_EXE_FILE: best effort
  // A stack frozen just as it grew leaves no room below its pointer: memory lent instead.
  const rsps = [img.cpu.regs, ...(img.threads?.others.map((x) => x.regs) ?? [])].map((r) =>
    getReg(r, "rsp")
  );
  const spare = await lendSpare(t.pid, img.vmas, rsps);
  const inj = injector(t, at, exit, getReg(img.cpu.regs, "rsp"), img.vmas, spare);
  const made: Tracee[] = [];
  try {
    made.push(...(img.threads ? await makeThreads(t, inj, img.threads) : []));
    const threads = made.map((tr, i) => {
      const rec = img.threads!.others[i];
      const tinj = injector(tr, at, tr.getRegs(), getReg(rec.regs, "rsp"), img.vmas, spare);
      return { tr, rec, inj: tinj };
    });
    // Privileged first, while every thread still has the stub's credentials.
    if (img.threads) await applySched(inj, img.threads.leader, t.pid);
    for (const x of threads) {
      await applySched(x.inj, x.rec, x.rec.tid);
      await setupThread(x.inj, x.rec);
    }
    await restoreCreds(inj, img.task);
    // Credentials are per thread; the parent-death signal is the leader's alone.
    const threadTask = img.task.creds
      ? { ...img.task, creds: { ...img.task.creds, pdeathSig: 0 } }
      : img.task;
    for (const x of threads) await restoreCreds(x.inj, threadTask);
    await requeueSignals(inj, t.pid, img);
    for (const x of threads) await requeueThreadSignals(x.inj, t.pid, x.rec);
    inject(t, at, exit, SYS.close_range, [BigInt(base), 0xffffffffn, 0n]);
    // Its kernel objects (eventfd, timerfd, signalfd, pipes, socketpairs, memfd, epoll) now:
    // after its credentials, so that what it makes is its own as it was (a pipe's or memfd's
    // owner, a socketpair's SO_PEERCRED, the credentials its queued messages carry, what it is
    // charged for), made with its own rights and limits; before seccomp, whose filters may
    // forbid these calls; and once the stub's descriptors are closed, so its numbers are free.
    await restoreFds(inj, t.pid, img.files.fds, relays);
    // Its timers once its threads exist (a timer may signal one of them), before seccomp.
    if (img.timers) await restoreTimers(inj, t.pid, img.timers);
    await restoreSeccomp(inj, img.task.creds);
    for (const x of threads) await restoreSeccomp(x.inj, img.task.creds);
    await verifyCreds(t.pid, img.task);
    for (const x of threads) await verifyCreds(x.rec.tid, threadTask);

    await spare?.putBack();
    const final = new Uint8Array(img.cpu.regs) as Uint8Array<ArrayBuffer>;
    setReg(final, "orig_rax", -1n);
    t.setRegs(final);
    t.setXstate(new Uint8Array(img.cpu.xstate) as Uint8Array<ArrayBuffer>);
    t.setSigmask(img.cpu.sigmask);
    for (const x of threads) finishThread(x.tr, x.rec);
  } catch (e) {
    for (const tr of made) tr.kill();
    throw e;
  }
  return made;
}

/**
 * What lets the finished process run: the stub's own group stop ended,
 * ptrace detached from every thread, and the signals its freeze caught
 * delivered.
 */
export function starter(t: Tracee, img: LoadedImage, threads: Tracee[] = []): () => void {
  const pid = t.pid;
  return () => {
    // The stub stopped itself with SIGSTOP to wait for us: end that group stop.
    Deno.kill(pid, "SIGCONT");
    if (img.threads) startThreads(pid, threads, img.threads);
    t.resume();
    if (img.signals.deliverOnResume) kill(pid, img.signals.deliverOnResume);
  };
}

/** Ends the restored process: its threads first (each exit is ours to collect), then the leader. */
export function ender(t: Tracee, threads: Tracee[]): () => void {
  return () => {
    for (const tr of threads) tr.kill();
    t.kill();
  };
}
