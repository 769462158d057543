/**
 * The /dev/ppm character device: open it and issue ioctls with the uapi
 * structures.
 *
 * @module
 */
import { addressOf, close, ioctl, O, open } from "./libc.ts";
import { decodeRedirect, encodeRedirect, type Redirect, type RedirectEntry } from "./redirect.ts";
import { decode, encode, type StructValue } from "./struct.ts";
import {
  MM_FIELDS,
  PPM_AUXV_WORDS,
  PPM_DEVICE_NAME,
  PPM_IOC,
  PPM_NSIG,
  PPM_RDR_DEL_ALL,
  PPM_RDR_MAX,
  ppmDumpTask,
  ppmDumpVmas,
  ppmGrant,
  ppmInfo,
  ppmQueueAccept,
  ppmRedirect,
  ppmRedirectDel,
  ppmRedirectList,
  ppmSigaction,
  ppmVma,
} from "./uapi.ts";

/** Path of the device node. */
export const DEVICE_PATH = `/dev/${PPM_DEVICE_NAME}`;

/** Decoded `struct ppm_info`. */
export interface PpmInfo {
  /** ABI version of the loaded module. */
  abi: number;
  /** Feature bitmask. */
  features: bigint;
  /** Module version. */
  version: string;
  /** Kernel release the module runs on. */
  release: string;
}

/** An open handle on /dev/ppm; close it with {@link PpmDevice.close}. */
export class PpmDevice {
  private constructor(readonly fd: number) {}

  /** Opens the device; throws ErrnoError (ENOENT when the module is not loaded). */
  static open(path = DEVICE_PATH): PpmDevice {
    return new PpmDevice(open(path, O.RDWR));
  }

  /** PPM_IOC_INFO. */
  info(): PpmInfo {
    const buf = new Uint8Array(ppmInfo.size);
    ioctl(this.fd, PPM_IOC.INFO, buf);
    const v: StructValue<string> = decode(ppmInfo, buf);
    return {
      abi: v.abi_version as number,
      features: v.features as bigint,
      version: v.version as string,
      release: v.release as string,
    };
  }

  /** PPM_IOC_DUMP_TASK: what /proc hides about `pid`, which this thread must have ptrace-stopped. */
  dumpTask(pid: number): DumpedTask {
    const buf = encode(ppmDumpTask, { pid, struct_size: ppmDumpTask.size });
    ioctl(this.fd, PPM_IOC.DUMP_TASK, buf);
    const v = decode(ppmDumpTask, buf);
    const auxvBytes = v.auxv as Uint8Array;
    const auxvDv = new DataView(auxvBytes.buffer, auxvBytes.byteOffset);
    const auxv: bigint[] = [];
    for (let i = 0; i < Math.min(v.auxv_words as number, PPM_AUXV_WORDS); i++) {
      auxv.push(auxvDv.getBigUint64(i * 8, true));
    }
    const act = v.action as Uint8Array;
    const actions: Sigaction[] = [];
    for (let i = 0; i < PPM_NSIG; i++) {
      const a = decode(
        ppmSigaction,
        act.subarray(i * ppmSigaction.size, (i + 1) * ppmSigaction.size),
      );
      actions.push({
        sig: i + 1,
        handler: a.handler as bigint,
        flags: a.flags as bigint,
        restorer: a.restorer as bigint,
        mask: a.mask as bigint,
      });
    }
    const mm: Record<string, bigint> = {};
    for (const k of MM_KEYS) mm[k] = v[k] as bigint;
    const creds = v as Record<string, unknown>;
    return {
      nrThreads: v.nr_threads as number,
      mm,
      vdso: v.vdso as bigint,
      auxv,
      altstack: {
        sp: v.sas_ss_sp as bigint,
        size: v.sas_ss_size as bigint,
        flags: v.sas_ss_flags as number,
      },
      personality: v.personality as number,
      blocked: v.blocked as bigint,
      pending: v.pending as bigint,
      sharedPending: v.shared_pending as bigint,
      actions,
      robustList: v.robust_list as bigint,
      robustListLen: v.robust_list_len as bigint,
      clearChildTid: v.clear_child_tid as bigint,
      rseq: { addr: v.rseq as bigint, len: v.rseq_len as number, sig: v.rseq_sig as number },
      securebits: Number(creds.securebits ?? 0),
      dumpable: Number(creds.dumpable ?? 1),
      pdeathSignal: Number(creds.pdeath_signal ?? 0),
    };
  }

  /** PPM_IOC_DUMP_VMAS: every mapping of `pid` with its exact flags. */
  dumpVmas(pid: number): KernelVma[] {
    for (let room = 256; room <= 65536; room *= 4) {
      const arr = new Uint8Array(room * ppmVma.size);
      const req = encode(ppmDumpVmas, { pid, count: room, vmas: addressOf(arr) });
      ioctl(this.fd, PPM_IOC.DUMP_VMAS, req);
      const n = decode(ppmDumpVmas, req).count as number;
      if (n > room) continue;
      const out: KernelVma[] = [];
      for (let i = 0; i < n; i++) {
        const v = decode(ppmVma, arr.subarray(i * ppmVma.size, (i + 1) * ppmVma.size));
        out.push({
          start: v.start as bigint,
          end: v.end as bigint,
          pgoff: v.pgoff as bigint,
          vmFlags: v.vm_flags as bigint,
          ino: v.ino as bigint,
          dev: v.dev as number,
        });
      }
      return out;
    }
    throw new Error(`process ${pid} has more than 65536 mappings`);
  }

  /**
   * PPM_IOC_REDIRECT_ADD (CAP_NET_ADMIN): adds an entry to this node's
   * redirect table; returns its id. Throws ErrnoError (EEXIST for a
   * duplicate, ENOSPC when the table is full, EINVAL for a bad entry).
   */
  addRedirect(r: Redirect): number {
    const buf = encodeRedirect(r);
    ioctl(this.fd, PPM_IOC.REDIRECT_ADD, buf);
    return Number(decode(ppmRedirect, buf).id);
  }

  /** PPM_IOC_REDIRECT_DEL: removes entry `id`, or every entry with "all"; returns how many. */
  deleteRedirect(id: number | "all"): number {
    const req = encode(ppmRedirectDel, {
      id: id === "all" ? 0n : BigInt(id),
      flags: id === "all" ? PPM_RDR_DEL_ALL : 0,
    });
    ioctl(this.fd, PPM_IOC.REDIRECT_DEL, req);
    return decode(ppmRedirectDel, req).removed as number;
  }

  /** PPM_IOC_REDIRECT_LIST: every entry of this node's table, with its counters. */
  listRedirects(): RedirectEntry[] {
    const arr = new Uint8Array(PPM_RDR_MAX * ppmRedirect.size);
    const req = encode(ppmRedirectList, { entries: addressOf(arr), max: PPM_RDR_MAX });
    ioctl(this.fd, PPM_IOC.REDIRECT_LIST, req);
    const n = Math.min(decode(ppmRedirectList, req).count as number, PPM_RDR_MAX);
    const out: RedirectEntry[] = [];
    for (let i = 0; i < n; i++) {
      out.push(decodeRedirect(arr.subarray(i * ppmRedirect.size, (i + 1) * ppmRedirect.size)));
    }
    return out;
  }

  /**
   * PPM_IOC_QUEUE_ACCEPT (CAP_NET_ADMIN): moves the established connection
   * `sockFd` into the accept queue of listener `listenFd` (both this
   * process's descriptors); `sockFd` is left without a connection.
   */
  queueAccept(listenFd: number, sockFd: number): void {
    ioctl(
      this.fd,
      PPM_IOC.QUEUE_ACCEPT,
      encode(ppmQueueAccept, { listen_fd: listenFd, sock_fd: sockFd }),
    );
  }

  /**
   * PPM_IOC_GRANT: a descriptor holding a grant that task `pid`, while it
   * runs the program open as `exeFd`, may take this process's credentials
   * once (kmod/grant.c); close it to withdraw the grant.
   */
  grant(pid: number, exeFd: number): number {
    return ioctl(this.fd, PPM_IOC.GRANT, encode(ppmGrant, { pid, exe_fd: exeFd }));
  }

  /** Closes the descriptor. */
  close(): void {
    close(this.fd);
  }
}

/** Opens the device, runs `fn`, and closes it again. */
export function withDevice<T>(fn: (dev: PpmDevice) => T, path = DEVICE_PATH): T {
  const dev = PpmDevice.open(path);
  try {
    return fn(dev);
  } finally {
    dev.close();
  }
}

/** The mm fields PPM_IOC_DUMP_TASK reports. */
export const MM_KEYS = MM_FIELDS;

/** One signal's disposition. */
export interface Sigaction {
  /** Signal number. */
  sig: number;
  /** Handler address (0 default, 1 ignore). */
  handler: bigint;
  /** sa_flags. */
  flags: bigint;
  /** sa_restorer. */
  restorer: bigint;
  /** sa_mask. */
  mask: bigint;
}

/** Decoded PPM_IOC_DUMP_TASK. */
export interface DumpedTask {
  /** Threads in the group. */
  nrThreads: number;
  /** mm fields by name. */
  mm: Record<string, bigint>;
  /** vDSO address. */
  vdso: bigint;
  /** Saved auxv words. */
  auxv: bigint[];
  /** Alternate signal stack. */
  altstack: { sp: bigint; size: bigint; flags: number };
  /** Personality. */
  personality: number;
  /** Blocked signals. */
  blocked: bigint;
  /** Thread-pending signals. */
  pending: bigint;
  /** Process-pending signals. */
  sharedPending: bigint;
  /** Dispositions of signals 1..64. */
  actions: Sigaction[];
  /** Robust futex list head. */
  robustList: bigint;
  /** Its length. */
  robustListLen: bigint;
  /** set_tid_address pointer. */
  clearChildTid: bigint;
  /** Registered rseq area. */
  rseq: { addr: bigint; len: number; sig: number };
  /** The task's securebits. */
  securebits: number;
  /** get_dumpable() of its mm: 0, 1 or 2. */
  dumpable: number;
  /** Its parent-death signal (0 none). */
  pdeathSignal: number;
}

/** Decoded `struct ppm_vma`. */
export interface KernelVma {
  /** First address. */
  start: bigint;
  /** Address past the end. */
  end: bigint;
  /** File offset in pages. */
  pgoff: bigint;
  /** VM_* flags. */
  vmFlags: bigint;
  /** Inode of the mapped file. */
  ino: bigint;
  /** Device of the mapped file. */
  dev: number;
}
