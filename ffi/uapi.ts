/**
 * The /dev/ppm ABI in TypeScript: constants, ioctl numbers and structure
 * layouts mirroring `kmod/uapi/ppm.h`, which is the source of truth. The
 * layout test compiles that header and compares every value here.
 *
 * @module
 */
import { defineStruct } from "./struct.ts";

/** PPM_ABI_VERSION this tool speaks. */
export const PPM_ABI_VERSION = 4;

/** Name of the misc device and of the module. */
export const PPM_DEVICE_NAME = "ppm";

/** Feature bits reported by PPM_IOC_INFO. */
export const PPM_FEAT = {
  INFO: 1n << 0n,
  DUMP: 1n << 1n,
  RESTORE: 1n << 2n,
  REDIRECT: 1n << 3n,
  GRANT: 1n << 4n,
  RUN_AT: 1n << 5n,
  KEEP: 1n << 6n,
} as const;

/**
 * struct ppm_plan_run flags: PPM_RUN_AT, a u64 plan offset of its pages
 * follows the run; PPM_RUN_ZERO, nothing follows, the pages become zeros.
 */
export const PPM_RUN = { AT: 1, ZERO: 2 } as const;

/** The names of the feature bits set in `bits`. */
export function featureNames(bits: bigint): string[] {
  return Object.entries(PPM_FEAT).filter(([, b]) => (bits & b) !== 0n).map(([n]) =>
    n.toLowerCase()
  );
}

/** `struct ppm_info`. */
export const ppmInfo = defineStruct(
  "ppm_info",
  [
    ["abi_version", "u32"],
    ["struct_size", "u32"],
    ["features", "u64"],
    ["version", { cstring: 32 }],
    ["release", { cstring: 65 }],
    ["reserved", { bytes: 7 }],
  ] as const,
);

/** Signals described in `struct ppm_dump_task`. */
export const PPM_NSIG = 64;
/** Words of saved auxv in `struct ppm_dump_task`. */
export const PPM_AUXV_WORDS = 64;
/** Most mappings PPM_IOC_DUMP_VMAS returns. */
export const PPM_MAX_VMAS = 65536;

/** `struct ppm_sigaction`. */
export const ppmSigaction = defineStruct(
  "ppm_sigaction",
  [
    ["handler", "u64"],
    ["flags", "u64"],
    ["restorer", "u64"],
    ["mask", "u64"],
  ] as const,
);

/** The mm fields of `struct ppm_dump_task` and `struct ppm_plan_header`, in order. */
export const MM_FIELDS = [
  "start_code",
  "end_code",
  "start_data",
  "end_data",
  "start_brk",
  "brk",
  "start_stack",
  "arg_start",
  "arg_end",
  "env_start",
  "env_end",
] as const;

/** `struct ppm_dump_task`. */
export const ppmDumpTask = defineStruct(
  "ppm_dump_task",
  [
    ["pid", "i32"],
    ["struct_size", "u32"],
    ["nr_threads", "u32"],
    ["auxv_words", "u32"],
    ...MM_FIELDS.map((f) => [f, "u64"] as const),
    ["vdso", "u64"],
    ["auxv", { bytes: 8 * PPM_AUXV_WORDS }],
    ["sas_ss_sp", "u64"],
    ["sas_ss_size", "u64"],
    ["sas_ss_flags", "u32"],
    ["personality", "u32"],
    ["blocked", "u64"],
    ["pending", "u64"],
    ["shared_pending", "u64"],
    ["action", { bytes: ppmSigaction.size * PPM_NSIG }],
    ["robust_list", "u64"],
    ["robust_list_len", "u64"],
    ["clear_child_tid", "u64"],
    ["rseq", "u64"],
    ["rseq_len", "u32"],
    ["rseq_sig", "u32"],
    ["securebits", "u32"],
    ["dumpable", "u32"],
    ["pdeath_signal", "i32"],
    ["reserved0", "u32"],
    ["reserved", { bytes: 16 }],
  ] as const,
);

/** `struct ppm_vma`. */
export const ppmVma = defineStruct(
  "ppm_vma",
  [
    ["start", "u64"],
    ["end", "u64"],
    ["pgoff", "u64"],
    ["vm_flags", "u64"],
    ["ino", "u64"],
    ["dev", "u32"],
    ["reserved", "u32"],
  ] as const,
);

/** `struct ppm_dump_vmas`. */
export const ppmDumpVmas = defineStruct(
  "ppm_dump_vmas",
  [
    ["pid", "i32"],
    ["count", "u32"],
    ["vmas", "u64"],
  ] as const,
);

/** PPM_PLAN_MAGIC ("PPLN"). */
export const PPM_PLAN_MAGIC = 0x4e4c5050;
/** Most pages in one plan run. */
export const PPM_PLAN_MAX_PAGES = 16384;
/** Most runs in one plan. */
export const PPM_PLAN_MAX_RUNS = 4194304;
/** Plan mapping flags (KEEP: the caller's memory there already, kept with its pages). */
export const PPM_VMA = { SHARED: 1, GROWSDOWN: 2, KEEP: 4 } as const;

/** `struct ppm_plan_header`. */
export const ppmPlanHeader = defineStruct(
  "ppm_plan_header",
  [
    ["magic", "u32"],
    ["abi_version", "u32"],
    ["nr_vmas", "u32"],
    ["nr_runs", "u32"],
    ...MM_FIELDS.map((f) => [f, "u64"] as const),
    ["vdso", "u64"],
    ["auxv", { bytes: 8 * PPM_AUXV_WORDS }],
    ["auxv_words", "u32"],
    ["rseq_sig", "u32"],
    ["rseq", "u64"],
    ["reserved", { bytes: 32 }],
  ] as const,
);

/** `struct ppm_plan_vma`. */
export const ppmPlanVma = defineStruct(
  "ppm_plan_vma",
  [
    ["start", "u64"],
    ["end", "u64"],
    ["pgoff", "u64"],
    ["prot", "u32"],
    ["flags", "u32"],
    ["fd", "i32"],
    ["reserved", "u32"],
  ] as const,
);

/** `struct ppm_plan_run`. */
export const ppmPlanRun = defineStruct(
  "ppm_plan_run",
  [
    ["start", "u64"],
    ["nr_pages", "u32"],
    ["flags", "u32"],
  ] as const,
);

/** `struct ppm_restore`. */
export const ppmRestore = defineStruct(
  "ppm_restore",
  [
    ["plan_fd", "i32"],
    ["flags", "u32"],
    ["failed_at", "u64"],
    ["error", { cstring: 112 }],
  ] as const,
);

/** Redirect actions (`PPM_RDR_*`): what a node does with a migrated flow's packets. */
export const PPM_RDR = {
  /** Old node: drop PEER<->OLD both ways (the freeze; stray packets after). */
  DROP: 1,
  /** A peer in the cluster: out dst OLD->NEW, in src NEW->OLD. */
  PEER: 2,
  /** Old node: in dst OLD->NEW, then routed on to the new node. */
  FORWARD: 3,
  /** New node: out src NEW->OLD (answers to peers outside the cluster). */
  ANSWER: 4,
} as const;

/** PPM_RDR_F_SYN: a TCP drop that holds back only SYNs without ACK (new connections) to OLD. */
export const PPM_RDR_F_SYN = 1;
/** PPM_RDR_F_ALIVE: a TCP connection's drop that answers the peer's keepalive probes. */
export const PPM_RDR_F_ALIVE = 2;
/** PPM_RDR_ST_OPEN: packets flow. */
export const PPM_RDR_ST_OPEN = 0;
/**
 * PPM_RDR_ST_CLOSING: TCP FINs both ways, or a RST with the exact expected
 * sequence number, went through; the entry expires 10 s later.
 */
export const PPM_RDR_ST_CLOSING = 1;
/** Most redirect entries per node. */
export const PPM_RDR_MAX = 4096;
/** Longest idle timeout of an entry, seconds; also the timeout of an entry added with 0. */
export const PPM_RDR_MAX_IDLE = 86400;
/** PPM_RDR_DEL_ALL: remove every entry. */
export const PPM_RDR_DEL_ALL = 1;

/** `struct ppm_redirect`; addresses and ports in network order (raw bytes). */
export const ppmRedirect = defineStruct(
  "ppm_redirect",
  [
    ["id", "u64"],
    ["proto", "u8"],
    ["action", "u8"],
    ["flags", "u16"],
    ["old_addr", { bytes: 4 }],
    ["new_addr", { bytes: 4 }],
    ["peer_addr", { bytes: 4 }],
    ["old_port", { bytes: 2 }],
    ["new_port", { bytes: 2 }],
    ["peer_port", { bytes: 2 }],
    ["reserved0", "u16"],
    ["idle_timeout", "u32"],
    ["state", "u32"],
    ["packets", "u64"],
    ["bytes", "u64"],
    ["age_ms", "u64"],
    ["idle_ms", "u64"],
    ["reserved", { bytes: 16 }],
  ] as const,
);

/** `struct ppm_redirect_del`. */
export const ppmRedirectDel = defineStruct(
  "ppm_redirect_del",
  [
    ["id", "u64"],
    ["flags", "u32"],
    ["removed", "u32"],
  ] as const,
);

/** `struct ppm_redirect_list`. */
export const ppmRedirectList = defineStruct(
  "ppm_redirect_list",
  [
    ["entries", "u64"],
    ["max", "u32"],
    ["count", "u32"],
  ] as const,
);

/** `struct ppm_queue_accept`. */
export const ppmQueueAccept = defineStruct(
  "ppm_queue_accept",
  [
    ["listen_fd", "i32"],
    ["sock_fd", "i32"],
    ["flags", "u32"],
    ["reserved", "u32"],
  ] as const,
);

/** `struct ppm_grant`. */
export const ppmGrant = defineStruct(
  "ppm_grant",
  [
    ["pid", "i32"],
    ["exe_fd", "i32"],
    ["flags", "u32"],
    ["reserved", "u32"],
  ] as const,
);

/** Every uapi structure, for the layout test. */
export const ALL_STRUCTS = [
  ppmInfo,
  ppmSigaction,
  ppmDumpTask,
  ppmVma,
  ppmDumpVmas,
  ppmPlanHeader,
  ppmPlanVma,
  ppmPlanRun,
  ppmRestore,
  ppmRedirect,
  ppmRedirectDel,
  ppmRedirectList,
  ppmQueueAccept,
  ppmGrant,
] as const;

const IOC_NRBITS = 8n, IOC_TYPEBITS = 8n, IOC_SIZEBITS = 14n;
const IOC_NRSHIFT = 0n;
const IOC_TYPESHIFT = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT = IOC_SIZESHIFT + IOC_SIZEBITS;
const IOC_WRITE = 1n, IOC_READ = 2n;

function ioc(dir: bigint, type: number, nr: number, size: number): bigint {
  return (dir << IOC_DIRSHIFT) | (BigInt(type) << IOC_TYPESHIFT) | (BigInt(nr) << IOC_NRSHIFT) |
    (BigInt(size) << IOC_SIZESHIFT);
}

/** `_IO(type, nr)`. */
export const IO = (type: number, nr: number): bigint => ioc(0n, type, nr, 0);
/** `_IOR(type, nr, size)`. */
export const IOR = (type: number, nr: number, size: number): bigint =>
  ioc(IOC_READ, type, nr, size);
/** `_IOW(type, nr, size)`. */
export const IOW = (type: number, nr: number, size: number): bigint =>
  ioc(IOC_WRITE, type, nr, size);
/** `_IOWR(type, nr, size)`. */
export const IOWR = (type: number, nr: number, size: number): bigint =>
  ioc(IOC_READ | IOC_WRITE, type, nr, size);

/** PPM_IOC_MAGIC. */
export const PPM_IOC_MAGIC = 0xb7;

/** ioctl request numbers. */
export const PPM_IOC = {
  INFO: IOR(PPM_IOC_MAGIC, 0x00, ppmInfo.size),
  DUMP_TASK: IOWR(PPM_IOC_MAGIC, 0x01, ppmDumpTask.size),
  DUMP_VMAS: IOWR(PPM_IOC_MAGIC, 0x02, ppmDumpVmas.size),
  RESTORE: IOWR(PPM_IOC_MAGIC, 0x03, ppmRestore.size),
  REDIRECT_ADD: IOWR(PPM_IOC_MAGIC, 0x04, ppmRedirect.size),
  REDIRECT_DEL: IOWR(PPM_IOC_MAGIC, 0x05, ppmRedirectDel.size),
  REDIRECT_LIST: IOWR(PPM_IOC_MAGIC, 0x06, ppmRedirectList.size),
  QUEUE_ACCEPT: IOW(PPM_IOC_MAGIC, 0x07, ppmQueueAccept.size),
  GRANT: IOW(PPM_IOC_MAGIC, 0x08, ppmGrant.size),
  GRANT_TAKE: IO(PPM_IOC_MAGIC, 0x09),
} as const;
