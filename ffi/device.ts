/**
 * The /dev/ppm character device: open it and issue ioctls with the uapi
 * structures.
 *
 * @module
 */
import { close, ioctl, O, open } from "./libc.ts";
import { decode, type StructValue } from "./struct.ts";
import { PPM_DEVICE_NAME, PPM_IOC, ppmInfo } from "./uapi.ts";

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
