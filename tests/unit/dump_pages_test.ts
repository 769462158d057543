/** dumpPages on a live process of this test: runs match its memory, counts add up, failures end it. */
import { dumpPages, type PageRun } from "../../core/dump/memory.ts";
import { PAGE_SIZE } from "../../ffi/libc.ts";
import { parseMaps } from "../../core/dump/proc.ts";
import { classifyVma, isZeroPage, protOf, type VmaRecord } from "../../core/dump/vma.ts";
import { assert, assertEquals } from "../support/assert.ts";

/** The mappings of `pid` as private mappings (flags are not needed to choose pages here). */
async function vmasOf(pid: number): Promise<VmaRecord[]> {
  const maps = parseMaps(await Deno.readTextFile(`/proc/${pid}/maps`));
  return maps.map((m) => ({
    start: m.start,
    end: m.end,
    prot: protOf(0n),
    vmFlags: 0n,
    pgoff: 0n,
    kind: classifyVma(m, 0n),
    path: m.name.startsWith("/") ? m.name : undefined,
  }));
}

/** Runs `fn` with a sleeping child process, then ends it (by its PID, which we started). */
async function withSleeper(fn: (pid: number) => Promise<void>) {
  const child = new Deno.Command("sleep", { args: ["60"], stdin: "null" }).spawn();
  try {
    await new Promise((r) => setTimeout(r, 100)); // past exec
    await fn(child.pid);
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
}

Deno.test("dumpPages: every run holds the process's bytes at its address; counts add up", async () => {
  await withSleeper(async (pid) => {
    const vmas = await vmasOf(pid);
    const runs: PageRun[] = [];
    const stats = await dumpPages(pid, vmas, (r) => {
      runs.push(r);
    });
    assertEquals(stats.length, vmas.length);
    assert(runs.length > 0, "a live process has pages to carry");
    const mem = await Deno.open(`/proc/${pid}/mem`, { read: true });
    try {
      let last = 0n;
      for (const r of runs) {
        assert(r.start >= last, "runs come in address order");
        assert(r.data.length > 0 && r.data.length % PAGE_SIZE === 0);
        last = r.start + BigInt(r.data.length);
        const v = vmas.find((x) => x.start <= r.start && last <= x.end);
        assert(v, `run at 0x${r.start.toString(16)} lies inside one mapping`);
        for (let i = 0; i < r.data.length; i += PAGE_SIZE) {
          assert(!isZeroPage(r.data.subarray(i, i + PAGE_SIZE)), "no zero page is carried");
        }
        const now = new Uint8Array(r.data.length);
        await mem.seek(r.start, Deno.SeekMode.Start);
        for (let off = 0; off < now.length;) {
          off += (await mem.read(now.subarray(off))) ?? now.length;
        }
        // The stack may change under a sleeping process only below its pointer; compare the rest.
        if (v.kind !== "stack") assertEquals(now, r.data, `run at 0x${r.start.toString(16)}`);
      }
    } finally {
      mem.close();
    }
    const dumped = stats.reduce((n, s) => n + s.dumped, 0);
    assertEquals(dumped * PAGE_SIZE, runs.reduce((n, r) => n + r.data.length, 0));
    vmas.forEach((v, i) => {
      const pages = Number((v.end - v.start) / BigInt(PAGE_SIZE));
      const s = stats[i];
      if (["vdso", "vvar", "vsyscall"].includes(v.kind)) return;
      assertEquals(s.dumped + s.file + s.zero + s.absent, pages, `mapping ${i} (${v.kind})`);
    });
  });
});

Deno.test("dumpPages: a failing emit ends the dump with its error, the read ahead settled", async () => {
  await withSleeper(async (pid) => {
    const vmas = await vmasOf(pid);
    let calls = 0;
    const e = await dumpPages(pid, vmas, () => {
      if (++calls === 2) throw new Error("the sink failed");
    }).then(() => undefined, (e: unknown) => e);
    assertEquals((e as Error | undefined)?.message, "the sink failed");
    assertEquals(calls, 2);
  });
});

Deno.test("dumpPages: a page the process cannot read (PROT_NONE) is carried too", async () => {
  // process_vm_readv stops there; /proc/PID/mem reads it with FOLL_FORCE.
  const script = [
    "import ctypes, mmap, sys, time",
    "m = mmap.mmap(-1, 3 * 4096)",
    "m.write(b'\\xab' * (3 * 4096))",
    "a = ctypes.addressof(ctypes.c_char.from_buffer(m))",
    "libc = ctypes.CDLL(None)",
    "assert libc.mprotect(ctypes.c_void_p(a + 4096), 4096, 0) == 0",
    "print(hex(a), flush=True)",
    "time.sleep(60)",
  ].join("\n");
  const child = new Deno.Command("python3", { args: ["-c", script], stdout: "piped" }).spawn();
  try {
    const reader = child.stdout.getReader();
    const { value } = await reader.read();
    reader.releaseLock();
    const addr = BigInt(new TextDecoder().decode(value).trim());
    const vmas = await vmasOf(child.pid);
    const runs: PageRun[] = [];
    await dumpPages(child.pid, vmas, (r) => {
      runs.push(r);
    });
    for (let i = 0; i < 3; i++) {
      const at = addr + BigInt(i * PAGE_SIZE);
      const run = runs.find((r) => r.start <= at && at < r.start + BigInt(r.data.length));
      assert(run, `page ${i} at 0x${at.toString(16)} is carried`);
      const off = Number(at - run.start);
      assertEquals(
        run.data.subarray(off, off + PAGE_SIZE),
        new Uint8Array(PAGE_SIZE).fill(0xab),
        `page ${i}`,
      );
    }
  } finally {
    child.kill("SIGKILL");
    await child.status;
    await child.stdout.cancel().catch(() => {});
  }
});
