/**
 * The paths some descriptors need on this node, made before the stub
 * starts: a file in /dev/shm the image carries (the destination of a
 * migration does not have it) is made where it was, with its contents,
 * owner, mode and modification time, unless the very same contents are
 * there already; a FIFO that is missing is made with its owner and mode.
 * Anything else at those paths is a reason not to restore. What was made
 * is removed again when the restore does not go through.
 *
 * @module
 */
import { EXIT, PpmError } from "../errors.ts";
import { mkfifo } from "../../ffi/libc.ts";
import type { FdEntry, LoadedImage } from "../image/schema.ts";

function lstat(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.lstatSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Whether the file at `path` holds `data` and then zeros up to `size`. */
function sameContents(path: string, data: Uint8Array, size: number): boolean {
  const have = Deno.readFileSync(path);
  if (have.length !== size) return false;
  for (let i = 0; i < have.length; i++) if (have[i] !== (data[i] ?? 0)) return false;
  return true;
}

/** The /dev/shm files and FIFOs of `img` that need a path here (one entry per path). */
function pathEntries(img: LoadedImage): FdEntry[] {
  const seen = new Set<string>();
  return img.files.fds.filter((f) => {
    const needs = (f.kind === "shm" && f.shm) || (f.kind === "fifo" && f.dupOf === undefined);
    if (!needs || seen.has(f.path)) return false;
    seen.add(f.path);
    return true;
  });
}

/** Why the paths of `img`'s /dev/shm files and FIFOs are not usable here (empty: they are). */
export function fdPathReasons(img: LoadedImage): string[] {
  const reasons: string[] = [];
  for (const f of pathEntries(img)) {
    const st = lstat(f.path);
    if (!st) {
      const dir = f.path.slice(0, f.path.lastIndexOf("/")) || "/";
      if (!lstat(dir)?.isDirectory) {
        reasons.push(`fd ${f.fd}: ${dir} (for ${f.path}) is missing here`);
      }
    } else if (f.kind === "fifo") {
      if (!st.isFifo) reasons.push(`fd ${f.fd}: ${f.path} is here, and not a FIFO`);
    } else if (!st.isFile || !sameContents(f.path, f.shm!.data, f.shm!.size)) {
      reasons.push(`fd ${f.fd}: ${f.path} is here already, with other contents than the image's`);
    }
  }
  return reasons;
}

/** Throws naming every /dev/shm file or FIFO path that is in the way here. */
export function checkFdPaths(img: LoadedImage): void {
  const reasons = fdPathReasons(img);
  if (reasons.length) {
    throw new PpmError(
      "cannot restore the image",
      reasons.join("; "),
      "remove what is in the way, or restore on another node",
      EXIT.INCOMPATIBLE,
    );
  }
}

/** Makes the missing /dev/shm files and FIFOs of `img`; returns the paths made. */
export async function makeFdPaths(img: LoadedImage): Promise<string[]> {
  const made: string[] = [];
  try {
    for (const f of pathEntries(img)) {
      if (lstat(f.path)) continue;
      const mode = (f.id?.mode ?? 0o600) & 0o7777;
      if (f.kind === "fifo") {
        mkfifo(f.path, 0o600);
        made.push(f.path);
      } else {
        // O_EXCL: never through a link someone put there meanwhile.
        const file = await Deno.open(f.path, { write: true, createNew: true, mode: 0o600 });
        made.push(f.path);
        try {
          const data = f.shm!.data;
          for (let off = 0; off < data.length;) off += await file.write(data.subarray(off));
          await file.truncate(f.shm!.size);
        } finally {
          file.close();
        }
      }
      if (f.id) Deno.chownSync(f.path, f.id.uid, f.id.gid);
      Deno.chmodSync(f.path, mode);
      if (f.id && f.kind === "shm") {
        Deno.utimeSync(f.path, new Date(), new Date(f.id.mtimeMs));
      }
    }
  } catch (e) {
    removePaths(made);
    throw new PpmError(
      "cannot restore",
      `making the paths of its /dev/shm files and FIFOs failed: ${(e as Error).message}`,
      "nothing was started; what was made is removed",
      EXIT.FAILURE,
      { cause: e },
    );
  }
  return made;
}

/** Removes the paths {@link makeFdPaths} made (a restore that did not go through). */
export function removePaths(paths: string[]): void {
  for (const p of paths) {
    try {
      Deno.removeSync(p);
    } catch { /* gone already */ }
  }
}
