/**
 * Turning the kernel's answer to finit_module(2) into an error the user can
 * act on. Pure, so every branch is tested on any host.
 *
 * @module
 */
import { E, errnoName } from "../../ffi/libc.ts";
import { EXIT, PpmError } from "../errors.ts";

/** What is known about the attempt when the kernel refused it. */
export interface LoadContext {
  /** Path of the module file. */
  path: string;
  /** Running kernel release. */
  kernel: string;
  /** The module's vermagic (first word is the release it was built for). */
  vermagic?: string;
  /** Whether the caller has CAP_SYS_MODULE. */
  capSysModule: boolean;
  /** /sys/kernel/security/lockdown selection ("none", "integrity", ...), if known. */
  lockdown?: string;
  /** Whether the kernel enforces module signatures (module.sig_enforce). */
  sigEnforce?: boolean;
}

const SIGN_HOWTO = "sign the module: /usr/src/linux-headers-$(uname -r)/scripts/sign-file sha256 " +
  "MOK.priv MOK.der ppm.ko, and enroll the key with `mokutil --import MOK.der` (then reboot), " +
  "or disable Secure Boot";

/** Explains a finit_module failure with `errno`. */
export function explainLoadError(errno: number, ctx: LoadContext): PpmError {
  const what = "cannot load the ppm module";
  const builtFor = ctx.vermagic?.split(" ")[0];
  const rebuild = "rebuild it for this kernel: `ppm module load --build` (or `ppm module build`)";
  switch (errno) {
    case E.EPERM:
      if (!ctx.capSysModule) {
        return new PpmError(
          what,
          "loading kernel modules needs CAP_SYS_MODULE, which this process does not have",
          "run it as root (sudo ppm module load)",
          EXIT.PERMISSION,
        );
      }
      return new PpmError(
        what,
        `the kernel refuses unsigned modules (lockdown: ${
          ctx.lockdown ?? "active"
        }; Secure Boot is on)`,
        SIGN_HOWTO,
        EXIT.INCOMPATIBLE,
      );
    case E.EKEYREJECTED:
    case E.ENOKEY:
    case E.EBADMSG:
      return new PpmError(
        what,
        `the kernel enforces module signatures and rejected ${ctx.path} (${errnoName(errno)})`,
        SIGN_HOWTO,
        EXIT.INCOMPATIBLE,
      );
    case E.ENOEXEC:
      return new PpmError(
        what,
        builtFor && builtFor !== ctx.kernel
          ? `${ctx.path} was built for kernel ${builtFor}, but ${ctx.kernel} is running`
          : `the kernel rejected ${ctx.path} as not a module for ${ctx.kernel} (ENOEXEC: wrong version magic or format)`,
        rebuild,
        EXIT.INCOMPATIBLE,
      );
    case E.EINVAL:
      return new PpmError(
        what,
        `the kernel rejected ${ctx.path}: symbol versions or parameters do not match ${ctx.kernel} (EINVAL; see dmesg)`,
        rebuild,
        EXIT.INCOMPATIBLE,
      );
    case E.ENOSYS:
      return new PpmError(
        what,
        `kernel ${ctx.kernel} was built without loadable module support`,
        "run ppm on a kernel with modules (Debian's kernels have them); to try it here: ppm vcluster up",
        EXIT.INCOMPATIBLE,
      );
    case E.EEXIST:
      return new PpmError(
        what,
        "a module named ppm is already loaded",
        "check it with `ppm module status`; unload it first with `ppm module unload`",
        EXIT.BUSY,
      );
    case E.ENOMEM:
      return new PpmError(
        what,
        "the kernel is out of memory",
        "free memory and retry",
        EXIT.FAILURE,
      );
    default:
      return new PpmError(
        what,
        `finit_module failed with ${errnoName(errno)}`,
        "see the kernel log (dmesg) for the reason",
        EXIT.FAILURE,
      );
  }
}

/** Explains a delete_module failure with `errno`. */
export function explainUnloadError(
  errno: number,
  holders: number,
  capSysModule: boolean,
): PpmError {
  const what = "cannot unload the ppm module";
  switch (errno) {
    case E.EAGAIN:
    case E.EBUSY:
      return new PpmError(
        what,
        `/dev/ppm is in use (${holders} open reference${holders === 1 ? "" : "s"})`,
        "stop the programs using it (fuser -v /dev/ppm) and retry",
        EXIT.BUSY,
      );
    case E.EPERM:
      return capSysModule
        ? new PpmError(
          what,
          "the kernel refuses to unload it (module unloading disabled or lockdown)",
          "",
          EXIT.INCOMPATIBLE,
        )
        : new PpmError(what, "unloading needs CAP_SYS_MODULE", "run it as root", EXIT.PERMISSION);
    case E.ENOENT:
      return new PpmError(what, "it is not loaded", "", EXIT.MISSING);
    default:
      return new PpmError(
        what,
        `delete_module failed with ${errnoName(errno)}`,
        "see dmesg",
        EXIT.FAILURE,
      );
  }
}
