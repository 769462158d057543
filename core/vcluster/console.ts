/**
 * Reading a guest's console log for signs of kernel trouble, and the taint
 * flags a test may accept (the module's own O and E).
 *
 * @module
 */

const TROUBLE = [
  /\bOops\b/,
  /\bBUG: /,
  /\bWARNING: /,
  /Kernel panic/,
  /general protection fault/,
  /Call Trace:/,
  /ppm-guest-init: FAILED/,
];

/** Lines of `log` that show an oops, BUG, WARNING, panic or failed boot. */
export function consoleTrouble(log: string): string[] {
  return log.split("\n").filter((l) => TROUBLE.some((re) => re.test(l)));
}

/** Taint bits a guest may carry: O (out-of-tree module, 12) and E (unsigned module, 13). */
export const ALLOWED_TAINT = (1 << 12) | (1 << 13);

const TAINT_LETTERS = "PFSRMBUDAWCIOELKXTN";

/** The taint letters of `value` (as in /proc/sys/kernel/tainted). */
export function taintLetters(value: number): string {
  let s = "";
  for (let b = 0; b < TAINT_LETTERS.length; b++) if (value & (1 << b)) s += TAINT_LETTERS[b];
  return s;
}

/** Taint flags other than the allowed ones, as letters ("" when clean). */
export function unexpectedTaint(value: number): string {
  return taintLetters(value & ~ALLOWED_TAINT);
}

/** The last `n` lines of `log`. */
export function tail(log: string, n = 40): string {
  return log.split("\n").slice(-n).join("\n");
}
