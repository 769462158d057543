/**
 * Giving a restored process exactly the credentials it had: groups (the
 * stub set them), ids, capability sets (bounding, ambient, inheritable,
 * permitted, effective), securebits, no_new_privs, personality, dumpable,
 * parent-death signal and, last, its seccomp filters. Everything is done
 * by system calls the process itself makes (injected with ptrace at the
 * restore ioctl's exit), in an order the kernel accepts, and then read
 * back from /proc/PID/status: a difference kills the process rather than
 * leaving it with more, or less, than it had.
 *
 * @module
 */
import { PpmError } from "../errors.ts";
import type { CredsRecord, TaskRecord } from "../image/schema.ts";
import type { Injector } from "../ptrace/inject.ts";

/** System call numbers (x86-64). */
const NR = {
  prctl: 157,
  setresuid: 117,
  setresgid: 119,
  setfsuid: 122,
  setfsgid: 123,
  capset: 126,
  personality: 135,
  seccomp: 317,
} as const;

const PR = {
  SET_PDEATHSIG: 1,
  SET_DUMPABLE: 4,
  SET_KEEPCAPS: 8,
  CAPBSET_DROP: 24,
  SET_SECUREBITS: 28,
  SET_NO_NEW_PRIVS: 38,
  CAP_AMBIENT: 47,
  CAP_AMBIENT_RAISE: 2,
} as const;

const LINUX_CAPABILITY_VERSION_3 = 0x20080522;
const SECCOMP_SET_MODE_FILTER = 1;

function must(r: bigint, what: string): void {
  if (r !== 0n) {
    throw new PpmError(
      "cannot give the restored process its credentials",
      `${what} failed (errno ${-r})`,
      "the process was not started; see docs/security.md",
    );
  }
}

/** The capability sets the stub has as root: every capability up to the last one. */
function allCaps(last: number): bigint {
  return (1n << BigInt(last + 1)) - 1n;
}

/** Sets the three capability sets with capset(2). */
async function capset(inj: Injector, eff: bigint, prm: bigint, inh: bigint): Promise<void> {
  const at = inj.scratch(32);
  const b = new Uint8Array(32);
  const v = new DataView(b.buffer);
  v.setUint32(0, LINUX_CAPABILITY_VERSION_3, true);
  v.setInt32(4, 0, true);
  const lo = (x: bigint) => Number(x & 0xffffffffn), hi = (x: bigint) => Number(x >> 32n);
  [[eff, prm, inh].map(lo), [eff, prm, inh].map(hi)].forEach((words, i) =>
    words.forEach((w, j) => v.setUint32(8 + i * 12 + j * 4, w, true))
  );
  await inj.write(at, b);
  must(inj.call(NR.capset, [at, at + 8n]), "capset");
}

/** The last capability this kernel knows. */
export function capLast(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/sys/kernel/cap_last_cap").trim());
  } catch {
    return 40;
  }
}

/**
 * Ids and capabilities, in the one order the kernel accepts: bounding set
 * first (needs CAP_SETPCAP), ids with KEEPCAPS so the permitted set
 * survives, filesystem ids, ambient raises, securebits, then the exact
 * sets (lowering only).
 */
async function idsAndCaps(inj: Injector, t: TaskRecord, c: CredsRecord | undefined) {
  const last = capLast();
  const full = allCaps(last);
  const caps = c?.caps ?? { inh: 0n, prm: full, eff: full, bnd: full, amb: 0n };
  if (!c && t.uid[1] !== 0) {
    caps.prm = caps.eff = 0n; // an image without creds: an ordinary process has none
  }
  for (let cap = 0; cap <= last; cap++) {
    if (!((caps.bnd >> BigInt(cap)) & 1n)) {
      must(
        inj.call(NR.prctl, [BigInt(PR.CAPBSET_DROP), BigInt(cap)]),
        `dropping capability ${cap} from the bounding set`,
      );
    }
  }
  must(inj.call(NR.prctl, [BigInt(PR.SET_KEEPCAPS), 1n]), "PR_SET_KEEPCAPS");
  const gid = t.gid.map(BigInt), uid = t.uid.map(BigInt);
  must(inj.call(NR.setresgid, gid.slice(0, 3)), "setresgid");
  must(inj.call(NR.setresuid, uid.slice(0, 3)), "setresuid");
  // Effective again (setresuid cleared it), to set what needs privilege.
  await capset(inj, full, full, caps.inh);
  inj.call(NR.setfsgid, [gid[3] ?? gid[1]]);
  inj.call(NR.setfsuid, [uid[3] ?? uid[1]]);
  for (let cap = 0; cap <= last; cap++) {
    if ((caps.amb >> BigInt(cap)) & 1n) {
      must(
        inj.call(NR.prctl, [BigInt(PR.CAP_AMBIENT), BigInt(PR.CAP_AMBIENT_RAISE), BigInt(cap)]),
        `raising ambient capability ${cap}`,
      );
    }
  }
  must(
    inj.call(NR.prctl, [BigInt(PR.SET_SECUREBITS), BigInt(c?.securebits ?? 0)]),
    "PR_SET_SECUREBITS",
  );
  await capset(inj, caps.eff, caps.prm, caps.inh);
}

/**
 * Everything but the seccomp filters: ids, capabilities, securebits,
 * no_new_privs, personality, dumpable and the parent-death signal (after
 * the ids: changing them clears it).
 */
export async function restoreCreds(inj: Injector, t: TaskRecord): Promise<void> {
  const c = t.creds;
  await idsAndCaps(inj, t, c);
  if (c?.noNewPrivs) {
    must(inj.call(NR.prctl, [BigInt(PR.SET_NO_NEW_PRIVS), 1n, 0n, 0n, 0n]), "PR_SET_NO_NEW_PRIVS");
  }
  const pers = inj.call(NR.personality, [BigInt(t.personality)]);
  if (pers < 0n) must(pers, "personality");
  // Dumpable 2 (suid_dumpable) cannot be set again: 0 never gives more.
  must(
    inj.call(NR.prctl, [BigInt(PR.SET_DUMPABLE), c && c.dumpable !== 1 ? 0n : 1n]),
    "PR_SET_DUMPABLE",
  );
  if (c?.pdeathSig) {
    must(inj.call(NR.prctl, [BigInt(PR.SET_PDEATHSIG), BigInt(c.pdeathSig)]), "PR_SET_PDEATHSIG");
  }
}

/**
 * Installs the seccomp filters, oldest first: the very last thing done in
 * the process, since a filter may forbid the system calls that restore
 * the rest.
 */
export async function restoreSeccomp(inj: Injector, c: CredsRecord | undefined): Promise<void> {
  for (const [i, f] of (c?.seccomp.filters ?? []).entries()) {
    const at = inj.scratch(16 + f.prog.length);
    const fprog = new Uint8Array(16);
    const v = new DataView(fprog.buffer);
    v.setUint16(0, f.prog.length / 8, true);
    v.setBigUint64(8, at + 16n, true);
    await inj.write(at, fprog);
    await inj.write(at + 16n, f.prog);
    must(
      inj.call(NR.seccomp, [BigInt(SECCOMP_SET_MODE_FILTER), BigInt(f.flags), at]),
      `installing seccomp filter ${i + 1} of ${c!.seccomp.filters.length}`,
    );
  }
}

/** What /proc/PID/status shows of credentials. */
function statusCreds(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 1).trim().replace(/\s+/g, " "));
  }
  return m;
}

/**
 * Reads the restored process's credentials back and throws when any
 * differs from the image's.
 */
export async function verifyCreds(pid: number, t: TaskRecord): Promise<void> {
  const s = statusCreds(await Deno.readTextFile(`/proc/${pid}/status`));
  const want = new Map<string, string>([
    ["Uid", t.uid.join(" ")],
    ["Gid", t.gid.join(" ")],
    ["Groups", t.groups.join(" ")],
  ]);
  const c = t.creds;
  if (c) {
    const hex = (x: bigint) => x.toString(16).padStart(16, "0");
    want.set("CapInh", hex(c.caps.inh)).set("CapPrm", hex(c.caps.prm)).set(
      "CapEff",
      hex(c.caps.eff),
    )
      .set("CapBnd", hex(c.caps.bnd)).set("CapAmb", hex(c.caps.amb))
      .set("NoNewPrivs", c.noNewPrivs ? "1" : "0").set("Seccomp", String(c.seccomp.mode));
    if (s.has("Seccomp_filters")) want.set("Seccomp_filters", String(c.seccomp.filters.length));
  }
  const diff: string[] = [];
  for (const [k, v] of want) {
    const have = s.get(k) ?? "";
    if (have !== v) diff.push(`${k} is "${have}", the image's "${v}"`);
  }
  if (diff.length) {
    throw new PpmError(
      "the restored process's credentials differ from the image's",
      diff.join("; "),
      "the process was not started; report this with the image",
    );
  }
}
