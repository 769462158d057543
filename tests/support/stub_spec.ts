/** The real restore stub reading a spec back (`ppm-restore-stub --check`), for tests. */
import { ensureStub } from "../../core/restore/stub.ts";

/** Runs `ppm-restore-stub --check` on `bytes`: exit code, records (one a line), stderr. */
export async function checkSpec(
  bytes: Uint8Array,
): Promise<{ code: number; out: string; err: string }> {
  const stub = await ensureStub();
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeFile(path, bytes);
    const r = await new Deno.Command(stub, { args: ["--check", path] }).output();
    const dec = new TextDecoder();
    return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
  } finally {
    await Deno.remove(path);
  }
}

/** A name or path as `--check` prints it (hex of its UTF-8 bytes). */
export function hex(s: string): string {
  return [...new TextEncoder().encode(s)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
