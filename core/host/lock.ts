/**
 * Host-wide exclusive locks (flock on a lock file), so that two ppm
 * processes that prepare the same thing at once (installing packages,
 * building the module, the stub, a guest image, test programs) take turns
 * instead of writing the same files together. The second one waits, then
 * finds the work done.
 *
 * @module
 */

let dir: string | undefined;

/** Where the lock files go: /run/lock when it is writable, else the system's temp dir (found once). */
function lockDir(): string {
  return dir ??= findLockDir();
}

function findLockDir(): string {
  try {
    Deno.statSync("/run/lock");
    Deno.openSync("/run/lock/.ppm-probe", { write: true, create: true }).close();
    return "/run/lock";
  } catch {
    return Deno.env.get("TMPDIR") || "/tmp";
  }
}

/** The lock file of lock `name` (a plain word; anything else is refused). */
export function hostLockPath(name: string): string {
  if (!/^[A-Za-z0-9._+-]{1,100}$/.test(name)) throw new Error(`bad lock name ${name}`);
  return `${lockDir()}/ppm-${name}.lock`;
}

/**
 * Runs `fn` while this process holds the exclusive lock `name` (a plain
 * word: "apt", "module-6.1.0-57-amd64"); other processes asking for the
 * same lock wait until `fn` settles. Not reentrant: `fn` must not ask for
 * the same lock again.
 */
export async function withHostLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const file = await Deno.open(hostLockPath(name), {
    read: true,
    write: true,
    create: true,
  });
  try {
    await file.lock(true);
    return await fn();
  } finally {
    file.close();
  }
}
