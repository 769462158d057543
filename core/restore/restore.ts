/**
 * `ppm restore`: image → process. Checks first (PID free, same kernel, CPU
 * features, mapped files unchanged), then starts the stub with the image's
 * PID, attaches with ptrace, lets PPM_IOC_RESTORE rebuild its memory, and at
 * the ioctl's return sets what only the process itself or ptrace can:
 * the exe link, credentials, its own descriptors closed, registers, FPU
 * state and signal mask. Nothing is half-restored: a refusal before the
 * memory is replaced kills the stub, and after it the module kills it.
 *
 * @module
 */
import { join } from "node:path";
import { DEVICE_PATH } from "../../ffi/device.ts";
import { kill, PTRACE, ptrace } from "../../ffi/libc.ts";
import { decode } from "../../ffi/struct.ts";
import { ppmRestore } from "../../ffi/uapi.ts";
import { EXIT, PpmError } from "../errors.ts";
import { fault } from "../fault.ts";
import { getReg, setReg, Tracee } from "../ptrace/tracee.ts";
import { findSyscallInsn, inject, injector, nextSyscallStopAsync } from "../ptrace/inject.ts";
import { readMem } from "../ptrace/memory.ts";
import { type LoadedImage, loadImage } from "../image/schema.ts";
import { pathSource } from "../host/bytes.ts";
import { checkCompatible } from "./compat.ts";
import { restoreCreds, restoreSeccomp, verifyCreds } from "./creds.ts";
import { mapFd, mappedFiles, PlanWriter, stubBase } from "./memory_plan.ts";
import { type StdioTargets, stubSpec } from "./spec.ts";
import { ensureStub, STUB_EXIT } from "./stub.ts";
import { startTicks } from "../host/proc_stat.ts";

const SYS = {
  ioctl: 16,
  prctl: 157,
  rt_sigqueueinfo: 129,
  rt_tgsigqueueinfo: 297,
  close_range: 436,
} as const;

/** Options of {@link restore}. */
export interface RestoreOptions extends StdioTargets {
  /** Progress notes. */
  log?: (s: string) => void;
  /**
   * Leave the restored process stopped under ptrace; the caller starts it
   * with `start()` or removes it with `abort()` (migration commits this way).
   */
  hold?: boolean;
  /** The mapped files were checked already (a migration checks them with the offer). */
  filesChecked?: boolean;
}

/** Figures of one restore; times in µs. */
export interface RestoreStats {
  /** The restored process. */
  pid: number;
  /** Per-phase times, µs. */
  timesUs: {
    load: number;
    check: number;
    plan: number;
    stub: number;
    memory: number;
    finish: number;
    total: number;
  };
  /** Pages restored. */
  pages: number;
  /** With `hold`: lets the process run. */
  start?: () => void;
  /** With `hold`: ends the process. */
  abort?: () => void;
}

const us = (ms: number) => Math.round(ms * 1000);

/**
 * Queues the image's pending signals again, with their full siginfo and in
 * order: the process sends them to itself, which the kernel allows for
 * every si_code. The siginfo is staged on its stack, below the red zone.
 */
async function requeueSignals(
  t: Tracee,
  at: bigint,
  base: Uint8Array<ArrayBuffer>,
  img: LoadedImage,
) {
  if (!img.signals.queue.length) return;
  const scratch = ((getReg(img.cpu.regs, "rsp") - 1024n) & ~15n) - 128n;
  const mem = await Deno.open(`/proc/${t.pid}/mem`, { read: true, write: true });
  try {
    for (const q of img.signals.queue) {
      await mem.seek(scratch, Deno.SeekMode.Start);
      await mem.write(q.info);
      const sig = BigInt(new DataView(q.info.buffer, q.info.byteOffset).getInt32(0, true));
      const pid = BigInt(t.pid);
      const r = q.shared
        ? inject(t, at, base, SYS.rt_sigqueueinfo, [pid, sig, scratch])
        : inject(t, at, base, SYS.rt_tgsigqueueinfo, [pid, pid, sig, scratch]);
      if (r !== 0n) {
        throw new PpmError("cannot restore", `re-queueing signal ${sig} failed (${-r})`, "");
      }
    }
  } finally {
    mem.close();
  }
}

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
 * Throws unless only root could have written the image file at `path`: a
 * restore gives the process the credentials its image names, so an image
 * that a user could have edited (owned by them, writable by group or
 * others, or reached through a symlink) could name root's.
 */
export function checkImageFileTrust(path: string, st: Deno.FileInfo): void {
  let why = "";
  if (st.isSymlink) why = "it is a symlink";
  else if (st.uid !== 0 && st.uid !== Deno.uid()) why = `it is owned by uid ${st.uid}`;
  else if (((st.mode ?? 0) & 0o022) !== 0) {
    why = `it is writable by ${((st.mode ?? 0) & 0o002) ? "others" : "its group"}`;
  }
  if (why) {
    throw new PpmError(
      "cannot restore",
      `the image ${path} could have been changed by someone else (${why}), and an image names the credentials its process gets`,
      `check it, then as root: chown root: ${path}; chmod go-w ${path}`,
      EXIT.PERMISSION,
    );
  }
}

/** Restores the image in `path`; returns the new process's PID and figures. */
export async function restore(path: string, opts: RestoreOptions = {}): Promise<RestoreStats> {
  const t0 = performance.now();
  const st = await Deno.lstat(path).catch((e) => {
    if (e instanceof Deno.errors.NotFound) {
      throw new PpmError("cannot restore", `no image ${path}`, "", EXIT.MISSING);
    }
    throw e;
  });
  checkImageFileTrust(path, st);
  const { img, staged } = await loadStaged(pathSource(path)).catch((e) => {
    if (e instanceof Deno.errors.NotFound) {
      throw new PpmError("cannot restore", `no image ${path}`, "", EXIT.MISSING);
    }
    throw e;
  });
  return await restoreImage(img, staged, opts, t0);
}

/** This boot's id: files are the same file only where it matches the image's. */
function bootId(): string {
  try {
    return Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim();
  } catch {
    return "";
  }
}

/** The prefix of restore work directories: ppm-restore-PID-STARTTICKS- of the ppm that made it. */
function workPrefix(): string {
  return `ppm-restore-${Deno.pid}-${startTicks(Deno.pid)}-`;
}

/** A directory in memory when the system has one: images are never written to disk. */
async function workDir(): Promise<string> {
  try {
    return await Deno.makeTempDir({ dir: "/dev/shm", prefix: workPrefix() });
  } catch {
    return await Deno.makeTempDir({ prefix: workPrefix() });
  }
}

/**
 * Removes the restore work directories (plans: the memory of processes, in
 * RAM) that a ppm which died left behind; those of a ppm that runs stay.
 * Returns the directories removed.
 */
export function sweepWorkDirs(dirs = ["/dev/shm", "/tmp"]): string[] {
  const removed: string[] = [];
  for (const d of dirs) {
    let entries: Deno.DirEntry[] = [];
    try {
      entries = [...Deno.readDirSync(d)];
    } catch {
      continue;
    }
    for (const e of entries) {
      const m = /^ppm-restore-(\d+)-(\d*)-/.exec(e.name);
      if (!m || !e.isDirectory) continue;
      if (Number(m[1]) === Deno.pid || (startTicks(Number(m[1])) === m[2] && m[2] !== "")) continue;
      try {
        Deno.removeSync(join(d, e.name), { recursive: true });
        removed.push(join(d, e.name));
      } catch { /* someone else's, or gone */ }
    }
  }
  return removed;
}

/**
 * A restore plan being written while its image is read: its page runs go
 * to the plan file as they arrive, so the image's memory is never held
 * whole, and writing the plan overlaps reading (or receiving) the image.
 */
export interface StagedPlan {
  /** The work directory that holds the plan (removed by restoreImage or `discard`). */
  dir: string;
  /** The plan file's path. */
  path: string;
  /** The open plan file. */
  file: Deno.FsFile;
  /** Writes the runs, then the header. */
  writer: PlanWriter;
  /** Closes the file and removes the directory (for a load that failed). */
  discard(): Promise<void>;
}

/**
 * Reads and checks the image from `source`, writing its pages into a new
 * plan as they arrive; on failure nothing is left behind.
 */
export async function loadStaged(
  source: AsyncIterable<Uint8Array>,
): Promise<{ img: LoadedImage; staged: StagedPlan }> {
  const dir = await workDir();
  const path = join(dir, "plan");
  let file: Deno.FsFile | undefined;
  const discard = async () => {
    try {
      file?.close();
    } catch { /* closed */ }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    file = await Deno.open(path, { write: true, create: true, mode: 0o600 });
    const writer = new PlanWriter(file);
    const img = await loadImage(source, (block, vmas) => writer.addRun(block, vmas));
    return { img, staged: { dir, path, file, writer, discard } };
  } catch (e) {
    await discard();
    throw e;
  }
}

/**
 * Restores a checked image whose pages were written into `staged` as it was
 * read (see loadStaged); the plan is discarded at the end, whatever happens.
 */
export async function restoreImage(
  img: LoadedImage,
  staged: StagedPlan,
  opts: RestoreOptions = {},
  t0 = performance.now(),
): Promise<RestoreStats> {
  const tLoad = performance.now();
  try {
    return await restoreStaged(img, staged, opts, t0, tLoad);
  } finally {
    await staged.discard();
  }
}

async function restoreStaged(
  img: LoadedImage,
  staged: StagedPlan,
  opts: RestoreOptions,
  t0: number,
  tLoad: number,
): Promise<RestoreStats> {
  const pid = img.task.pid;
  await checkCompatible(img, {
    pid,
    xsaveSize: img.cpu.xstate.length,
    filesChecked: opts.filesChecked,
  });
  for (const target of [opts.stdout, opts.stderr]) {
    // Create missing targets; never open existing ones (a FIFO would see EOF).
    if (target && !(await Deno.lstat(target).then(() => true, () => false))) {
      await Deno.writeFile(target, new Uint8Array(), { append: true, create: true });
    }
  }
  const tCheck = performance.now();

  const base = stubBase(img);
  try {
    await staged.writer.finish(img, base);
  } finally {
    staged.file.close();
  }
  const pidOut = join(staged.dir, "pid");
  const errOut = join(staged.dir, "error");
  const specPath = join(staged.dir, "spec");
  const here = bootId();
  const sameNode = here !== "" && img.task.creds?.bootId === here;
  await Deno.writeFile(
    specPath,
    stubSpec(img, {
      pid,
      base,
      dev: DEVICE_PATH,
      plan: staged.path,
      pidOut,
      errOut,
      stdio: opts,
      sameNode,
    }),
    { createNew: true, mode: 0o600 },
  );
  const stubError = async () =>
    (await Deno.readTextFile(errOut).catch(() => "")).trim() ||
    "the restore stub failed while setting up (see its message above)";
  const stub = await ensureStub();
  const tPlan = performance.now();

  const launcher = await new Deno.Command(stub, {
    args: [specPath],
    env: { GLIBC_TUNABLES: "glibc.pthread.rseq=0" },
    clearEnv: true,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (launcher.code === STUB_EXIT.PID_TAKEN) {
    throw new PpmError(
      "cannot restore",
      `PID ${pid} is taken`,
      "end that process, or restore where the PID is free",
      EXIT.BUSY,
    );
  }
  if (launcher.code === STUB_EXIT.NOT_PERMITTED) {
    throw new PpmError(
      "cannot restore",
      "creating a process with a chosen PID needs CAP_CHECKPOINT_RESTORE",
      "run as root",
      EXIT.PERMISSION,
    );
  }
  if (launcher.code !== STUB_EXIT.OK) {
    throw new PpmError(
      "cannot restore",
      `the restore stub failed to start (exit ${launcher.code}): ${await stubError()}`,
      "",
    );
  }
  const got = Number((await Deno.readTextFile(pidOut)).trim());
  if (got !== pid) {
    throw new PpmError("cannot restore", `the stub got PID ${got}, not ${pid}`, "");
  }

  let t: Tracee;
  try {
    t = Tracee.attach(pid, { sysgood: true, exitKill: true });
  } catch {
    throw new PpmError("cannot restore", await stubError(), "nothing was changed");
  }
  // From here on, a failure must not leave a half-restored process behind.
  let started = false;
  try {
    let regs = await nextSyscallStopAsync(t);
    for (let i = 0; regs && getReg(regs, "orig_rax") !== BigInt(SYS.ioctl) && i < 64; i++) {
      ptrace(PTRACE.SYSCALL, pid);
      regs = await nextSyscallStopAsync(t);
    }
    if (!regs) throw new PpmError("cannot restore", await stubError(), "nothing was changed");
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
    const reqAddr = getReg(regs, "rdx");
    const tStub = performance.now();
    ptrace(PTRACE.SYSCALL, pid);
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
      const raw = await readMem(pid, reqAddr, ppmRestore.size).catch(() =>
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
    const tMem = performance.now();
    await fault("restore");

    // The process's own finishing system calls, from the vDSO's syscall instruction.
    const at = await findSyscallInsn(pid, img.mm.vdso, img.mm.vdsoEnd);
    const files = mappedFiles(img);
    const exeFd = mapFd(base, files.findIndex((f) => f.path === img.task.exe));
    inject(t, at, exit, SYS.prctl, [35n, 13n, BigInt(exeFd)]); // PR_SET_MM_EXE_FILE: best effort
    const inj = injector(t, at, exit, getReg(img.cpu.regs, "rsp"), img.vmas);
    await restoreCreds(inj, img.task);
    await requeueSignals(t, at, exit, img);
    inject(t, at, exit, SYS.close_range, [BigInt(base), 0xffffffffn, 0n]);
    await restoreSeccomp(inj, img.task.creds);
    await verifyCreds(pid, img.task);

    const final = new Uint8Array(img.cpu.regs) as Uint8Array<ArrayBuffer>;
    setReg(final, "orig_rax", -1n);
    t.setRegs(final);
    t.setXstate(new Uint8Array(img.cpu.xstate) as Uint8Array<ArrayBuffer>);
    t.setSigmask(img.cpu.sigmask);
    const start = () => {
      // The stub stopped itself with SIGSTOP to wait for us: end that group stop.
      Deno.kill(pid, "SIGCONT");
      t.resume();
      if (img.signals.deliverOnResume) kill(pid, img.signals.deliverOnResume);
    };
    if (!opts.hold) start();
    started = true;
    const tEnd = performance.now();
    return {
      pid,
      start: opts.hold ? start : undefined,
      abort: opts.hold ? () => t.kill() : undefined,
      pages: img.pageCount,
      timesUs: {
        load: us(tLoad - t0),
        check: us(tCheck - tLoad),
        plan: us(tPlan - tCheck),
        stub: us(tStub - tPlan),
        memory: us(tMem - tStub),
        finish: us(tEnd - tMem),
        total: us(tEnd - t0),
      },
    };
  } catch (e) {
    if (!started) t.kill();
    throw e;
  }
}
