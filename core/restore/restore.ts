/**
 * `ppm restore`: image → process. Checks first (PID free, same kernel, CPU
 * features, mapped files unchanged), then starts the stub with the image's
 * PID, attaches with ptrace, lets PPM_IOC_RESTORE rebuild its memory, and at
 * the ioctl's return sets what only the process itself or ptrace can:
 * the exe link, credentials, its own descriptors closed, registers, FPU
 * state and signal mask. Nothing is half-restored: a refusal before the
 * memory is replaced kills the stub, and after it the module kills it.
 *
 * Here: the checks, the plan and its work directory, and the steps in
 * order; the stub's launch is in launch.ts, the ioctl and the finish from
 * inside the process in finish.ts (with core/ptrace/inject.ts).
 *
 * @module
 */
import { close } from "../../ffi/libc.ts";
import { join } from "node:path";
import { EXIT, PpmError } from "../errors.ts";
import { fault } from "../fault.ts";
import { type LoadedImage, loadImage } from "../image/schema.ts";
import { pathSource } from "../host/bytes.ts";
import { checkCompatible } from "./compat.ts";
import { makeFdPaths, removePaths } from "./fd_paths.ts";
import { PlanWriter, stubBase } from "./memory_plan.ts";
import type { StdioTargets } from "./spec.ts";
import { attachStub, launchStub, prepareStub, type StubFiles } from "./launch.ts";
import type { Tracee } from "../ptrace/tracee.ts";
import { ender, finishInTracee, runIoctl, runToIoctl, starter } from "./finish.ts";
import { startTicks } from "../host/proc_stat.ts";
import type { NetworkRecord } from "../image/network.ts";
import {
  checkAddresses,
  checkModule,
  checkPortsHere,
  type DropsRemoved,
  rebuildHere,
  removeDrops,
  withDropsKept,
} from "./network.ts";
import { dropSockets, endRepair, type RebuiltSocket } from "./sockets.ts";
import { bootId } from "../host/boot_id.ts";

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
  /**
   * A migration: its relayed descriptors are made (core/restore/fd_relayed.ts)
   * and the agent's ends returned in `relays`. Without it an image holding
   * any is refused.
   */
  relays?: boolean;
  /**
   * The process comes home into the task that holds its PID (its deputy):
   * instead of a launched stub, this makes that task run the stub
   * (`--into`, core/deputy/home.ts), and resolves once it did; the task
   * is then attached to as a launched stub is.
   */
  into?: (stub: StubFiles) => Promise<void>;
  /**
   * The rooms of the vessel `into` hands over (core/restore/vessel.ts):
   * the mappings inside one are kept with the pages it holds
   * (PPM_VMA_KEEP) instead of made anew.
   */
  keepRooms?: [bigint, bigint][];
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
  /** Of them, those a migration's pre-copy rounds put in place ahead (core/restore/vessel.ts). */
  ahead?: number;
  /** With `relays`: the agent's end of each relayed descriptor, by the process's number. */
  relays?: Map<number, number>;
  /** With `hold`: lets the process run. */
  start?: () => void;
  /** With `hold`: ends the process. */
  abort?: () => void;
  /**
   * An image with sockets (`ppm checkpoint --tcp-established`): how many
   * came back, and what became of the checkpoint's drops (once it runs).
   */
  sockets?: { restored: number; drops?: DropsRemoved };
}

const us = (ms: number) => Math.round(ms * 1000);

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
  if (img.network) return await restoreWithSockets(img, img.network, staged, opts, t0);
  return await restoreImage(img, staged, opts, t0);
}

/**
 * Restores an image whose sockets it carries (NETWORK, `ppm checkpoint
 * --tcp-established`) on this node, where it was taken: the module, the
 * addresses and the ports checked, the sockets rebuilt in repair mode at
 * their own addresses and ports, the process restored held with them at
 * their numbers; then the checkpoint's drops go, repair ends (each
 * connection sends a window probe) and the process runs. A failure before it
 * runs leaves nothing of it here and the drops in place (the error says so),
 * so the restore can be run again.
 */
async function restoreWithSockets(
  img: LoadedImage,
  rec: NetworkRecord,
  staged: StagedPlan,
  opts: RestoreOptions,
  t0: number,
): Promise<RestoreStats> {
  let rebuilt: RebuiltSocket[] = [];
  let r: RestoreStats;
  try {
    // Without the module there are no drops either (its entries keep it loaded).
    checkModule();
  } catch (e) {
    await staged.discard();
    throw e;
  }
  try {
    try {
      checkAddresses(rec.sockets);
      checkPortsHere(rec.sockets);
      rebuilt = rebuildHere(rec);
    } catch (e) {
      await staged.discard();
      throw e;
    }
    r = await restoreImage(img, staged, {
      ...opts,
      hold: true,
      sockets: rebuilt.map((x) => ({ fd: x.fd, copy: x.copy, flags: x.flags })),
    }, t0);
  } catch (e) {
    dropSockets(rebuilt);
    throw withDropsKept(e, rec);
  }
  const sockets: RestoreStats["sockets"] = { restored: rec.sockets.length };
  // The drops go first, so that the window probe each connection sends when its repair ends
  // reaches its peer, as a migration's commit does; repair ends before the process runs (a
  // send in repair mode fails). A table that cannot be read fails the restore with the drops
  // untouched; an entry that cannot be removed only keeps its flow silent.
  const start = () => {
    sockets.drops = removeDrops(rec, bootId());
    if (sockets.drops.failed) {
      opts.log?.(
        `${sockets.drops.failed} drop entries of the checkpoint could not be removed: ` +
          "their connections stay silent until the entries expire (ppm redirects)",
      );
    }
    endRepair(rebuilt);
    r.start!();
    dropSockets(rebuilt);
  };
  const abort = () => {
    r.abort!();
    dropSockets(rebuilt);
  };
  if (opts.hold) return { ...r, start, abort, sockets };
  try {
    start();
  } catch (e) {
    abort();
    throw sockets.drops ? e : withDropsKept(e, rec);
  }
  return { ...r, start: undefined, abort: undefined, sockets };
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
  onBlock?: (block: { start: bigint; count: number }) => void,
  plan?: StagedPlan,
): Promise<{ img: LoadedImage; staged: StagedPlan }> {
  const staged = plan ?? await createStaged();
  try {
    const img = await loadImage(source, (block, vmas) => {
      onBlock?.(block);
      return staged.writer.addRun(block, vmas);
    });
    return { img, staged };
  } catch (e) {
    await staged.discard();
    throw e;
  }
}

/**
 * A new, empty plan in a work directory of its own (a migration's page
 * stream writes into it before the image is read; see loadStaged).
 */
export async function createStaged(): Promise<StagedPlan> {
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
    return { dir, path, file, writer: new PlanWriter(file, path), discard };
  } catch (e) {
    await discard();
    throw e;
  }
}

/**
 * Restores a checked image whose pages were written into `staged` as it was
 * read (see loadStaged); the plan is discarded at the end, whatever happens
 * (with `hold`, once the process is started or ended).
 */
export async function restoreImage(
  img: LoadedImage,
  staged: StagedPlan,
  opts: RestoreOptions = {},
  t0 = performance.now(),
): Promise<RestoreStats> {
  const tLoad = performance.now();
  let r: RestoreStats;
  try {
    r = await restoreStaged(img, staged, opts, t0, tLoad);
  } catch (e) {
    await staged.discard();
    throw e;
  }
  if (!r.start || !r.abort) {
    await staged.discard();
    return r;
  }
  // Held: the plan (as large as the memory) goes once the process runs or is ended, so that
  // freeing it is not part of the freeze.
  const { start, abort } = r;
  return {
    ...r,
    start: () => {
      start();
      void staged.discard();
    },
    abort: () => {
      abort();
      void staged.discard();
    },
  };
}

/** Creates missing stdio targets; never opens existing ones (a FIFO would see EOF). */
async function createTargets(opts: RestoreOptions): Promise<void> {
  for (const target of [opts.stdout, opts.stderr]) {
    if (target && !(await Deno.lstat(target).then(() => true, () => false))) {
      await Deno.writeFile(target, new Uint8Array(), { append: true, create: true });
    }
  }
}

/**
 * The restore's steps: checks, the plan's header and the stub's spec, the
 * stub launched (launch.ts), run to its ioctl, the memory replaced and the
 * process finished from inside (finish.ts), then started or held.
 */
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
    pidHeld: opts.into !== undefined,
  });
  await createTargets(opts);
  const made = await makeFdPaths(img);
  const tCheck = performance.now();

  let t: Tracee;
  let stub: StubFiles;
  let tPlan = performance.now();
  const base = stubBase(img);
  try {
    try {
      await staged.writer.finish(img, base, opts.keepRooms);
    } finally {
      staged.file.close();
    }
    stub = await prepareStub(img, staged.dir, staged.path, base, opts);
    tPlan = performance.now();
    if (opts.into) await opts.into(stub);
    else await launchStub(pid, stub);
    t = await attachStub(pid, stub);
  } catch (e) {
    removePaths(made);
    throw e;
  }
  // From here on, a failure must not leave a half-restored process behind.
  let started = false;
  const relays = opts.relays ? new Map<number, number>() : undefined;
  try {
    const reqAddr = await runToIoctl(t, img, stub);
    const tStub = performance.now();
    const exit = await runIoctl(t, reqAddr);
    const tMem = performance.now();
    await fault("restore");
    const threads = await finishInTracee(t, img, exit, base, relays);
    const start = starter(t, img, threads);
    if (!opts.hold) start();
    started = true;
    const tEnd = performance.now();
    const end = ender(t, threads);
    return {
      pid,
      relays,
      start: opts.hold ? start : undefined,
      abort: opts.hold
        ? () => {
          end();
          removePaths(made);
        }
        : undefined,
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
    for (const fd of relays?.values() ?? []) close(fd);
    if (!started) {
      t.kill();
      removePaths(made);
    }
    throw e;
  }
}
