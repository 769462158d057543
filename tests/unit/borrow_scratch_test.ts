/** Where a borrowed process's system calls get their scratch memory (core/ptrace/borrow.ts). */
import { BORROW_SCRATCH, scratchSpan } from "../../core/ptrace/borrow.ts";
import { PpmError } from "../../core/errors.ts";
import { assertEquals, assertThrows } from "../support/assert.ts";

const stack = { start: 0x7ffd_0000_0000n, end: 0x7ffd_0002_1000n, perms: "rw-p" };
const heap = { start: 0x5555_0000_0000n, end: 0x5555_0010_0000n, perms: "rw-p" };
const code = { start: 0x5554_0000_0000n, end: 0x5554_0010_0000n, perms: "r-xp" };
const shared = { start: 0x7f00_0000_0000n, end: 0x7f00_0010_0000n, perms: "rw-s" };

Deno.test("borrow scratch: below the red zone when the stack has room, else a private writable mapping", () => {
  const rsp = stack.end - 0x800n;
  assertEquals(scratchSpan(1, rsp, [code, heap, stack]), {
    low: (rsp - 128n - BigInt(BORROW_SCRATCH)) & ~15n,
    top: rsp - 128n,
  });
  // A stack that just grew: its pointer 8 bytes above the start of its mapping.
  const low = stack.start + 8n;
  assertEquals(scratchSpan(1, low, [code, shared, heap, stack]), {
    low: heap.start,
    top: heap.start + BigInt(BORROW_SCRATCH),
  });
  assertThrows(() => scratchSpan(1, low, [code, shared, stack]), PpmError, "no private writable");
});
