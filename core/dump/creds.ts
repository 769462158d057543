/**
 * A process's credentials beyond its ids, read while it is frozen: the
 * capability sets, securebits, no_new_privs, seccomp filters (through
 * ptrace), the dumpable flag and the parent-death signal. A restore gives
 * back exactly these: never more than the process had, never less.
 *
 * @module
 */
import type { DumpedTask } from "../../ffi/device.ts";
import { ErrnoError, PTRACE, ptraceBuf } from "../../ffi/libc.ts";
import type { CredsRecord } from "../image/schema.ts";
import type { ProcStatus } from "./proc.ts";
import { bootId } from "../host/boot_id.ts";

/** CAP_SYS_ADMIN's bit. */
export const CAP_SYS_ADMIN = 21;

/** Most seccomp filters read from one process. */
const MAX_FILTERS = 512;
/** BPF_MAXINSNS. */
const MAX_INSNS = 4096;

/** A /proc/PID/status capability mask as a bigint. */
export function capMask(hex: string): bigint {
  return /^[0-9a-f]{1,16}$/i.test(hex) ? BigInt(`0x${hex}`) : 0n;
}

/**
 * Why the credentials of a process with `status` cannot be restored
 * exactly (empty: they can).
 */
export function credReasons(status: ProcStatus): string[] {
  if (status.seccomp === 1) {
    return ["it runs in strict seccomp mode (only read, write, exit and sigreturn are allowed)"];
  }
  const sysAdmin = (capMask(status.caps.eff) >> BigInt(CAP_SYS_ADMIN)) & 1n;
  if (status.seccomp === 2 && !status.noNewPrivs && !sysAdmin) {
    return [
      "it has seccomp filters but neither no_new_privs nor CAP_SYS_ADMIN, so they cannot be installed again",
    ];
  }
  return [];
}

/** The seccomp filters of the stopped tracee `pid`, oldest first, with their flags. */
export function readSeccompFilters(pid: number): { flags: number; prog: Uint8Array }[] {
  const newestFirst: { flags: number; prog: Uint8Array }[] = [];
  for (let i = 0; i < MAX_FILTERS; i++) {
    const prog = new Uint8Array(8 * MAX_INSNS);
    let n: number;
    try {
      n = Number(ptraceBuf(PTRACE.SECCOMP_GET_FILTER, pid, BigInt(i), prog));
    } catch (e) {
      if (e instanceof ErrnoError && e.code === "ENOENT") break;
      throw e;
    }
    const meta = new Uint8Array(16);
    new DataView(meta.buffer).setBigUint64(0, BigInt(i), true);
    ptraceBuf(PTRACE.SECCOMP_GET_METADATA, pid, 16n, meta);
    const flags = Number(new DataView(meta.buffer).getBigUint64(8, true));
    newestFirst.push({ flags, prog: prog.slice(0, n * 8) });
  }
  return newestFirst.reverse();
}

/** The credentials of the frozen `pid`, from its status, the module's dump and ptrace. */
export function dumpCreds(pid: number, status: ProcStatus, task: DumpedTask): CredsRecord {
  const c = status.caps;
  // "" without a procfs entry: inode numbers are then never compared.
  const boot = bootId();
  return {
    caps: {
      inh: capMask(c.inh),
      prm: capMask(c.prm),
      eff: capMask(c.eff),
      bnd: capMask(c.bnd),
      amb: capMask(c.amb),
    },
    securebits: task.securebits,
    noNewPrivs: status.noNewPrivs,
    dumpable: task.dumpable,
    pdeathSig: task.pdeathSignal,
    seccomp: {
      mode: status.seccomp,
      filters: status.seccomp === 2 ? readSeccompFilters(pid) : [],
    },
    bootId: boot,
  };
}
