/** The bench's measure of what encryption costs on the memory path. */
import { cipherNote, measureCipher } from "../../bench/lib/cipher.ts";
import { assert, assertMatch } from "../support/assert.ts";

Deno.test("bench cipher: sealed frames open, every rate is measured, the note says the ratio", () => {
  const r = measureCipher(64 << 10, 4, 1);
  for (const k of ["copy", "tagOnly", "seal", "open"] as const) {
    assert(Number.isFinite(r[k]) && r[k] > 0, `${k}: ${r[k]}`);
  }
  assertMatch(
    cipherNote({ ...r, frameBytes: 4 << 20 }),
    /4 MiB frames.*seal \d+ MiB\/s.*costs \d+\.\d\dx/,
  );
});
