/**
 * The memory a restore lends its injected system calls when a stack pointer
 * has no room below it (core/ptrace/inject.ts `lendSpare`): nothing read
 * when every stack has room; else the heap first, its bytes saved and put
 * back only when used.
 */
import { lendSpare, SPARE_SCRATCH, type SpareCandidate } from "../../core/ptrace/inject.ts";
import { assert, assertEquals } from "../support/assert.ts";

const stack: SpareCandidate = {
  start: 0x7ffd_0000_0000n,
  end: 0x7ffd_0010_0000n,
  prot: 3,
  vmFlags: 0x100n,
  kind: "stack",
};
const vdso = { ...stack, start: 0x7ffe_0000_0000n, end: 0x7ffe_0000_2000n, kind: "vdso" };

Deno.test("lendSpare: nothing lent, nothing read, while every stack has room", async () => {
  // PID 0 has no /proc entry: any read would throw.
  const roomy = stack.start + BigInt(SPARE_SCRATCH) + 4096n;
  assertEquals(await lendSpare(0, [stack, vdso], [roomy, stack.end - 8n]), undefined);
});

Deno.test("lendSpare: a stack with no room borrows the heap's start, written back when used", async () => {
  // This process's own memory stands in for the restored one's.
  const heapBuf = new Uint8Array(2 * SPARE_SCRATCH).fill(0x5a);
  const anonBuf = new Uint8Array(4 * SPARE_SCRATCH).fill(0x33);
  const at = (b: Uint8Array) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));
  const heap = {
    start: at(heapBuf),
    end: at(heapBuf) + BigInt(heapBuf.length),
    prot: 3,
    vmFlags: 0n,
    kind: "heap",
  };
  const anon = {
    ...heap,
    start: at(anonBuf),
    end: at(anonBuf) + BigInt(anonBuf.length),
    kind: "anon",
  };
  const shared = { ...anon, vmFlags: 0x8n, start: 0x10000n, end: 0x900000n };
  // The leader has room, one thread's stack just grew: lent.
  const rsps = [stack.end - 8n, stack.start + 32n];
  const spare = await lendSpare(Deno.pid, [stack, vdso, shared, anon, heap], rsps);
  assert(spare, "nothing lent");
  assertEquals([spare.start, spare.size], [heap.start, SPARE_SCRATCH], "the heap first");
  // Not used: nothing written back.
  heapBuf.fill(1, 0, 16);
  await spare.putBack();
  assertEquals(heapBuf[0], 1);
  heapBuf.fill(0x5a);
  assertEquals(spare.use(), heap.start);
  heapBuf.fill(7, 0, SPARE_SCRATCH);
  await spare.putBack();
  assert(heapBuf.every((b) => b === 0x5a), "the heap's bytes put back");
  // No private writable mapping but the stack: nothing to lend.
  assertEquals(await lendSpare(Deno.pid, [stack, vdso, shared], rsps), undefined);
});
