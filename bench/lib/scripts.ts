/**
 * What the runner says to the guests, and how it reads their answers:
 * shell steps timed inside the guest (so the host's round trips never
 * count), CRIU's command lines, and parsers for the workloads' lines and
 * ppm's --json figures. Pure.
 *
 * @module
 */
import type { Sample, Tool } from "./types.ts";

/** Quotes `s` for a POSIX shell. */
export function shq(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/** A command line from argv, quoted. */
export function shJoin(argv: readonly string[]): string {
  return argv.map(shq).join(" ");
}

/**
 * A shell step timed in the guest with its own clock: prints
 * `step NAME RC START_NS END_NS` and stops the script (exit RC) on failure.
 */
export function timedStep(name: string, command: string): string {
  if (!/^[\w-]+$/.test(name)) throw new Error(`bad step name ${JSON.stringify(name)}`);
  return `s=$(date +%s%N); ${command}; rc=$?; e=$(date +%s%N); ` +
    `echo "step ${name} $rc $s $e"; [ $rc -eq 0 ] || exit $rc`;
}

/** A timed step as read back. */
export interface StepTime {
  /** Exit code. */
  rc: number;
  /** Duration, ms. */
  ms: number;
}

/** Reads the `step` lines of a script's output, by name. */
export function parseSteps(stdout: string): Map<string, StepTime> {
  const steps = new Map<string, StepTime>();
  for (const m of stdout.matchAll(/^step ([\w-]+) (\d+) (\d+) (\d+)$/gm)) {
    const ms = Number(BigInt(m[4]) - BigInt(m[3])) / 1e6;
    steps.set(m[1], { rc: Number(m[2]), ms });
  }
  return steps;
}

/** The duration of step `name`, ms; throws naming the step when it is missing or failed. */
export function stepMs(steps: Map<string, StepTime>, name: string, output = ""): number {
  const s = steps.get(name);
  if (!s) throw new Error(`the guest script did not reach step "${name}"\n${output}`.trim());
  if (s.rc !== 0) throw new Error(`step "${name}" failed (exit ${s.rc})\n${output}`.trim());
  return s.ms;
}

/** Options of CRIU's dump. */
export interface CriuDumpOptions {
  pid: number;
  /** Images directory. */
  dir: string;
  /** Log file (absolute). */
  log: string;
  /** The process has established TCP connections. */
  tcp: boolean;
  /** Send the pages to this page server instead of the directory. */
  pageServer?: { address: string; port: number };
  /**
   * Iterative migration: the images of the pre-dump before, relative to
   * `dir` (`--prev-images-dir`), with memory tracking (`--track-mem`).
   */
  prev?: string;
  /** A pre-dump (`criu pre-dump`, the process runs on) rather than the dump. */
  pre?: boolean;
}

/**
 * `criu dump` as a user would run it: a shell job (the process is not a
 * session leader), `--tcp-established` for live connections (locked with
 * nftables: Debian's CRIU links libnftables, iptables is not installed),
 * pages to a page server when migrating.
 */
export function criuDumpArgs(o: CriuDumpOptions): string[] {
  return [
    "criu",
    o.pre ? "pre-dump" : "dump",
    "-t",
    String(o.pid),
    "-D",
    o.dir,
    "--shell-job",
    ...(o.prev ? ["--prev-images-dir", o.prev] : []),
    ...(o.pre || o.prev ? ["--track-mem"] : []),
    ...(o.tcp ? ["--tcp-established", "--network-lock", "nftables"] : []),
    ...(o.pageServer
      ? ["--page-server", "--address", o.pageServer.address, "--port", String(o.pageServer.port)]
      : []),
    "-v2",
    "-o",
    o.log,
  ];
}

/** `criu restore`, detached (criu exits once the process runs). */
export function criuRestoreArgs(o: { dir: string; log: string; tcp: boolean }): string[] {
  return [
    "criu",
    "restore",
    "-D",
    o.dir,
    "--shell-job",
    "--restore-detached",
    ...(o.tcp ? ["--tcp-established", "--network-lock", "nftables"] : []),
    "-v2",
    "-o",
    o.log,
  ];
}

/**
 * `criu page-server` in the background, ready when the command returns; its PID in `pidfile`
 * when given (it lingers when no dump comes).
 */
export function criuPageServerArgs(
  o: { dir: string; port: number; log: string; pidfile?: string; prev?: string },
): string[] {
  return [
    "criu",
    "page-server",
    "--daemon",
    "-D",
    o.dir,
    ...(o.prev ? ["--prev-images-dir", o.prev] : []),
    "--port",
    String(o.port),
    ...(o.pidfile ? ["--pidfile", o.pidfile] : []),
    "-v2",
    "-o",
    o.log,
  ];
}

/**
 * The line of CRIU's output that says why it failed: its first `Error (file:line): ...` line
 * (without the timestamp CRIU puts before it), else the first line that is not empty.
 */
export function criuErrorLine(text: string): string {
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const err = lines.find((l) => /\bError \(/.test(l));
  return (err ?? lines[0] ?? "").replace(/^\(\s*[\d.]+\)\s*/, "");
}

/**
 * nftables rules that drop what the peer sends to `addr:port` while the
 * address is being added and CRIU restores the sockets: without them the
 * destination answers the peer's retransmissions with a reset.
 */
export function dropRules(table: string, addr: string, port: number): string {
  return `table inet ${table} {\n  chain input {\n` +
    `    type filter hook input priority -10; policy accept;\n` +
    `    ip daddr ${addr} tcp dport ${port} drop\n  }\n}\n`;
}

/** Does `ppm migrate --help` offer `--copy-all`? */
export function hasCopyAll(help: string): boolean {
  return /(^|\s)--copy-all\b/m.test(help);
}

/** The `ok bench_stream ... max_stall_ms=X` figure of bench_stream's output. */
export function parseStall(out: string): number {
  const m = out.match(/^ok bench_stream conns=(\d+) bytes=(\d+) max_stall_ms=(\d+(?:\.\d+)?)$/m);
  if (!m) throw new Error(`bench_stream did not finish with its ok line:\n${out.slice(-2000)}`);
  return Number(m[3]);
}

/** `sink bytes=N us=U` of bench_net sink, or `fetched bytes=N us=U` of bench_net fetch. */
export function parseByteTime(
  out: string,
  word: "sink" | "fetched",
): { bytes: number; ms: number } {
  const m = out.match(new RegExp(`^${word} bytes=(\\d+) us=(\\d+)$`, "m"));
  if (!m) throw new Error(`no "${word} bytes=... us=..." line in:\n${out.slice(-2000)}`);
  return { bytes: Number(m[1]), ms: Number(m[2]) / 1000 };
}

/** The size in bytes `du -sb DIR` printed. */
export function parseDu(out: string): number {
  const m = out.match(/^(\d+)\s/m);
  if (!m) throw new Error(`no size in du's output: ${JSON.stringify(out.slice(0, 200))}`);
  return Number(m[1]);
}

type Times = Record<string, number>;
const ms = (us: number | undefined) => (us === undefined ? undefined : us / 1000);

/** Keys of the checkpoint's and the restore's times that {@link ppmPhases} names itself. */
const KNOWN_CK = new Set([
  "freeze",
  "dumpCpu",
  "dumpSockets",
  "dumpState",
  "dumpMemory",
  "identity",
  "write",
]);
const KNOWN_RS = new Set([
  "load",
  "check",
  "plan",
  "stub",
  "sockets",
  "restoreSockets",
  "memory",
  "finish",
]);

/**
 * ppm's per-phase times (ms) from `ppm migrate --json`: the issue's phases
 * where ppm reports them (freeze; dump of CPU state, sockets and memory;
 * transfer; restore of memory, CPU state and sockets; resume), and any
 * other figure it reports under its own name. A phase ppm does not time
 * separately is absent, never guessed.
 */
export function ppmPhases(j: {
  timesUs: Times;
  checkpoint?: { timesUs?: Times; streamed?: boolean };
  restore?: unknown;
}): Record<string, number> {
  const ck = j.checkpoint?.timesUs ?? {};
  // A streamed image goes out while the memory is dumped: the two are one phase.
  const streamed = j.checkpoint?.streamed === true;
  const rs = (j.restore as { timesUs?: Times } | undefined)?.timesUs ?? {};
  const out: Record<string, number | undefined> = {
    "freeze": ms(ck.freeze),
    "dump: CPU state (and socket freeze)": ms(ck.dumpCpu),
    "dump: sockets": ms(ck.dumpSockets),
    "dump: files, descriptors, sockets, timers": ms(ck.dumpState),
    [streamed ? "dump: memory, sent as it is read (with the transfer)" : "dump: memory"]: ms(
      ck.dumpMemory,
    ),
    "dump: file identities": ms(ck.identity),
    [streamed ? "transfer: the image's tail" : "transfer"]: ms(ck.write),
    "restore: load, checks, plan, stub":
      ["load", "check", "plan", "stub"].some((k) => rs[k] !== undefined)
        ? ms(["load", "check", "plan", "stub"].reduce((a, k) => a + (rs[k] ?? 0), 0))
        : undefined,
    "restore: sockets": ms(rs.sockets ?? rs.restoreSockets),
    "restore: memory": ms(rs.memory),
    "restore: CPU state": ms(rs.finish),
    "resume (commit)": j.timesUs.restoreAndCommit !== undefined && rs.total !== undefined
      ? Math.max(0, j.timesUs.restoreAndCommit - rs.total) / 1000
      : undefined,
    // After the commit, the process running at the destination: not in the freeze.
    "deputy stands in (after the move)": ms(j.timesUs.deputy),
    "the source's copy ends (after the move)": ms(j.timesUs.handOver),
  };
  for (const [k, v] of Object.entries(ck)) {
    if (!KNOWN_CK.has(k) && k !== "frozen" && k !== "total") out[`dump: ${k}`] = ms(v);
  }
  for (const [k, v] of Object.entries(rs)) {
    if (!KNOWN_RS.has(k) && k !== "total") out[`restore: ${k}`] = ms(v);
  }
  out["frozen (total)"] = ms(j.timesUs.frozen);
  return Object.fromEntries(
    Object.entries(out).filter((e): e is [string, number] =>
      e[1] !== undefined && Number.isFinite(e[1])
    ),
  );
}

/**
 * A migration sample from `ppm migrate --json`; throws when the figures are missing. With
 * `at.total`, also the whole migration's time (`totalMs`: ppm's `timesUs.total`, which leaves
 * out the deputy's standing in, plus that).
 */
export function ppmMigrationSample(
  json: string,
  at: { workload: string; tool: Tool; round: number; writtenBytes?: number; total?: boolean },
): Sample {
  let j: {
    bytes?: number;
    timesUs?: Times;
    checkpoint?: { timesUs?: Times; streamed?: boolean };
    restore?: unknown;
    precopy?: { bytes?: number };
  };
  try {
    j = JSON.parse(json);
  } catch {
    throw new Error(`ppm migrate --json printed no JSON:\n${json.slice(0, 2000)}`);
  }
  if (!j.timesUs || typeof j.timesUs.frozen !== "number" || typeof j.bytes !== "number") {
    throw new Error(`ppm migrate --json lacks timesUs.frozen or bytes:\n${json.slice(0, 2000)}`);
  }
  if (at.total && typeof j.timesUs.total !== "number") {
    throw new Error(`ppm migrate --json lacks timesUs.total:\n${json.slice(0, 2000)}`);
  }
  // The time the image took to go out: streamed, from the start of the memory dump on.
  const ck = j.checkpoint?.timesUs;
  const write = j.checkpoint?.streamed && ck?.write !== undefined
    ? ck.write + (ck.dumpState ?? 0) + (ck.dumpMemory ?? 0) + (ck.identity ?? 0)
    : ck?.write;
  return {
    kind: "migrate",
    workload: at.workload,
    tool: at.tool,
    round: at.round,
    freezeMs: j.timesUs.frozen / 1000,
    // On the wire: the image, and what the pre-copy rounds sent before it.
    bytes: j.bytes + (j.precopy?.bytes ?? 0),
    ...(j.precopy?.bytes !== undefined
      ? { precopyBytes: j.precopy.bytes, precopyMs: (j.timesUs.precopy ?? 0) / 1000 }
      : {}),
    writtenBytes: at.writtenBytes,
    transferMs: write !== undefined && write > 0 ? write / 1000 : undefined,
    phasesMs: ppmPhases(j as { timesUs: Times }),
    ...(at.total ? { totalMs: (j.timesUs.total + (j.timesUs.deputy ?? 0)) / 1000 } : {}),
  };
}

/** The `timesUs.total` of `ppm checkpoint --json` or `ppm restore --json`, ms. */
export function ppmTotalMs(json: string, what: string): number {
  let j: { timesUs?: { total?: number } };
  try {
    j = JSON.parse(json);
  } catch {
    throw new Error(`${what} --json printed no JSON:\n${json.slice(0, 2000)}`);
  }
  const t = j.timesUs?.total;
  if (typeof t !== "number" || !(t > 0)) {
    throw new Error(`${what} --json has no timesUs.total:\n${json.slice(0, 2000)}`);
  }
  return t / 1000;
}
