/**
 * The /dev/ppm ABI in TypeScript: constants, ioctl numbers and structure
 * layouts mirroring `kmod/uapi/ppm.h`, which is the source of truth. The
 * layout test compiles that header and compares every value here.
 *
 * @module
 */
import { defineStruct } from "./struct.ts";

/** PPM_ABI_VERSION this tool speaks. */
export const PPM_ABI_VERSION = 1;

/** Name of the misc device and of the module. */
export const PPM_DEVICE_NAME = "ppm";

/** Feature bits reported by PPM_IOC_INFO. */
export const PPM_FEAT = {
  INFO: 1n << 0n,
  DUMP: 1n << 1n,
  RESTORE: 1n << 2n,
  REDIRECT: 1n << 3n,
} as const;

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

/** Every uapi structure, for the layout test. */
export const ALL_STRUCTS = [ppmInfo] as const;

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
} as const;
