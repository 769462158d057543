/**
 * Loading, unloading and inspecting the ppm module on the running kernel.
 * Loading uses finit_module(2) through FFI, never insmod.
 *
 * @module
 */
import { join } from "node:path";
import { DEVICE_PATH, type PpmInfo, withDevice } from "../../ffi/device.ts";
import { listRedirects } from "../redirect/table.ts";
import { close, deleteModule, ErrnoError, finitModule, O, open } from "../../ffi/libc.ts";
import { featureNames, PPM_ABI_VERSION, PPM_DEVICE_NAME } from "../../ffi/uapi.ts";
import { EXIT, PpmError } from "../errors.ts";
import { exists, moduleDir } from "../paths.ts";
import { buildModule, MODULE_FILE } from "./build.ts";
import { explainLoadError, explainUnloadError } from "./load_errors.ts";

const SYS_MODULE = `/sys/module/${PPM_DEVICE_NAME}`;
const CAP_SYS_MODULE = 16;

/** The state of the module on this kernel. */
export interface ModuleStatus {
  /** Whether the module is loaded. */
  loaded: boolean;
  /** ABI version of the loaded module (null when not loaded). */
  abi: number | null;
  /** ABI version this ppm speaks. */
  toolAbi: number;
  /** Module version (null when not loaded). */
  version: string | null;
  /** Running kernel release. */
  kernel: string;
  /** Feature names, from PPM_IOC_INFO. */
  features: string[];
  /** Whether /dev/ppm exists. */
  device: boolean;
  /** Module reference count (open descriptors of /dev/ppm). */
  useCount: number | null;
  /** The module file that `load` would use, and whether it exists. */
  moduleFile: { path: string; exists: boolean };
}

async function readTrim(path: string): Promise<string | null> {
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch {
    return null;
  }
}

/** Whether this process holds CAP_SYS_MODULE (effective set). */
export async function hasCapSysModule(): Promise<boolean> {
  const status = await readTrim("/proc/self/status");
  const m = status?.match(/^CapEff:\s*([0-9a-f]+)$/m);
  return m ? (BigInt("0x" + m[1]) & (1n << BigInt(CAP_SYS_MODULE))) !== 0n : false;
}

/** Reads the `vermagic=` string embedded in a module file. */
export async function readVermagic(path: string): Promise<string | undefined> {
  const bytes = await Deno.readFile(path);
  const key = new TextEncoder().encode("vermagic=");
  outer: for (let i = 0; i + key.length < bytes.length; i++) {
    for (let j = 0; j < key.length; j++) if (bytes[i + j] !== key[j]) continue outer;
    const end = bytes.indexOf(0, i);
    return new TextDecoder().decode(bytes.subarray(i + key.length, end < 0 ? undefined : end));
  }
  return undefined;
}

/** Where Debian's dkms installs the module of the ppm-dkms package for `kernel`. */
export function dkmsModulePath(kernel: string): string {
  return join("/lib/modules", kernel, "updates", "dkms", MODULE_FILE);
}

/**
 * The module file for the running kernel: `$PPM_MODULE`; else the one ppm
 * built in the state directory (`ppm module build`); else the one DKMS built
 * (the ppm-dkms package); the state directory's path when there is none.
 */
export function defaultModulePath(kernel = Deno.osRelease()): string {
  const env = Deno.env.get("PPM_MODULE");
  if (env) return env;
  const built = join(moduleDir(kernel), MODULE_FILE);
  const isFile = (p: string) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  };
  if (!isFile(built) && isFile(dkmsModulePath(kernel))) return dkmsModulePath(kernel);
  return built;
}

function queryInfo(): PpmInfo | null {
  try {
    return withDevice((d) => d.info());
  } catch {
    return null;
  }
}

/** Reports the module's state. */
export async function moduleStatus(): Promise<ModuleStatus> {
  const kernel = Deno.osRelease();
  const loaded = await exists(SYS_MODULE);
  const refcnt = await readTrim(join(SYS_MODULE, "refcnt"));
  const device = await exists(DEVICE_PATH);
  const info = loaded && device ? queryInfo() : null;
  const path = defaultModulePath(kernel);
  return {
    loaded,
    abi: info?.abi ?? null,
    toolAbi: PPM_ABI_VERSION,
    version: info?.version ?? (loaded ? await readTrim(join(SYS_MODULE, "version")) : null),
    kernel,
    features: info ? featureNames(info.features) : [],
    device,
    useCount: refcnt === null ? null : Number(refcnt),
    moduleFile: { path, exists: await exists(path) },
  };
}

/** Result of {@link loadModule}. */
export interface LoadResult {
  /** True when it was already loaded with the same ABI. */
  alreadyLoaded: boolean;
  /** The module file used (undefined when already loaded). */
  path?: string;
  /** PPM_IOC_INFO after loading. */
  info: PpmInfo;
}

async function waitForDevice(deadlineMs: number): Promise<PpmInfo> {
  const end = Date.now() + deadlineMs;
  for (let i = 0; i < 200 && Date.now() < end; i++) {
    const info = queryInfo();
    if (info) return info;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new PpmError(
    "the ppm module loaded but /dev/ppm did not answer",
    `no working ${DEVICE_PATH} after ${deadlineMs} ms`,
    "check that devtmpfs is mounted on /dev, and dmesg",
    EXIT.FAILURE,
  );
}

function incompatibleLoaded(abi: number | null): PpmError {
  return new PpmError(
    "the ppm module is already loaded, but with another ABI",
    `the module speaks ABI ${abi ?? "unknown"}, this ppm speaks ABI ${PPM_ABI_VERSION}`,
    "unload it with `ppm module unload`, then load this version",
    EXIT.INCOMPATIBLE,
  );
}

/** Loads the module; idempotent when the same ABI is already loaded. */
export async function loadModule(
  opts: { path?: string; build?: boolean } = {},
): Promise<LoadResult> {
  const kernel = Deno.osRelease();
  if (await exists(SYS_MODULE)) {
    const info = await waitForDevice(2000).catch(() => null);
    if (info?.abi === PPM_ABI_VERSION) return { alreadyLoaded: true, info };
    throw incompatibleLoaded(info?.abi ?? null);
  }
  const path = opts.path ?? defaultModulePath(kernel);
  if (!(await exists(path))) {
    if (!opts.build) {
      throw new PpmError(
        "cannot load the ppm module",
        `no module built for kernel ${kernel} at ${path}`,
        "build it with `ppm module build`, or use `ppm module load --build`",
        EXIT.MISSING,
      );
    }
    await buildModule({ kernelRelease: kernel, outDir: opts.path ? undefined : join(path, "..") });
  } else if (opts.build && !opts.path) {
    await buildModule({ kernelRelease: kernel, outDir: join(path, "..") });
  }
  const vermagic = await readVermagic(path);
  const ctx = {
    path,
    kernel,
    vermagic,
    capSysModule: await hasCapSysModule(),
    lockdown: (await readTrim("/sys/kernel/security/lockdown"))?.match(/\[(\w+)\]/)?.[1],
  };
  const builtFor = vermagic?.split(" ")[0];
  if (builtFor && builtFor !== kernel) throw explainLoadError(8, /* ENOEXEC */ ctx);
  let fd: number;
  try {
    fd = open(path, O.RDONLY);
  } catch (e) {
    throw new PpmError(
      "cannot load the ppm module",
      `cannot open ${path}: ${(e as Error).message}`,
    );
  }
  try {
    finitModule(fd);
  } catch (e) {
    if (!(e instanceof ErrnoError)) throw e;
    if (e.code === "EEXIST") {
      const info = await waitForDevice(2000);
      if (info.abi === PPM_ABI_VERSION) return { alreadyLoaded: true, info };
      throw incompatibleLoaded(info.abi);
    }
    throw explainLoadError(e.errno, ctx);
  } finally {
    close(fd);
  }
  return { alreadyLoaded: false, path, info: await waitForDevice(5000) };
}

/**
 * Unloads the module; refuses while redirects are active or /dev/ppm is
 * held open. Returns false when not loaded.
 */
export async function unloadModule(): Promise<boolean> {
  if (!(await exists(SYS_MODULE))) return false;
  let active = 0;
  try {
    active = listRedirects().length;
  } catch { /* no device, or no permission: delete_module will say */ }
  if (active > 0) {
    throw new PpmError(
      "cannot unload the ppm module",
      `${active} redirect${
        active === 1 ? " is" : "s are"
      } active: migrated connections use this node`,
      "wait until they end (ppm redirects), or cut them: ppm redirects --clear",
      EXIT.BUSY,
    );
  }
  const holders = Number(await readTrim(join(SYS_MODULE, "refcnt")) ?? "0");
  const cap = await hasCapSysModule();
  if (holders > 0) throw explainUnloadError(16, /* EBUSY */ holders, cap);
  try {
    deleteModule(PPM_DEVICE_NAME);
  } catch (e) {
    if (!(e instanceof ErrnoError)) throw e;
    if (e.code === "ENOENT") return false;
    const now = Number(await readTrim(join(SYS_MODULE, "refcnt")) ?? "0");
    throw explainUnloadError(e.errno, now, cap);
  }
  return true;
}
