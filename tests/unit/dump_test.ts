/** The checkpoint's pure parts: /proc parsers, page classes, syscall restart, fd classes. */
import { normalizeSyscallRestart } from "../../core/checkpoint/cpu.ts";
import { classifyFd } from "../../core/dump/files.ts";
import {
  parseFdInfo,
  parseLimits,
  parseMaps,
  parseNice,
  parseStatus,
} from "../../core/dump/proc.ts";
import { stayReasons } from "../../core/dump/check.ts";
import { classifyVma, isZeroPage, pageNeeded, PM, protOf, VM } from "../../core/dump/vma.ts";
import { getReg, REGS_SIZE, setReg } from "../../core/ptrace/tracee.ts";
import { assert, assertEquals } from "../support/assert.ts";

const MAPS =
  `55d0c0a00000-55d0c0a01000 r--p 00000000 fe:01 131077                     /usr/bin/sleep
55d0c0a01000-55d0c0a05000 r-xp 00001000 fe:01 131077                     /usr/bin/sleep
55d0c1e4b000-55d0c1e6c000 rw-p 00000000 00:00 0                          [heap]
7f1e3c000000-7f1e3c001000 rw-s 00000000 00:01 2051                       /dev/zero (deleted)
7f1e3c200000-7f1e3c228000 r--p 00000000 fe:01 1573                       /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd8e0f2000-7ffd8e113000 rw-p 00000000 00:00 0                          [stack]
7ffd8e1b6000-7ffd8e1ba000 r--p 00000000 00:00 0                          [vvar]
7ffd8e1ba000-7ffd8e1bc000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
`;

Deno.test("proc: maps lines, pseudo-names and deleted files", () => {
  const m = parseMaps(MAPS);
  assertEquals(m.length, 9);
  assertEquals(m[0].start, 0x55d0c0a00000n);
  assertEquals(m[1].offset, 0x1000n);
  assertEquals(m[2].name, "[heap]");
  assertEquals([m[3].name, m[3].deleted], ["/dev/zero", true]);
  assertEquals(m[8].end, 0xffffffffff601000n);
});

Deno.test("proc: status credentials, fdinfo and limits", () => {
  const st = parseStatus(
    "Name:\tbc\nUmask:\t0027\nState:\tS (sleeping)\nTracerPid:\t0\nUid:\t1000\t1000\t1000\t1000\n" +
      "Gid:\t100\t100\t100\t100\nGroups:\t24 25 100 \nThreads:\t1\nCapEff:\t0000000000000000\n",
  );
  assertEquals([st.name, st.umask, st.uid[1], st.gid[3], st.groups, st.threads], [
    "bc",
    0o27,
    1000,
    100,
    [24, 25, 100],
    1,
  ]);
  assertEquals(parseFdInfo("pos:\t4096\nflags:\t02102001\nmnt_id:\t29\n"), {
    pos: 4096n,
    flags: 0o2102001,
    mntId: 29,
  });
  const lim = parseLimits(
    "Limit                     Soft Limit           Hard Limit           Units     \n" +
      "Max cpu time              unlimited            unlimited            seconds   \n" +
      "Max file size             unlimited            unlimited            bytes     \n" +
      "Max data size             unlimited            unlimited            bytes     \n" +
      "Max stack size            8388608              unlimited            bytes     \n",
  );
  assertEquals(lim[3], { resource: 3, soft: 8388608, hard: -1 });
});

Deno.test("vma: kinds, including shared anonymous memory shown as /dev/zero", () => {
  const m = parseMaps(MAPS);
  const kinds = m.map((e) => classifyVma(e, e.perms[3] === "s" ? VM.MAYSHARE | VM.SHARED : 0n));
  assertEquals(kinds, [
    "file",
    "file",
    "heap",
    "shared-anon",
    "file",
    "stack",
    "vvar",
    "vdso",
    "vsyscall",
  ]);
  assertEquals(protOf(VM.READ | VM.EXEC), 5);
});

Deno.test("optimized total copy: which pages an image carries", () => {
  const file = PM.PRESENT | PM.FILE, anonPage = PM.PRESENT, swapped = PM.SWAPPED;
  // A private file mapping: only copy-on-write (anonymous) pages.
  assertEquals([
    pageNeeded("file", file),
    pageNeeded("file", anonPage),
    pageNeeded("file", swapped),
  ], [false, true, true]);
  // Shared file mappings live in the file; never-touched pages are never carried.
  assertEquals([
    pageNeeded("shared-file", anonPage),
    pageNeeded("anon", 0n),
    pageNeeded("heap", anonPage),
  ], [false, false, true]);
  assertEquals([pageNeeded("vdso", anonPage), pageNeeded("shared-anon", file)], [false, true]);
  // --copy-all: the file's own resident pages too, but never a shared file's or an absent page.
  assertEquals([
    pageNeeded("file", file, true),
    pageNeeded("file", 0n, true),
    pageNeeded("shared-file", file, true),
  ], [true, false, false]);
  assert(isZeroPage(new Uint8Array(4096)));
  const p = new Uint8Array(4096);
  p[4095] = 1;
  assert(!isZeroPage(p));
});

Deno.test("syscall restart is normalised as the kernel does after a signal", () => {
  const regs = (ax: bigint, orig: bigint) => {
    const r = new Uint8Array(REGS_SIZE);
    setReg(r, "rax", ax);
    setReg(r, "orig_rax", orig);
    setReg(r, "rip", 0x1000n);
    return r;
  };
  const r1 = regs(-512n, 0n); // -ERESTARTSYS in read()
  assertEquals(normalizeSyscallRestart(r1), "restart");
  assertEquals([getReg(r1, "rip"), getReg(r1, "rax")], [0xffen, 0n]);
  const r2 = regs(-516n, 35n); // nanosleep's restart block
  assertEquals(normalizeSyscallRestart(r2), "eintr");
  assertEquals(BigInt.asIntN(64, getReg(r2, "rax")), -4n);
  assertEquals(normalizeSyscallRestart(regs(5n, -1n)), "none");
});

Deno.test("files: what can be carried and why not", () => {
  assertEquals(classifyFd(0, "/dev/null", false), "device");
  assertEquals(classifyFd(1, "pipe:[1234]", false), "stdio");
  assertEquals(classifyFd(2, "/dev/pts/3", false), "stdio");
  assertEquals(classifyFd(5, "/home/u/data.txt", true), "regular");
  const r = (x: unknown) => (x as { reason: string }).reason;
  assertEquals(classifyFd(4, "socket:[99]", false), "socket");
  assertEquals(classifyFd(0, "/tmp/in.fifo", false, true), "stdio");
  assertEquals(classifyFd(1, "/run/ppm/in-1-x/stdout (deleted)", false, true), "stdio");
  // Kernel objects: core/dump/fds/ looks closer (both ends of a pipe held, not shared ...).
  assertEquals(classifyFd(5, "/tmp/in.fifo", false, true), "fifo");
  assertEquals(classifyFd(7, "pipe:[5]", false), "pipe");
  assertEquals(classifyFd(8, "anon_inode:[eventfd]", false), "eventfd");
  assertEquals(classifyFd(8, "anon_inode:[timerfd]", false), "timerfd");
  assertEquals(classifyFd(8, "anon_inode:[signalfd]", false), "signalfd");
  assertEquals(classifyFd(8, "anon_inode:[eventpoll]", false), "epoll");
  assertEquals(classifyFd(8, "/memfd:x (deleted) (deleted)", true), "memfd");
  assertEquals(classifyFd(8, "/dev/shm/seg", true), "shm");
  assertEquals(classifyFd(8, "/dev/shm/dir/seg", true), "regular");
  assert(/deleted/.test(r(classifyFd(9, "/tmp/x (deleted)", true))));
  assert(/deleted/.test(r(classifyFd(9, "/dev/shm/x (deleted)", true))));
  assertEquals(
    r(classifyFd(7, "anon_inode:[io_uring]", false)),
    "fd 7: an io_uring instance (anon_inode:[io_uring]) cannot be carried",
  );
  assertEquals(
    r(classifyFd(6, "anon_inode:inotify", false)),
    "fd 6: an inotify instance (anon_inode:inotify) cannot be carried",
  );
  assert(/a pidfd/.test(r(classifyFd(6, "anon_inode:[pidfd]", false))));
  assert(/anonymous kernel object/.test(r(classifyFd(6, "anon_inode:[something]", false))));
  assert(/net:\[4026531840\]/.test(r(classifyFd(6, "net:[4026531840]", false))));
  assert(/not a regular file/.test(r(classifyFd(6, "/dev/sda", false))));
});

Deno.test("stay reasons: threads move, a zombie leader, devices, deleted files", () => {
  const st = parseStatus("Name:\tx\nThreads:\t4\nState:\tS\n");
  const maps = parseMaps(
    "7f0000000000-7f0000001000 rw-s 00000000 00:05 12 /dev/dri/card0\n" +
      "7f0000002000-7f0000003000 r--p 00000000 fe:01 99 /opt/lib.so (deleted)\n",
  );
  const r = stayReasons(st, maps);
  assertEquals(r.length, 2);
  assert(r[0].includes("/dev/dri/card0"));
  assert(r[1].includes("deleted"));
  const zombie = stayReasons(parseStatus("Name:\tx\nThreads:\t4\nState:\tZ (zombie)\n"), []);
  assertEquals(zombie.length, 1);
  assert(zombie[0].includes("main thread has exited"), zombie[0]);
  assertEquals(stayReasons(parseStatus("Name:\tx\nThreads:\t1\nState:\tZ\n"), []), [
    "it is a zombie",
  ]);
});

Deno.test("parseNice: field 19 of /proc/PID/stat, whatever the command name holds", () => {
  const tail = "1 1 1 0 -1 4194560 100 0 0 0 5 3 0 0 25 5 1 0 12345";
  assertEquals(parseNice(`4242 (heap counter) R ${tail}`), 5);
  assertEquals(parseNice(`4242 (a) b) S ${tail.replace(" 25 5 ", " 39 19 ")}`), 19);
  assertEquals(parseNice(`4242 (x) S ${tail.replace(" 25 5 ", " 10 -10 ")}`), -10);
  assertEquals(parseNice("garbage"), 0);
});
