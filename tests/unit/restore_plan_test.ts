/** From an image to the restore plan and the stub's spec; compatibility checks. */
import { decode } from "../../ffi/struct.ts";
import { close, O, open } from "../../ffi/libc.ts";
import {
  PPM_PLAN_MAGIC,
  PPM_RUN,
  PPM_VMA,
  ppmPlanHeader,
  ppmPlanRun,
  ppmPlanVma,
} from "../../ffi/uapi.ts";
import type { LoadedImage } from "../../core/image/schema.ts";
import { missingCpuFeatures } from "../../core/host/cpu.ts";
import { mapFd, PlanWriter, stubBase } from "../../core/restore/memory_plan.ts";
import { stubSpec } from "../../core/restore/spec.ts";
import { checkSpec, hex } from "../support/stub_spec.ts";
import { VM } from "../../core/dump/vma.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

function image(): LoadedImage {
  return {
    task: {
      pid: 4242,
      comm: "prog",
      exe: "/usr/bin/prog",
      cwd: "/srv/work dir",
      umask: 0o22,
      uid: [1000, 1000, 1000, 1000],
      gid: [100, 100, 100, 100],
      groups: [24, 100],
      caps: {},
      rlimits: [{ resource: 7, soft: 1024, hard: 4096 }],
      personality: 0,
      kernel: "6.1.0-56-amd64",
      cpuFlags: ["avx", "avx2", "sse2"],
      xsaveSize: 2696,
      abi: 1,
      createdAt: "2026-11-25T00:00:00Z",
    },
    mm: {
      auxv: [6n, 4096n],
      start_brk: 0x600000n,
      brk: 0x621000n,
      vdso: 0x7fff0000n,
      vdsoEnd: 0x7fff2000n,
    } as unknown as LoadedImage["mm"],
    cpu: { regs: new Uint8Array(216), xstate: new Uint8Array(2696), sigmask: 0n, restart: "none" },
    signals: {
      actions: [{ sig: 10, handler: 0x401000n, flags: 0x4000000n, restorer: 0x401100n, mask: 1n }],
      altstack: { sp: 0n, size: 0n, flags: 2 },
      blocked: 0n,
      pending: 0n,
      sharedPending: 0n,
      deliverOnResume: 0,
      queue: [],
      robustList: 0x7f00001000n,
      robustListLen: 24n,
      clearChildTid: 0x7f00002000n,
      rseq: { addr: 0x7f00003000n, len: 32, sig: 0x53053053 },
    },
    vmas: [
      {
        start: 0x400000n,
        end: 0x402000n,
        prot: 5,
        vmFlags: VM.READ | VM.EXEC,
        pgoff: 0n,
        kind: "file",
        path: "/usr/bin/prog",
      },
      {
        start: 0x600000n,
        end: 0x621000n,
        prot: 3,
        vmFlags: VM.READ | VM.WRITE,
        pgoff: 0n,
        kind: "heap",
      },
      {
        start: 0x7ffe0000n,
        end: 0x7fff0000n,
        prot: 3,
        vmFlags: VM.READ | VM.WRITE | VM.GROWSDOWN,
        pgoff: 0n,
        kind: "stack",
      },
      {
        start: 0x7fff0000n,
        end: 0x7fff2000n,
        prot: 5,
        vmFlags: VM.READ | VM.EXEC,
        pgoff: 0n,
        kind: "vdso",
      },
    ],
    files: {
      fds: [
        { fd: 0, kind: "stdio", path: "pipe:[1]", flags: 0, pos: 0n },
        { fd: 1, kind: "stdio", path: "/dev/pts/0", flags: 1, pos: 0n },
        { fd: 5, kind: "regular", path: "/srv/out.log", flags: 0o2001, pos: 777n },
      ],
      mapped: [],
    },
    pages: [{ start: 0x600000n, count: 2, data: new Uint8Array(8192).fill(7) }],
    end: {},
    pageCount: 2,
    sockets: [],
  };
}

Deno.test("plan: header, mappings (vDSO left to the kernel), runs with their pages", async () => {
  const img = image();
  const path = await Deno.makeTempFile();
  try {
    const f = await Deno.open(path, { write: true });
    const n = await new PlanWriter(f).finish(img, 1000);
    f.close();
    const b = await Deno.readFile(path);
    assertEquals(b.length, n);
    const h = decode(ppmPlanHeader, b);
    assertEquals([h.magic, h.nr_vmas, h.nr_runs, h.brk, h.rseq], [
      PPM_PLAN_MAGIC,
      3,
      1,
      0x621000n,
      0x7f00003000n,
    ]);
    const v0 = decode(ppmPlanVma, b.subarray(ppmPlanHeader.size));
    assertEquals([v0.start, v0.fd, v0.prot], [0x400000n, mapFd(1000, 0), 5]);
    const v2 = decode(ppmPlanVma, b.subarray(ppmPlanHeader.size + 2 * ppmPlanVma.size));
    assertEquals([v2.fd, v2.flags], [-1, 2]); // anonymous, MAP_GROWSDOWN
    const runAt = ppmPlanHeader.size + 3 * ppmPlanVma.size;
    const run = decode(ppmPlanRun, b.subarray(runAt));
    assertEquals([run.start, run.nr_pages], [0x600000n, 2]);
    assertEquals(b.length, runAt + ppmPlanRun.size + 8192);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("plan: runs written as they arrive, header last, give the same bytes as in one go", async () => {
  const img = image();
  img.pages.push({ start: 0x7f0000000000n, count: 1, data: new Uint8Array(4096).fill(9) });
  img.pageCount += 1;
  const dir = await Deno.makeTempDir();
  try {
    const whole = `${dir}/whole`, streamed = `${dir}/streamed`;
    let f = await Deno.open(whole, { write: true, create: true });
    const n = await new PlanWriter(f).finish(img, 1000);
    f.close();
    f = await Deno.open(streamed, { write: true, create: true });
    const w = new PlanWriter(f);
    for (const p of img.pages) await w.addRun(p, img.vmas);
    assertEquals(w.runs, img.pages.length);
    assertEquals(await w.finish({ ...img, pages: [] }, 1000), n);
    f.close();
    assertEquals(await Deno.readFile(streamed), await Deno.readFile(whole));
    // Room left for one mapping count cannot take another.
    f = await Deno.open(`${dir}/short`, { write: true, create: true });
    const short = new PlanWriter(f);
    await short.addRun(img.pages[0], img.vmas.slice(1));
    const e = await short.finish({ ...img, pages: [] }, 1000).then(() => undefined, (x) => x);
    f.close();
    assertMatch(String(e), /left room for 2 mappings, the image has 3/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("plan: runs copied in from another file (pre-copy) give the same bytes as written", async () => {
  const img = image();
  img.pages.push({ start: 0x7f0000000000n, count: 1, data: new Uint8Array(4096).fill(9) });
  img.pageCount += 1;
  const dir = await Deno.makeTempDir();
  try {
    const whole = `${dir}/whole`, copied = `${dir}/copied`, src = `${dir}/src`;
    let f = await Deno.open(whole, { write: true, create: true });
    const n = await new PlanWriter(f).finish(img, 1000);
    f.close();
    // The second run's page sits in another file, behind a page of something else.
    const other = new Uint8Array(8192).fill(7);
    other.set(img.pages[1].data, 4096);
    await Deno.writeFile(src, other);
    const fd = open(src, O.RDONLY | O.CLOEXEC);
    f = await Deno.open(copied, { write: true, create: true });
    try {
      const w = new PlanWriter(f, copied);
      await w.addRun(img.pages[0], img.vmas);
      await w.addRunFrom({ start: img.pages[1].start, count: 1 }, {
        fd,
        parts: [{ offset: 4096, pages: 1 }],
      }, img.vmas);
      assertEquals(w.runs, 2);
      assertEquals(await w.finish({ ...img, pages: [] }, 1000), n);
    } finally {
      f.close();
      close(fd);
    }
    assertEquals(await Deno.readFile(copied), await Deno.readFile(whole));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("plan: a run whose pages lie further on in the plan (PPM_RUN_AT) says where", async () => {
  const img = image();
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/plan`;
    const f = await Deno.open(path, { write: true, create: true });
    try {
      const w = new PlanWriter(f, path);
      await w.addRunAt({ start: 0x7f0000000000n, count: 3 }, 2 ** 40, img.vmas);
      await w.addRun(img.pages[0], img.vmas);
      assertEquals(w.runs, 2);
      await w.finish({ ...img, pages: [] }, 1000);
    } finally {
      f.close();
    }
    const b = await Deno.readFile(path);
    const head = ppmPlanHeader.size + 3 * ppmPlanVma.size;
    const dv = new DataView(b.buffer);
    assertEquals(dv.getUint32(12, true), 2, "nr_runs");
    assertEquals(dv.getBigUint64(head, true), 0x7f0000000000n);
    assertEquals(dv.getUint32(head + 8, true), 3);
    assertEquals(dv.getUint32(head + 12, true), PPM_RUN.AT);
    assertEquals(dv.getBigUint64(head + 16, true), 2n ** 40n);
    // The next run follows it, its pages inline.
    assertEquals(dv.getBigUint64(head + 24, true), img.pages[0].start);
    assertEquals(dv.getUint32(head + 36, true), 0);
    assertEquals(b.length, head + 24 + 16 + img.pages[0].data.length);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("plan: mappings a vessel holds are kept (PPM_VMA_KEEP); a run of zeros carries no pages", async () => {
  const img = image();
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/plan`;
    const f = await Deno.open(path, { write: true, create: true });
    try {
      const w = new PlanWriter(f, path);
      await w.addRunZero({ start: 0x600000n, count: 2 }, img.vmas);
      // One room over everything: only the heap is private anonymous read-write memory, not the
      // stack (it grows down), not the program's file pages.
      await w.finish({ ...img, pages: [] }, 1000, [[0x10000n, 0x7ffffffff000n]]);
    } finally {
      f.close();
    }
    const b = await Deno.readFile(path);
    const dv = new DataView(b.buffer);
    const flags = [0, 1, 2].map((i) =>
      dv.getUint32(ppmPlanHeader.size + i * ppmPlanVma.size + 28, true)
    );
    assertEquals(flags, [0, PPM_VMA.KEEP, PPM_VMA.GROWSDOWN]);
    const head = ppmPlanHeader.size + 3 * ppmPlanVma.size;
    assertEquals(dv.getBigUint64(head, true), 0x600000n);
    assertEquals(dv.getUint32(head + 8, true), 2);
    assertEquals(dv.getUint32(head + 12, true), PPM_RUN.ZERO);
    assertEquals(b.length, head + ppmPlanRun.size);
    // A room that does not hold the heap whole keeps nothing.
    const g = await Deno.open(path, { write: true, truncate: true });
    try {
      await new PlanWriter(g, path).finish({ ...img, pages: [] }, 1000, [[0x600000n, 0x620000n]]);
    } finally {
      g.close();
    }
    const c = new DataView((await Deno.readFile(path)).buffer);
    assertEquals(c.getUint32(ppmPlanHeader.size + ppmPlanVma.size + 28, true), 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("stub spec: fds at their numbers and offsets, stdio redirected, signals, limits", async () => {
  const img = image();
  assertEquals(stubBase(img), 1000);
  const spec = stubSpec(img, {
    pid: 4242,
    base: 1000,
    dev: "/dev/ppm",
    plan: "/p",
    pidOut: "/o",
    stdio: { stdout: "/tmp/out" },
  });
  const r = await checkSpec(spec);
  assertEquals(r.code, 0, r.err);
  const lines = r.out.split("\n");
  const has = (l: string) => assert(lines.includes(l), `${l} not in\n${r.out}`);
  has("pid 4242");
  has("stdio 0 0");
  // fd N FLAGS POS(lo hi) HOW(1: as ppm) pad, then 12 words of identity (none here).
  has(`fd 1 1025 0 0 1 0 ${"0 ".repeat(12)}:${hex("/tmp/out")}`);
  has(`fd 5 1025 777 0 0 0 ${"0 ".repeat(12)}:${hex("/srv/out.log")}`);
  assert(lines.some((l) => l.startsWith(`map ${mapFd(1000, 0)} 0 `)), r.out);
  has(`sigaction 10 0 ${[0x401000, 0, 0x4000000, 0, 0x401100, 0, 1, 0].join(" ")}`);
  has("robust 4096 127 24 0");
  has("vdso 2147418112 0 2147426304 0");
  has("rlimit 7 0 1024 0 4096 0");
  has("groups 24 100");
  // No nice value in the image (an older one): 0, never the agent's own.
  has("nice 0");
});

Deno.test("stub spec: the process's nice value", async () => {
  const img = image();
  img.task.nice = -3;
  const o = { pid: 1, base: 1000, dev: "/dev/ppm", plan: "/p", pidOut: "/o", stdio: {} };
  const r = await checkSpec(stubSpec(img, o));
  assert(r.out.split("\n").includes(`nice ${2 ** 32 - 3}`), r.out);
});

Deno.test("compat: CPU features the image needs and this node lacks", () => {
  assertEquals(missingCpuFeatures(["avx2", "avx512f", "fpu", "sse2"], ["avx2", "sse2"]), [
    "avx512f",
  ]);
  assertEquals(missingCpuFeatures(["hypervisor", "fpu"], []), []);
  assert(missingCpuFeatures(["xsaveopt"], ["xsave"]).includes("xsaveopt"));
});
