/** loadImage: the records checked whole; page blocks kept, or handed to a sink as they arrive. */
import { RECORD } from "../../core/image/format.ts";
import { ImageError } from "../../core/image/errors.ts";
import { loadImage, mmRecord, type PageBlock } from "../../core/image/schema.ts";
import { ImageWriter } from "../../core/image/writer.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

const task = {
  pid: 4242,
  comm: "prog",
  exe: "/usr/bin/prog",
  cwd: "/",
  umask: 0o22,
  uid: [0, 0, 0, 0],
  gid: [0, 0, 0, 0],
  groups: [],
  caps: {},
  rlimits: [],
  personality: 0,
  kernel: "6.1.0-57-amd64",
  cpuFlags: ["sse2"],
  xsaveSize: 576,
  abi: 3,
  createdAt: "2026-12-01T00:00:00Z",
};
const signals = {
  actions: [],
  altstack: { sp: 0n, size: 0n, flags: 2 },
  blocked: 0n,
  pending: 0n,
  sharedPending: 0n,
  deliverOnResume: 0,
  queue: [],
  robustList: 0n,
  robustListLen: 24n,
  clearChildTid: 0n,
  rseq: { addr: 0n, len: 0, sig: 0 },
};
const vmas = [
  { start: 0x400000n, end: 0x402000n, prot: 3, vmFlags: 0n, pgoff: 0n, kind: "heap" },
  { start: 0x7ff000000000n, end: 0x7ff000004000n, prot: 3, vmFlags: 0n, pgoff: 0n, kind: "stack" },
];

/** An image whose PAGES records come before VMAS (`early`) or after it, as ppm writes them. */
async function image(early: boolean, pageAt = 0x400000n): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  const w = new ImageWriter((c) => (chunks.push(c.slice()), Promise.resolve()));
  const pages = async () => {
    await w.writePages(pageAt, new Uint8Array(8192).fill(1));
    await w.writePages(0x7ff000001000n, new Uint8Array(4096).fill(2));
  };
  await w.writeRecord(RECORD.TASK, task);
  if (early) await pages();
  await w.writeRecord(RECORD.MM, mmRecord({ brk: 0x401000n }, [6n, 4096n]));
  await w.writeRecord(RECORD.CPU, {
    regs: new Uint8Array(216),
    xstate: new Uint8Array(576),
    sigmask: 0n,
    restart: "none",
  });
  await w.writeRecord(RECORD.SIGNALS, signals);
  await w.writeRecord(RECORD.VMAS, vmas);
  if (!early) await pages();
  await w.writeRecord(RECORD.FILES, { fds: [], mapped: [] });
  await w.end();
  return chunks;
}

async function* from(chunks: Uint8Array[]) {
  yield* chunks;
}

Deno.test("loadImage: keeps the page blocks without a sink", async () => {
  const img = await loadImage(from(await image(false)));
  assertEquals(img.pages.map((p) => [p.start, p.count]), [[0x400000n, 2], [0x7ff000001000n, 1]]);
  assertEquals(img.pageCount, 3);
  assertEquals(img.vmas.length, 2);
});

Deno.test("loadImage: a sink gets every block with the mappings, whatever the record order", async () => {
  for (const early of [false, true]) {
    const got: [bigint, number, number][] = [];
    const img = await loadImage(from(await image(early)), (b: PageBlock, v) => {
      got.push([b.start, b.count, b.data[0]]);
      assertEquals(v.length, 2);
      return Promise.resolve();
    });
    assertEquals(got, [[0x400000n, 2, 1], [0x7ff000001000n, 1, 2]], `early ${early}`);
    assertEquals(img.pages, [], "the blocks were not kept");
    assertEquals(img.pageCount, 3);
  }
});

Deno.test("loadImage: a block outside every mapping is refused, with or without a sink", async () => {
  for (const sink of [undefined, () => Promise.resolve()]) {
    const e = await loadImage(from(await image(false, 0x500000n)), sink).then(
      () => undefined,
      (x) => x,
    );
    assert(e instanceof ImageError, `not an ImageError: ${e}`);
    assertMatch(e.message, /pages at 500000.*outside every mapping/);
  }
});

Deno.test("loadImage: a sink's failure ends the load with it", async () => {
  const e = await loadImage(from(await image(false)), () => Promise.reject(new Error("disk full")))
    .then(() => undefined, (x) => x);
  assertEquals((e as Error).message, "disk full");
});
