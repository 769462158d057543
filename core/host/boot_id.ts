/**
 * This boot's id (/proc/sys/kernel/random/boot_id): device and inode
 * numbers, and the redirect entries a checkpoint left, mean something only
 * within one boot of one node.
 *
 * @module
 */

/** This boot's id, "" when the kernel has none to show. */
export function bootId(): string {
  try {
    return Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim();
  } catch {
    return "";
  }
}
