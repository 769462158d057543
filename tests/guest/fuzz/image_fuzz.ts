/**
 * Runs in a guest: damages a valid image in `cases` ways and restores each
 * in this process. Every case must end in a PpmError (a message for the
 * user), never another exception, and leave no process behind. Some
 * mutations keep the checksums valid (the records are re-encoded) so the
 * damage reaches the schema, compatibility and module checks.
 *
 *   deno run -A image_fuzz.ts IMAGE CASES SEED  -> prints a JSON summary
 *
 * Also: `make_plan.ts` writes a restore plan for plan_fuzz.c.
 *
 * @module
 */
import { PpmError } from "../../../core/errors.ts";
import { RECORD } from "../../../core/image/format.ts";
import { pathSource } from "../../../core/host/bytes.ts";
import { readImage } from "../../../core/image/reader.ts";
import { ImageWriter } from "../../../core/image/writer.ts";
import { restore } from "../../../core/restore/restore.ts";

const [path, casesArg, seedArg] = Deno.args;
const cases = Number(casesArg ?? 1000);
let rng = Number(seedArg ?? 1) >>> 0 || 1;
const rnd = (n: number) => {
  rng ^= rng << 13;
  rng >>>= 0;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  rng >>>= 0;
  return rng % n;
};

const original = await Deno.readFile(path);
type Rec = { type: number; value?: unknown; start?: bigint; data?: Uint8Array };
const records: Rec[] = [];
for await (const r of readImage(pathSource(path))) {
  if (r.kind === "record") records.push({ type: r.type, value: r.value });
  else if (r.kind === "pages") {
    records.push({ type: RECORD.PAGES, start: r.start, data: r.data.slice() });
  }
}

async function encodeImage(recs: Rec[]): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const w = new ImageWriter((c) => {
    chunks.push(c.slice());
    return Promise.resolve();
  });
  for (const r of recs) {
    if (r.type === RECORD.PAGES) await w.writePages(r.start!, r.data!);
    else await w.writeAnyRecord(r.type, r.value);
  }
  await w.end();
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

const NASTY = [0n, 1n, 0xfffn, 1n << 47n, (1n << 64n) - 1n, 0x7ffffffff000n, 1n << 40n];
const nasty = () => NASTY[rnd(NASTY.length)];

/** A copy of the records with one value changed so that it is wrong but well-formed. */
function semantic(): Rec[] {
  const recs = structuredClone(records) as Rec[];
  const pick = (t: number) => recs.find((r) => r.type === t)!;
  switch (rnd(8)) {
    case 0: { // a mapping's range
      const vmas = pick(RECORD.VMAS).value as Record<string, unknown>[];
      const v = vmas[rnd(vmas.length)];
      v[rnd(2) ? "start" : "end"] = nasty();
      break;
    }
    case 1: { // pages outside every mapping
      const p = recs.find((r) => r.type === RECORD.PAGES);
      if (p) p.start = nasty() & ~0xfffn;
      break;
    }
    case 2: { // a mapped file that differs
      const files = pick(RECORD.FILES).value as { mapped: Record<string, unknown>[] };
      if (files.mapped.length) files.mapped[rnd(files.mapped.length)].sha256 = "0".repeat(64);
      break;
    }
    case 3: { // mm fields
      const mm = pick(RECORD.MM).value as Record<string, unknown>;
      const keys = Object.keys(mm).filter((k) => k !== "auxv");
      mm[keys[rnd(keys.length)]] = nasty();
      break;
    }
    case 4: { // registers of the wrong size
      const cpu = pick(RECORD.CPU).value as Record<string, unknown>;
      cpu[rnd(2) ? "regs" : "xstate"] = new Uint8Array(rnd(20000));
      break;
    }
    case 5: { // a record missing or duplicated
      const i = rnd(recs.length);
      if (rnd(2)) recs.splice(i, 1);
      else recs.splice(i, 0, recs[i]);
      break;
    }
    case 6: { // wrong types
      const r = recs[rnd(recs.length)];
      if (r.type !== RECORD.PAGES) r.value = rnd(2) ? "nonsense" : [1, 2, 3];
      break;
    }
    default: { // the kernel, CPU flags or PID
      const task = pick(RECORD.TASK).value as Record<string, unknown>;
      const k = rnd(3);
      if (k === 0) task.kernel = "5.10.0-99-amd64";
      else if (k === 1) task.cpuFlags = ["avx512f", "amx_tile"];
      else task.pid = [1, 0, -5, 4194305][rnd(4)];
    }
  }
  return recs;
}

function raw(): Uint8Array {
  const b = original.slice();
  switch (rnd(4)) {
    case 0:
      return b.slice(0, rnd(b.length));
    case 1:
      for (let i = 1 + rnd(6); i > 0; i--) b[rnd(b.length)] ^= 1 + rnd(255);
      return b;
    case 2: { // absurd length in some record header
      const off = 16 + rnd(Math.max(1, b.length - 32));
      new DataView(b.buffer).setUint32(off, 0xfffffff0, true);
      return b;
    }
    default:
      return new Uint8Array([...b, ...new Uint8Array(1 + rnd(64)).map(() => rnd(256))]);
  }
}

const tally: Record<string, number> = {};
let restored = 0, other = 0;
const file = await Deno.makeTempFile({ prefix: "ppm-fuzz-" });
for (let c = 0; c < cases; c++) {
  const img = c % 3 === 0 ? await encodeImage(semantic()) : raw();
  await Deno.writeFile(file, img);
  try {
    const r = await restore(file, { stdout: "/dev/null", stderr: "/dev/null" });
    restored++;
    try {
      Deno.kill(r.pid, "SIGKILL");
    } catch { /* gone */ }
  } catch (e) {
    if (e instanceof PpmError) {
      const key = e.what.replace(/\d+/g, "N").slice(0, 60);
      tally[key] = (tally[key] ?? 0) + 1;
    } else {
      other++;
      console.error(`case ${c}: not a PpmError: ${(e as Error)?.stack ?? e}`);
    }
  }
}
await Deno.remove(file);
console.log(JSON.stringify({ cases, restored, other, errors: tally }));
