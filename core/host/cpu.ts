/**
 * This node's CPU as a process sees it: the flags of /proc/cpuinfo, and
 * which of another node's flags it lacks. Pure. The dump records the
 * flags, the restore and the destination of a migration compare them,
 * discovery announces them.
 *
 * @module
 */

/** CPU flags from /proc/cpuinfo (first processor). */
export function parseCpuFlags(text: string): string[] {
  return (text.match(/^flags\s*:\s*(.*)$/m)?.[1] ?? "").split(/\s+/).filter(Boolean).sort();
}

/** CPU flags that change which code user space runs or what state it keeps. */
const USER_VISIBLE =
  /^(avx.*|sse.*|ssse3|fma.*|f16c|bmi\d|aes|vaes|pclmulqdq|vpclmulqdq|sha_ni|gfni|xsave.*|popcnt|movbe|adx|rdrand|rdseed|erms|fsrm|amx.*|pku|ospke|lzcnt|abm|cx16)$/;

/** CPU features the image's node had and this one lacks. */
export function missingCpuFeatures(imageFlags: string[], localFlags: string[]): string[] {
  const have = new Set(localFlags);
  return imageFlags.filter((f) => USER_VISIBLE.test(f) && !have.has(f));
}
