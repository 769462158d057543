/**
 * Whether an image can be restored here, checked before anything is
 * touched: the PID, the kernel (vDSO), CPU features, and the identity of
 * every mapped file.
 *
 * @module
 */
import { parseCpuFlags } from "../dump/proc.ts";
import { sha256File } from "../dump/files.ts";
import { EXIT, PpmError } from "../errors.ts";
import type { LoadedImage } from "../image/schema.ts";

/** CPU flags that change which code user space runs or what state it keeps. */
const USER_VISIBLE =
  /^(avx.*|sse.*|ssse3|fma.*|f16c|bmi\d|aes|vaes|pclmulqdq|vpclmulqdq|sha_ni|gfni|xsave.*|popcnt|movbe|adx|rdrand|rdseed|erms|fsrm|amx.*|pku|ospke|lzcnt|abm|cx16)$/;

/** CPU features the image's node had and this one lacks. */
export function missingCpuFeatures(imageFlags: string[], localFlags: string[]): string[] {
  const have = new Set(localFlags);
  return imageFlags.filter((f) => USER_VISIBLE.test(f) && !have.has(f));
}

/** Throws a PpmError for the first reason the image cannot be restored here. */
export async function checkCompatible(
  img: LoadedImage,
  opts: { pid: number; xsaveSize: number },
): Promise<void> {
  const what = "cannot restore the image";
  try {
    const comm = (await Deno.readTextFile(`/proc/${opts.pid}/comm`)).trim();
    throw new PpmError(
      what,
      `PID ${opts.pid} is taken by another process (${comm})`,
      "end that process, or restore where the PID is free",
      EXIT.BUSY,
    );
  } catch (e) {
    if (e instanceof PpmError) throw e;
  }
  const kernel = Deno.osRelease();
  if (img.task.kernel !== kernel) {
    throw new PpmError(
      what,
      `it was taken on kernel ${img.task.kernel}, this node runs ${kernel} (the vDSO would differ)`,
      "restore on a node with the same kernel build",
      EXIT.INCOMPATIBLE,
    );
  }
  const missing = missingCpuFeatures(
    img.task.cpuFlags,
    parseCpuFlags(await Deno.readTextFile("/proc/cpuinfo")),
  );
  if (missing.length) {
    throw new PpmError(
      what,
      `this CPU lacks features the process may be using: ${missing.join(", ")}`,
      "restore on a node whose CPU has them",
      EXIT.INCOMPATIBLE,
    );
  }
  if (img.cpu.xstate.length !== opts.xsaveSize) {
    throw new PpmError(
      what,
      `the FPU state is ${img.cpu.xstate.length} bytes, this CPU's is ${opts.xsaveSize}`,
      "restore on a node with the same CPU features",
      EXIT.INCOMPATIBLE,
    );
  }
  for (const f of img.files.mapped) {
    let size: number;
    try {
      size = (await Deno.stat(f.path)).size;
    } catch {
      throw new PpmError(
        what,
        `the mapped file ${f.path} does not exist here`,
        "provide the same file",
        EXIT.MISSING,
      );
    }
    if (size !== f.size || (await sha256File(f.path)) !== f.sha256) {
      throw new PpmError(
        what,
        `the mapped file ${f.path} changed since the checkpoint (size or content differ)`,
        "restore where the file is the same as when the image was taken",
        EXIT.INCOMPATIBLE,
      );
    }
  }
  for (const fd of img.files.fds) {
    if (fd.kind === "regular") {
      try {
        await Deno.stat(fd.path);
      } catch {
        throw new PpmError(
          what,
          `the open file ${fd.path} (fd ${fd.fd}) does not exist here`,
          "",
          EXIT.MISSING,
        );
      }
    }
  }
}
