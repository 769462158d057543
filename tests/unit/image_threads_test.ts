/** The THREADS record: a valid one round-trips; hostile values get an error naming the field. */
import { checkThreads } from "../../core/image/threads.ts";
import { ImageError } from "../../core/image/errors.ts";
import { applyRseqAbort, parseAffinity, parseSched } from "../../core/dump/threads.ts";
import { getReg, REGS_SIZE, setReg } from "../../core/ptrace/tracee.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

const XS = 576;

function thread(tid: number, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    tid,
    comm: "worker-1",
    policy: 3,
    priority: 0,
    nice: 5,
    affinity: new Uint8Array([3, 0, 0, 0, 0, 0, 0, 0]),
    regs: new Uint8Array(216),
    xstate: new Uint8Array(XS),
    sigmask: 1n << 9n,
    restart: "restart",
    queue: [new Uint8Array(128)],
    deliverOnResume: 0,
    altstack: { sp: 0x7f0000000000n, size: 65536n, flags: 0 },
    robustList: 0x7f0000001000n,
    robustListLen: 24n,
    clearChildTid: 0x7f0000001010n,
    rseq: { addr: 0x7f0000002000n, len: 32, sig: 0x53053053 },
    ...over,
  };
}

const leader = {
  policy: 0,
  priority: 0,
  nice: 0,
  affinity: new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]),
};

function refused(v: unknown, pattern: RegExp): void {
  try {
    checkThreads(v, 100, XS);
  } catch (e) {
    assert(e instanceof ImageError, `not an ImageError: ${e}`);
    assertMatch(`${e.what}: ${e.why}`, pattern);
    return;
  }
  throw new Error(`accepted: ${pattern}`);
}

Deno.test("THREADS: a valid record is returned whole", () => {
  const r = checkThreads({ leader, others: [thread(101), thread(102)] }, 100, XS);
  assertEquals(r.others.map((t) => t.tid), [101, 102]);
  assertEquals(r.others[0].policy, 3);
  assertEquals(r.others[0].queue.length, 1);
  assertEquals(r.leader.affinity[0], 1);
});

Deno.test("THREADS: hostile values are refused with the field named", () => {
  const with1 = (over: Record<string, unknown>) => ({ leader, others: [thread(101, over)] });
  refused(null, /THREADS/);
  refused({ leader, others: "x" }, /THREADS.others/);
  refused({ leader: 5, others: [] }, /THREADS.leader/);
  refused({ leader, others: [thread(100)] }, /TID 100/);
  refused({ leader, others: [thread(101), thread(101)] }, /TID 101 appears twice/);
  refused(with1({ tid: 0 }), /tid/);
  refused(with1({ tid: 2 ** 40 }), /tid/);
  refused(with1({ tid: -5 }), /tid/);
  refused(with1({ tid: NaN }), /tid/);
  refused(with1({ comm: "a".repeat(16) }), /comm/);
  refused(with1({ comm: "a\0b" }), /comm/);
  refused(with1({ policy: 4 }), /policy 4/);
  refused(with1({ policy: 6 }), /policy/);
  refused(with1({ policy: 1, priority: 0 }), /priority 0 does not fit policy 1/);
  refused(with1({ policy: 0, priority: 50 }), /priority 50/);
  refused(with1({ policy: 2, priority: 100 }), /priority/);
  refused(with1({ nice: 20 }), /nice/);
  refused(with1({ nice: -21 }), /nice/);
  refused(with1({ affinity: new Uint8Array(0) }), /affinity/);
  refused(with1({ affinity: new Uint8Array(4096) }), /affinity/);
  refused(with1({ regs: new Uint8Array(215) }), /regs/);
  refused(with1({ xstate: new Uint8Array(XS + 64) }), /xstate/);
  refused(with1({ queue: [new Uint8Array(127)] }), /queue\[0\]/);
  refused(with1({ queue: Array(5000).fill(new Uint8Array(128)) }), /queue/);
  refused(with1({ deliverOnResume: 65 }), /deliverOnResume/);
  refused(with1({ altstack: { sp: 1n << 60n, size: 0n, flags: 0 } }), /altstack/);
  refused(with1({ robustList: 1n << 48n }), /robustList/);
  refused(with1({ robustListLen: 1n << 40n }), /robustListLen/);
  refused(with1({ clearChildTid: -1n }), /clearChildTid/);
  refused(with1({ rseq: { addr: 1n << 50n, len: 32, sig: 0 } }), /rseq/);
  refused(with1({ rseq: null }), /rseq/);
  refused(with1({ sigmask: "all" }), /sigmask/);
  refused({ leader, others: Array(4096).fill(0).map((_, i) => thread(200 + i)) }, /others/);
  // A prototype key is data: it neither passes as a field nor breaks the check.
  const proto = JSON.parse('{"__proto__": {"tid": 7}}');
  refused({ leader, others: [proto] }, /THREADS.others\[0\]/);
});

Deno.test("dump threads: scheduling from stat, affinity from status, rseq abort fix-up", () => {
  // 52 fields; policy 3 (SCHED_BATCH), rt priority 0, nice 5; a name with spaces and parens.
  const fields = Array(52).fill("0");
  fields[0] = "101";
  fields[1] = "(a (b) c)";
  fields[2] = "S";
  fields[18] = "5";
  fields[19] = "5";
  fields[39] = "0";
  fields[40] = "3";
  assertEquals(parseSched(fields.join(" ")), { policy: 3, priority: 0, nice: 5 });
  const aff = parseAffinity("Name:\tx\nCpus_allowed:\t1,00000003\nCpus_allowed_list:\t0-1,32\n");
  assertEquals([...aff], [3, 0, 0, 0, 1, 0, 0, 0]);
  assertEquals(parseAffinity("Cpus_allowed:\tff\n").length, 8);

  const regs = new Uint8Array(REGS_SIZE);
  const cs = { version: 0, startIp: 0x1000n, postCommitOffset: 0x20n, abortIp: 0x2000n };
  setReg(regs, "rip", 0x1010n);
  assert(applyRseqAbort(regs, cs));
  assertEquals(getReg(regs, "rip"), 0x2000n);
  setReg(regs, "rip", 0x1020n); // at the commit: past the section
  assert(!applyRseqAbort(regs, cs));
  setReg(regs, "rip", 0xfffn);
  assert(!applyRseqAbort(regs, cs));
  setReg(regs, "rip", 0x1010n);
  assert(!applyRseqAbort(regs, { ...cs, version: 1 }));
});
