/**
 * Whether an image can be restored here, checked before anything is
 * touched: the PID, the kernel (vDSO), CPU features, and the identity of
 * every mapped file. Migration asks the same questions of the destination
 * before the process is frozen.
 *
 * @module
 */
import { sha256File } from "../dump/files.ts";
import { EXIT, PpmError } from "../errors.ts";
import { missingCpuFeatures, parseCpuFlags } from "../host/cpu.ts";
import type { FileId, LoadedImage } from "../image/schema.ts";
import { checkFdPaths } from "./fd_paths.ts";

const WHAT = "cannot restore the image";

/** Throws when `pid` (a thread's TID with `what` "TID") is in use here. */
export async function checkPidFree(pid: number, what = "PID"): Promise<void> {
  let comm: string;
  try {
    comm = (await Deno.readTextFile(`/proc/${pid}/comm`)).trim();
  } catch {
    return;
  }
  throw new PpmError(
    WHAT,
    `${what} ${pid} is taken by another process (${comm})`,
    "end that process, or restore where the PID is free",
    EXIT.BUSY,
  );
}

/** Throws when this node runs another kernel build (the vDSO would differ). */
export function checkKernel(kernel: string): void {
  const here = Deno.osRelease();
  if (kernel !== here) {
    throw new PpmError(
      WHAT,
      `it was taken on kernel ${kernel}, this node runs ${here} (the vDSO would differ)`,
      "restore on a node with the same kernel build",
      EXIT.INCOMPATIBLE,
    );
  }
}

/** Throws when this CPU lacks a feature the process may use. */
export async function checkCpu(flags: string[]): Promise<void> {
  const missing = missingCpuFeatures(
    flags,
    parseCpuFlags(await Deno.readTextFile("/proc/cpuinfo")),
  );
  if (missing.length) {
    throw new PpmError(
      WHAT,
      `this CPU lacks features the process may be using: ${missing.join(", ")}`,
      "restore on a node whose CPU has them",
      EXIT.INCOMPATIBLE,
    );
  }
}

/** Throws when a mapped file is missing here or differs from the checkpoint's. */
export async function checkFiles(
  files: { path: string; size: number; sha256: string }[],
): Promise<void> {
  for (const f of files) {
    let size: number;
    try {
      size = (await Deno.stat(f.path)).size;
    } catch {
      throw new PpmError(
        WHAT,
        `the mapped file ${f.path} does not exist here`,
        "provide the same file",
        EXIT.MISSING,
      );
    }
    if (size !== f.size || (await sha256File(f.path)) !== f.sha256) {
      throw new PpmError(
        WHAT,
        `the mapped file ${f.path} changed since the checkpoint (size or content differ)`,
        "restore where the file is the same as when the image was taken",
        EXIT.INCOMPATIBLE,
      );
    }
  }
}

/** A file the process had open, mapped or as its working directory, as the image saw it. */
export interface ExpectedFile {
  /** Its path (the kernel's d_path: no symlink on the way). */
  path: string;
  /** What it was; without it, only the path is checked. */
  id?: FileId;
  /** How it was opened (size and mtime are compared for read-only regular files). */
  flags?: number;
  /** What it was to the process ("fd 3", "the working directory", "a mapped file"). */
  role: string;
  /** Its content is proven by a hash elsewhere (mapped files): size and mtime are not compared. */
  hashChecked?: boolean;
}

const S_IFMT = 0o170000, S_IFREG = 0o100000;

/**
 * Why `f` is not here as the image saw it: missing, reached through a
 * symlink (someone swapped a component for one), or of another type,
 * owner, mode, size or mtime. Empty when it matches.
 */
export function fileIdReason(f: ExpectedFile): string {
  let real: string;
  try {
    real = Deno.realPathSync(f.path);
  } catch {
    return `${f.role}: ${f.path} does not exist here`;
  }
  if (real !== f.path) return `${f.role}: ${f.path} leads through a symlink here (to ${real})`;
  if (!f.id) return "";
  const st = Deno.statSync(f.path);
  const id = f.id;
  const diff: string[] = [];
  if (((st.mode ?? 0) & S_IFMT) !== (id.mode & S_IFMT)) diff.push("type");
  if (st.uid !== id.uid || st.gid !== id.gid) {
    diff.push(`owner ${st.uid}:${st.gid}, the image's ${id.uid}:${id.gid}`);
  }
  if (((st.mode ?? 0) & 0o7777) !== (id.mode & 0o7777)) {
    diff.push(
      `mode ${((st.mode ?? 0) & 0o7777).toString(8)}, the image's ${
        (id.mode & 0o7777).toString(8)
      }`,
    );
  }
  if (!f.hashChecked && ((f.flags ?? 0) & 3) === 0 && (id.mode & S_IFMT) === S_IFREG) {
    if (st.size !== id.size) diff.push(`size ${st.size}, the image's ${id.size}`);
    else if ((st.mtime?.getTime() ?? 0) !== id.mtimeMs) diff.push("modified since");
  }
  return diff.length ? `${f.role}: ${f.path} differs here: ${diff.join(", ")}` : "";
}

/** The files of `img` the stub opens with the process's rights. */
export function expectedFiles(img: LoadedImage): ExpectedFile[] {
  return [
    { path: img.task.cwd, id: img.task.cwdId, role: "the working directory" },
    // Only files opened by path and there already: kernel objects are made, /dev/shm files and
    // missing FIFOs made from the image (fd_paths.ts).
    ...img.files.fds.filter((f) => f.kind === "regular" || f.kind === "device").map((f) => ({
      path: f.path,
      id: f.id,
      flags: f.flags,
      role: `fd ${f.fd}`,
    })),
    ...img.files.mapped.map((m) => ({
      path: m.path,
      id: m.id,
      role: "a mapped file",
      hashChecked: true,
    })),
  ];
}

/** Throws, naming every file that is not here as the image saw it. */
export function checkFileIds(files: ExpectedFile[]): void {
  const reasons = files.map(fileIdReason).filter(Boolean);
  if (reasons.length) {
    throw new PpmError(
      WHAT,
      reasons.join("; "),
      "restore where the files are the process's own, unchanged",
      EXIT.INCOMPATIBLE,
    );
  }
}

/** Throws a PpmError for the first reason the image cannot be restored here. */
export async function checkCompatible(
  img: LoadedImage,
  opts: { pid: number; xsaveSize: number; filesChecked?: boolean; pidHeld?: boolean },
): Promise<void> {
  // A process coming home takes the PID its deputy holds for it.
  if (!opts.pidHeld) await checkPidFree(opts.pid);
  for (const t of img.threads?.others ?? []) await checkPidFree(t.tid, "TID");
  checkKernel(img.task.kernel);
  await checkCpu(img.task.cpuFlags);
  if (img.cpu.xstate.length !== opts.xsaveSize) {
    throw new PpmError(
      WHAT,
      `the FPU state is ${img.cpu.xstate.length} bytes, this CPU's is ${opts.xsaveSize}`,
      "restore on a node with the same CPU features",
      EXIT.INCOMPATIBLE,
    );
  }
  // A migration's destination checked the mapped files before the freeze.
  if (!opts.filesChecked) await checkFiles(img.files.mapped);
  checkFileIds(expectedFiles(img));
  checkFdPaths(img);
}
