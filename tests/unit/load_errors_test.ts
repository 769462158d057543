/** Every way `ppm module load`/`unload` can fail has its own actionable message. */
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { E } from "../../ffi/libc.ts";
import { EXIT } from "../../core/errors.ts";
import {
  explainLoadError,
  explainUnloadError,
  type LoadContext,
} from "../../core/module/load_errors.ts";
import { headersPackage } from "../../core/module/headers.ts";

const ctx: LoadContext = {
  path: "/var/lib/ppm/kmod/6.1.0-56-amd64/ppm.ko",
  kernel: "6.1.0-56-amd64",
  vermagic: "6.1.0-56-amd64 SMP preempt mod_unload modversions ",
  capSysModule: true,
};

Deno.test("load error: no CAP_SYS_MODULE says to run as root", () => {
  const e = explainLoadError(E.EPERM, { ...ctx, capSysModule: false });
  assertMatch(e.why, /CAP_SYS_MODULE/);
  assertMatch(e.fix, /root/);
  assertEquals(e.exitCode, EXIT.PERMISSION);
});

Deno.test("load error: lockdown (EPERM with the capability) explains signing and MOK", () => {
  const e = explainLoadError(E.EPERM, { ...ctx, lockdown: "integrity" });
  assertMatch(e.why, /lockdown: integrity/);
  assertMatch(e.fix, /sign-file/);
  assertMatch(e.fix, /mokutil/);
  assertEquals(e.exitCode, EXIT.INCOMPATIBLE);
});

Deno.test("load error: signature enforcement (EKEYREJECTED, ENOKEY) explains signing", () => {
  for (const errno of [E.EKEYREJECTED, E.ENOKEY]) {
    const e = explainLoadError(errno, ctx);
    assertMatch(e.why, /signature/);
    assertMatch(e.fix, /sign-file/);
  }
});

Deno.test("load error: a module built for another kernel (ENOEXEC) names both releases", () => {
  const e = explainLoadError(E.ENOEXEC, { ...ctx, kernel: "6.12.117+deb12-amd64" });
  assertMatch(e.why, /built for kernel 6\.1\.0-56-amd64, but 6\.12\.117\+deb12-amd64 is running/);
  assertMatch(e.fix, /--build/);
  assertEquals(e.exitCode, EXIT.INCOMPATIBLE);
});

Deno.test("load error: symbol version mismatch (EINVAL) says to rebuild", () => {
  const e = explainLoadError(E.EINVAL, ctx);
  assertMatch(e.why, /symbol versions/);
  assertMatch(e.fix, /rebuild/);
});

Deno.test("load error: a kernel without module support (ENOSYS) points to the virtual cluster", () => {
  const e = explainLoadError(E.ENOSYS, ctx);
  assertMatch(e.why, /without loadable module support/);
  assertMatch(e.fix, /vcluster/);
});

Deno.test("load error: unknown errno still gives the errno name and dmesg", () => {
  const e = explainLoadError(E.EFAULT, ctx);
  assertMatch(e.why, /EFAULT/);
  assertMatch(e.fix, /dmesg/);
});

Deno.test("missing headers name the package per distribution", () => {
  assertEquals(headersPackage("debian", "6.1.0-56-amd64"), "linux-headers-6.1.0-56-amd64");
  assertEquals(headersPackage("rhel", "5.14.0-1.el9.x86_64"), "kernel-devel-5.14.0-1.el9.x86_64");
});

Deno.test("unload error: busy names the holders; EPERM distinguishes capability from policy", () => {
  const busy = explainUnloadError(E.EAGAIN, 2, true);
  assertMatch(busy.why, /in use \(2 open references\)/);
  assertEquals(busy.exitCode, EXIT.BUSY);
  assertEquals(explainUnloadError(E.EPERM, 0, false).exitCode, EXIT.PERMISSION);
  assert(explainUnloadError(E.EPERM, 0, true).why.includes("refuses"));
});
