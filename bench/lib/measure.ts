/**
 * The measurements, one function per tool and question: a migration with
 * ppm (optionally --copy-all) or CRIU, a local checkpoint + restore with
 * either, and the raw link. Each starts its own workload on node1, waits
 * until it runs, measures, checks the process runs on afterwards, and
 * kills only the processes it started. Every wait is bounded.
 *
 * @module
 */
import { nodeAddress } from "../../core/vcluster/spec.ts";
import type { Guests } from "./guest.ts";
import {
  criuDumpArgs,
  criuPageServerArgs,
  criuRestoreArgs,
  dropRules,
  parseByteTime,
  parseDu,
  parseStall,
  parseSteps,
  ppmMigrationSample,
  ppmTotalMs,
  shJoin,
  shq,
  stepMs,
  timedStep,
} from "./scripts.ts";
import { type LinkSample, type Sample, type Tool, TOOLS } from "./types.ts";
import { CRIU_PRE_DUMPS, type Workload, WORKLOADS } from "./workloads.ts";

/** Guest paths of the benchmark's programs. */
export interface Programs {
  bench_anon: string;
  bench_stream: string;
  bench_net: string;
  echo_server: string;
}

/** Where the runs keep their files in the guests (each guest's own /tmp). */
export const WORK = "/tmp/bench";
const SRC = nodeAddress(1);
const DST = nodeAddress(2);
const DROP_TABLE = "ppmbench";
/** Rounds a run may have (ports are laid out for this many). */
export const MAX_ROUNDS = 50;
/** First port of each use; each use has {@link ROUND_PORTS} × {@link MAX_ROUNDS} ports. */
export const PORTS = { pageServer: 24000, copy: 27000, workload: 30000, link: 34000 } as const;
/** Ports per round of one use: {@link WORKLOAD_PORTS} per workload. */
const ROUND_PORTS = 50;
/** Ports per workload in a round: one per tool (three), and room to spare. */
const WORKLOAD_PORTS = 5;

/**
 * The port of one use (`base`, from {@link PORTS}) in round `round` for the
 * workload at `workload` in WORKLOADS and the tool at `tool` in TOOLS:
 * unique per round, workload and tool for rounds below {@link MAX_ROUNDS}
 * and up to ten workloads, so no measurement meets an earlier one's
 * sockets or rules.
 */
export function portOf(base: number, round: number, workload: number, tool: number): number {
  if (workload >= ROUND_PORTS / WORKLOAD_PORTS || tool >= WORKLOAD_PORTS) {
    throw new Error(`no port for workload ${workload}, tool ${tool}: the layout is full`);
  }
  return base + round * ROUND_PORTS + workload * WORKLOAD_PORTS + tool;
}

/**
 * The shell command that starts a memory workload (bench_anon) in the
 * background: ITERATIONS, MIB and, for a threaded one, THREADS.
 */
export function anonCommand(bin: string, w: Workload, out: string): string {
  const stripes = (w.stripes ?? 1) > 1 ? ` ${w.threads} ${w.stripes}` : "";
  const threads = !stripes && w.threads > 1 ? ` ${w.threads}` : "";
  return `${bin} 1000000 ${w.mib}${threads}${stripes} < /dev/null > ${out} 2>&1 & echo $!`;
}

/** A running workload on node1. */
interface Started {
  pid: number;
  /** Its stdout/stderr file (on node1; a copy travels with CRIU). */
  out: string;
  /** Its process name, checked before any kill. */
  comm: string;
  /** TCP workloads: the peer on node2. */
  peer?: { pid: number; out: string };
  /** TCP workloads: the server's port. */
  port?: number;
}

/** Options of a {@link Measurer}. */
export interface MeasureOptions {
  /** Progress lines. */
  log: (s: string) => void;
  /** MiB each link measurement sends. */
  linkMiB: number;
}

/** A shell test: `pid` (a number, or shell words that give one) lives as `comm` and is no zombie. */
export function lives(pid: number | string, comm: string): string {
  return `[ "$(cat /proc/${pid}/comm 2>/dev/null)" = ${shq(comm)} ] && ` +
    `! grep -q '^State:.*Z' /proc/${pid}/status 2>/dev/null`;
}

/** A shell command killing `pid` only if it still is our `comm`. */
export function killOurs(pid: number | string, comm: string, signal = "KILL"): string {
  return `if ${lives(pid, comm)}; then kill -${signal} ${pid}; fi; true`;
}

/** A timed step of a CRIU move on its destination, besides the copy and the restore. */
export interface CriuStep {
  /** The step's name in the script (letters, digits, - and _). */
  name: string;
  /** Its name among the sample's phases. */
  label: string;
  /** The shell command. */
  command: string;
}

/** One move of a running process with CRIU ({@link Measurer.criuMove}). */
export interface CriuMove {
  pid: number;
  /** The nodes it leaves and goes to. */
  from: number;
  to: number;
  /** Names its files: WORK/TAG.* and the images in WORK/criu-TAG, on both nodes. */
  tag: string;
  /** The page server's port and the images' copy's. */
  psPort: number;
  cpPort: number;
  /** The process has established TCP connections. */
  tcp: boolean;
  /** Files copied with the images (absolute paths on `from`). */
  carry: string[];
  /** Steps on `to` between the copy and the restore, and after the restore. */
  before?: CriuStep[];
  after?: CriuStep[];
  /**
   * Iterative migration, as P.Haul does it: this many `criu pre-dump`s to
   * page servers on `to` while the process runs (memory tracked), each
   * sending what was written since the one before, then the dump.
   */
  preDumps?: number;
}

/** The sample of CRIU migration `moved` of workload `w` in `round`: its freeze is its phases'. */
export function criuSample(w: Workload, round: number, moved: CriuMoved): Sample {
  return {
    kind: "migrate",
    workload: w.id,
    tool: "criu",
    round,
    freezeMs: Object.values(moved.phasesMs).reduce((a, b) => a + b, 0),
    bytes: moved.bytes,
    ...(moved.preDumpMs !== undefined ? { precopyMs: moved.preDumpMs } : {}),
    writtenBytes: w.mib ? w.mib * 1048576 : undefined,
    transferMs: moved.copyMs,
    phasesMs: moved.phasesMs,
  };
}

/** What a CRIU move measured. */
export interface CriuMoved {
  /** dump, copy, the `before` steps, restore, the `after` steps (by label), ms. */
  phasesMs: Record<string, number>;
  /** The images on the destination after the copy. */
  bytes: number;
  /** The copy's time, from its connection to its end, ms. */
  copyMs: number;
  /** With pre-dumps: their time, the process running, ms. */
  preDumpMs?: number;
}

/** CRIU's dump or restore failed: the message has its exit code and its log's last lines. */
export class CriuRefused extends Error {
  constructor(readonly step: "dump" | "restore", message: string) {
    super(message);
    this.name = "CriuRefused";
  }
}

const criuDir = (m: Pick<CriuMove, "tag">) => `${WORK}/criu-${m.tag}`;
const psPidfile = (m: Pick<CriuMove, "tag">) => `${WORK}/${m.tag}.ps.pid`;

function highPids(): string {
  return `echo ${10_000 + Math.floor(Math.random() * 20_000)} > /proc/sys/kernel/ns_last_pid; `;
}

/** Runs the measurements on a two-node cluster whose agents run. */
export class Measurer {
  constructor(
    private g: Guests,
    private bin: Programs,
    private opts: MeasureOptions,
  ) {}

  /** The port of one use for round, workload and tool ({@link portOf}). */
  private port(base: number, round: number, w: Workload, tool: Tool): number {
    const t = TOOLS.indexOf(tool);
    const k = Math.max(0, WORKLOADS.findIndex((x) => x.id === w.id));
    return portOf(base, round, k, t);
  }

  /** Starts workload `w` on node1 (and its TCP peer on node2). */
  private async start(w: Workload, tag: string, port: number): Promise<Started> {
    await this.g.ok(1, `mkdir -p ${WORK}`);
    await this.g.ok(2, `mkdir -p ${WORK}`);
    const out = `${WORK}/${tag}.out`;
    if (w.connections === 0) {
      const pid = Number(
        (await this.g.ok(
          1,
          `${highPids()}cd ${WORK}; ${anonCommand(this.bin.bench_anon, w, out)}`,
        )).trim(),
      );
      await this.g.waitFor(1, `grep -q '^tick 2 ' ${out}`, 600, `${tag}: bench_anon's third tick`);
      return { pid, out, comm: "bench_anon" };
    }
    const pid = Number(
      (await this.g.ok(
        1,
        `${highPids()}cd ${WORK}; ${this.bin.echo_server} ${port} < /dev/null > ${out} 2>&1 & echo $!`,
      )).trim(),
    );
    await this.g.waitFor(1, `grep -q '^ready ' ${out}`, 60, `${tag}: echo_server listening`);
    const peerOut = `${WORK}/${tag}.peer`;
    const peer = Number(
      (await this.g.ok(
        2,
        `cd ${WORK}; ${this.bin.bench_stream} ${SRC} ${port} ${w.connections} 900 128 < /dev/null > ${peerOut} 2>&1 & echo $!`,
      )).trim(),
    );
    await this.g.waitFor(
      2,
      `grep -q '^tick 2 ' ${peerOut}`,
      120,
      `${tag}: bench_stream's third second`,
    );
    return { pid, out, comm: "echo_server", peer: { pid: peer, out: peerOut }, port };
  }

  /** Waits until the workload shows progress after a move: ticks in `out` on `node`, or the peer's. */
  private async progressed(s: Started, node: number): Promise<void> {
    if (s.peer) {
      const want = Number((await this.g.ok(2, `grep -c '^tick ' ${s.peer.out} || true`)).trim()) +
        2;
      await this.g.waitFor(
        2,
        `[ $(grep -c '^tick ' ${s.peer.out}) -ge ${want} ]`,
        180,
        "the TCP peer going on",
      );
      return;
    }
    const want = Number((await this.g.ok(node, `grep -c '^tick ' ${s.out} || true`)).trim()) + 2;
    await this.g.waitFor(
      node,
      `[ $(grep -c '^tick ' ${s.out}) -ge ${want} ]`,
      180,
      `${s.comm} ticking on after the move`,
    );
  }

  /** Ends the peer cleanly and returns the longest stall it saw. */
  private async peerStall(s: Started): Promise<number | undefined> {
    if (!s.peer) return undefined;
    await this.g.ok(2, killOurs(s.peer.pid, "bench_stream", "USR1"));
    await this.g.waitFor(
      2,
      `grep -q '^ok bench_stream' ${s.peer.out} || grep -q '^FAIL' ${s.peer.out}`,
      180,
      "the TCP peer's end",
    );
    return parseStall(await this.g.ok(2, `cat ${s.peer.out}`));
  }

  /** Kills what `s` started, wherever it is now. */
  private async stop(s: Started): Promise<void> {
    for (const n of [1, 2]) {
      await this.g.sh(n, killOurs(s.pid, s.comm)).catch(() => {});
      if (s.peer && n === 2) {
        await this.g.sh(n, killOurs(s.peer.pid, "bench_stream")).catch(() => {});
      }
    }
  }

  /** `ppm migrate` of workload `w` (with `--copy-all` for that tool). */
  async ppmMigrate(w: Workload, tool: "ppm" | "ppm-copy-all", round: number): Promise<Sample> {
    const tag = `m-${w.id}-${tool}-${round}`;
    await this.waitPeers();
    const s = await this.start(w, tag, this.port(PORTS.workload, round, w, tool));
    try {
      const r = await this.g.exec(1, [
        "ppm",
        "migrate",
        String(s.pid),
        "--to",
        "node2",
        "--json",
        "--timeout",
        "300",
        ...(tool === "ppm-copy-all" ? ["--copy-all"] : []),
      ], 900_000);
      if (r.code !== 0) throw new Error(`ppm migrate exited ${r.code}: ${r.stderr.trim()}`);
      const sample = ppmMigrationSample(r.stdout, {
        workload: w.id,
        tool,
        round,
        writtenBytes: w.mib ? w.mib * 1048576 : undefined,
      });
      await this.g.waitFor(2, lives(s.pid, s.comm), 30, `${s.comm} ${s.pid} running on node2`);
      // ppm relays stdout: the ticks go on in node1's file.
      await this.progressed(s, 1);
      sample.stallMs = await this.peerStall(s);
      return sample;
    } finally {
      await this.stop(s);
    }
  }

  /** CRIU's migration of workload `w`: dump with a page server, copy, address, restore. */
  async criuMigrate(w: Workload, round: number): Promise<Sample> {
    const tag = `m-${w.id}-criu-${round}`;
    const tcp = w.connections > 0;
    const s = await this.start(w, tag, this.port(PORTS.workload, round, w, "criu"));
    const move: CriuMove = {
      pid: s.pid,
      from: 1,
      to: 2,
      tag,
      psPort: this.port(PORTS.pageServer, round, w, "criu"),
      cpPort: this.port(PORTS.copy, round, w, "criu"),
      tcp,
      // A process that keeps writing: CRIU's iterative migration.
      ...(w.stripes ? { preDumps: CRIU_PRE_DUMPS } : {}),
      // Its output file, which it writes at a position CRIU checks.
      carry: [s.out],
      before: tcp
        ? [{
          name: "address",
          label: "address + drop rule",
          command: `printf '%s' ${shq(dropRules(DROP_TABLE, SRC, s.port!))} | nft -f - && ` +
            `ip addr add ${SRC}/32 dev lo`,
        }]
        : [],
      after: tcp
        ? [{
          name: "unlock",
          label: "drop rule removed",
          command: `nft delete table inet ${DROP_TABLE}`,
        }]
        : [],
    };
    try {
      const sample = criuSample(w, round, await this.criuMove(move));
      await this.g.waitFor(2, lives(s.pid, s.comm), 30, `${s.comm} ${s.pid} running on node2`);
      // CRIU restored the output file at its path on node2: the ticks go on there.
      await this.progressed(s, 2);
      sample.stallMs = await this.peerStall(s);
      return sample;
    } finally {
      await this.stop(s);
      await this.g.sh(
        2,
        `ip addr del ${SRC}/32 dev lo 2>/dev/null; nft delete table inet ${DROP_TABLE} 2>/dev/null; true`,
      ).catch(() => {});
      await this.criuCleanup(move);
    }
  }

  /**
   * Moves process `m.pid` with CRIU, as a user of CRIU does: a page server on `m.to`, the dump
   * on `m.from` sending its pages there, the rest of the images (and `m.carry`) copied over
   * plain TCP, `m.before`, the restore on `m.to`, `m.after`; each step timed in its guest. The
   * dump kills the process when it succeeds. Throws a {@link CriuRefused} when the dump or the
   * restore fails, another error when anything else does. The caller cleans up
   * ({@link criuCleanup}) once it is done with the process.
   */
  async criuMove(m: CriuMove): Promise<CriuMoved> {
    const top = criuDir(m);
    await this.g.ok(m.from, `rm -rf ${top}; mkdir -p ${top}`);
    await this.g.ok(m.to, `rm -rf ${top}; mkdir -p ${top}`);
    const pre = m.preDumps ?? 0;
    const preDumpMs = pre ? await this.criuPreDumps(m, pre) : undefined;
    // The dump's images: in the top directory, or after pre-dumps in `final`, over theirs.
    const dir = pre ? `${top}/final` : top;
    const prev = pre ? `../${pre}` : undefined;
    const logs = {
      ps: `${WORK}/${m.tag}.ps.log`,
      dump: `${WORK}/${m.tag}.dump.log`,
      restore: `${WORK}/${m.tag}.restore.log`,
    };
    const src = nodeAddress(m.from);
    const before = m.before ?? [], after = m.after ?? [];
    await this.g.ok(m.from, `mkdir -p ${dir}`);
    // CRIU will not write a pidfile that exists.
    await this.g.ok(
      m.to,
      `rm -f ${psPidfile(m)}; mkdir -p ${dir}; ${
        shJoin(
          criuPageServerArgs({ dir, port: m.psPort, log: logs.ps, pidfile: psPidfile(m), prev }),
        )
      }`,
    );
    // The destination waits for the images before the dump starts, as a script of a CRIU user would.
    const fetched = `${WORK}/${m.tag}.fetched`;
    const dstSide = this.g.sh(
      m.to,
      [
        timedStep(
          "copy",
          `${this.bin.bench_net} fetch ${src} ${m.cpPort} 500 2> ${fetched} | tar -C / -xf -`,
        ),
        // Each level's images name the one before (as the dumps made them on the source).
        ...Array.from({ length: pre }, (_, i) => `ln -sfn ../${i + 1} ${top}/${i + 2}/parent`)
          .slice(0, Math.max(0, pre - 1)),
        ...(prev ? [`ln -sfn ${prev} ${dir}/parent`] : []),
        ...before.map((x) => timedStep(x.name, x.command)),
        timedStep("restore", shJoin(criuRestoreArgs({ dir, log: logs.restore, tcp: m.tcp }))),
        ...after.map((x) => timedStep(x.name, x.command)),
        `cat ${fetched}`,
        `du -sb ${top}`,
      ].join("\n"),
      900_000,
    );
    const srcSide = await this.g.sh(
      m.from,
      [
        timedStep(
          "dump",
          shJoin(criuDumpArgs({
            pid: m.pid,
            dir,
            log: logs.dump,
            tcp: m.tcp,
            pageServer: { address: nodeAddress(m.to), port: m.psPort },
            prev,
          })),
        ),
        `tar -C / -cf - ${[dir, ...m.carry].map((p) => p.slice(1)).join(" ")} | ` +
        `${this.bin.bench_net} serve ${m.cpPort}`,
      ].join("\n"),
      900_000,
    );
    const dumpSteps = parseSteps(srcSide.stdout);
    if (dumpSteps.get("dump")?.rc !== 0) {
      // The destination waits for images that will not come: an empty stream ends its wait.
      await this.g.sh(m.from, `: | ${this.bin.bench_net} serve ${m.cpPort}`, 60_000)
        .catch(() => {});
      await dstSide.catch(() => {});
      throw new CriuRefused(
        "dump",
        `criu dump failed (exit ${dumpSteps.get("dump")?.rc ?? srcSide.code})\n` +
          (await this.tail(m.from, logs.dump)),
      );
    }
    if (srcSide.code !== 0) throw new Error(`sending the images failed: ${srcSide.stderr.trim()}`);
    const r2 = await dstSide;
    const steps = parseSteps(r2.stdout);
    if (r2.code !== 0) {
      const text = `CRIU's side on node${m.to} failed (exit ${r2.code}): ${r2.stderr.trim()}\n` +
        `${r2.stdout}\n${await this.tail(m.to, logs.restore)}`;
      const restore = steps.get("restore");
      throw restore && restore.rc !== 0 ? new CriuRefused("restore", text) : new Error(text);
    }
    const copy = parseByteTime(r2.stdout, "fetched");
    const phasesMs: Record<string, number> = {
      dump: stepMs(dumpSteps, "dump", srcSide.stdout),
      copy: copy.ms,
      ...Object.fromEntries(before.map((x) => [x.label, stepMs(steps, x.name, r2.stdout)])),
      restore: stepMs(steps, "restore", r2.stdout),
      ...Object.fromEntries(after.map((x) => [x.label, stepMs(steps, x.name, r2.stdout)])),
    };
    return {
      phasesMs,
      bytes: parseDu(r2.stdout.split("\n").slice(-3).join("\n")),
      copyMs: copy.ms,
      ...(preDumpMs !== undefined ? { preDumpMs } : {}),
    };
  }

  /**
   * `pre` pre-dumps of `m.pid` (it runs on), each to a page server of its own on `m.to`, into
   * CRIUDIR/1, /2, ...: the first sends all the memory, the next ones what was written since
   * (`--track-mem`, `--prev-images-dir`). Returns their total time, ms.
   */
  async criuPreDumps(m: CriuMove, pre: number): Promise<number> {
    const top = criuDir(m);
    let ms = 0;
    for (let i = 1; i <= pre; i++) {
      const dir = `${top}/${i}`;
      const prev = i > 1 ? `../${i - 1}` : undefined;
      const log = `${WORK}/${m.tag}.pre${i}.log`;
      await this.g.ok(
        m.to,
        `rm -f ${psPidfile(m)}; mkdir -p ${dir}; ${
          shJoin(criuPageServerArgs({
            dir,
            port: m.psPort,
            log: `${WORK}/${m.tag}.ps${i}.log`,
            pidfile: psPidfile(m),
            prev,
          }))
        }`,
      );
      const r = await this.g.sh(
        m.from,
        `mkdir -p ${dir}
` + timedStep(
          "predump",
          shJoin(criuDumpArgs({
            pid: m.pid,
            dir,
            log,
            tcp: m.tcp,
            pageServer: { address: nodeAddress(m.to), port: m.psPort },
            prev,
            pre: true,
          })),
        ),
        900_000,
      );
      const steps = parseSteps(r.stdout);
      if (steps.get("predump")?.rc !== 0) {
        throw new CriuRefused(
          "dump",
          `criu pre-dump ${i} failed (exit ${steps.get("predump")?.rc ?? r.code})\n` +
            (await this.tail(m.from, log)),
        );
      }
      ms += stepMs(steps, "predump", r.stdout);
      // Its page server ends with the pre-dump; the next one takes the port.
      await this.g.waitFor(
        m.to,
        `[ ! -s ${psPidfile(m)} ] || ! kill -0 $(cat ${psPidfile(m)}) 2>/dev/null`,
        60,
        `${m.tag}: pre-dump ${i}'s page server ended`,
      );
    }
    return ms;
  }

  /**
   * What a CRIU move leaves: a page server no dump came to and the images on the destination,
   * the connections CRIU's dump locked (nftables tables named CRIU-*) and the images on the
   * source.
   */
  async criuCleanup(m: CriuMove): Promise<void> {
    const dir = criuDir(m);
    const pidfile = psPidfile(m);
    await this.g.sh(
      m.to,
      `if [ -s ${pidfile} ]; then ${killOurs(`$(cat ${pidfile})`, "criu")}; fi; ` +
        `rm -rf ${dir} ${pidfile}; true`,
    ).catch(() => {});
    await this.g.sh(
      m.from,
      `for t in $(nft list tables 2>/dev/null | grep -o 'CRIU[-A-Za-z0-9_]*'); do nft delete table inet $t; done; rm -rf ${dir}; true`,
    ).catch(() => {});
  }

  /** `ppm checkpoint --kill` then `ppm restore` of workload `w` on node1. */
  async ppmLocal(w: Workload, round: number): Promise<Sample> {
    const tag = `l-${w.id}-ppm-${round}`;
    const img = `${WORK}/${tag}.img`;
    const s = await this.start(w, tag, 0);
    try {
      const ck = await this.g.exec(
        1,
        ["ppm", "checkpoint", String(s.pid), "-o", img, "--kill", "--json"],
        900_000,
      );
      if (ck.code !== 0) throw new Error(`ppm checkpoint exited ${ck.code}: ${ck.stderr.trim()}`);
      await this.g.waitFor(1, `[ ! -e /proc/${s.pid} ]`, 60, `process ${s.pid} gone`);
      const rs = await this.g.exec(1, ["ppm", "restore", img, "--json"], 900_000);
      if (rs.code !== 0) throw new Error(`ppm restore exited ${rs.code}: ${rs.stderr.trim()}`);
      const phasesMs = {
        checkpoint: ppmTotalMs(ck.stdout, "ppm checkpoint"),
        restore: ppmTotalMs(rs.stdout, "ppm restore"),
      };
      await this.progressed(s, 1);
      return {
        kind: "local",
        workload: w.id,
        tool: "ppm",
        round,
        freezeMs: phasesMs.checkpoint + phasesMs.restore,
        phasesMs,
      };
    } finally {
      await this.stop(s);
      await this.g.sh(1, `rm -f ${img}`).catch(() => {});
    }
  }

  /** `criu dump` then `criu restore` of workload `w` on node1. */
  async criuLocal(w: Workload, round: number): Promise<Sample> {
    const tag = `l-${w.id}-criu-${round}`;
    const dir = `${WORK}/criu-${tag}`;
    const logs = { dump: `${WORK}/${tag}.dump.log`, restore: `${WORK}/${tag}.restore.log` };
    const s = await this.start(w, tag, 0);
    try {
      const r = await this.g.sh(
        1,
        [
          `rm -rf ${dir}; mkdir -p ${dir}`,
          timedStep("dump", shJoin(criuDumpArgs({ pid: s.pid, dir, log: logs.dump, tcp: false }))),
          timedStep("restore", shJoin(criuRestoreArgs({ dir, log: logs.restore, tcp: false }))),
        ].join("\n"),
        900_000,
      );
      const steps = parseSteps(r.stdout);
      if (r.code !== 0) {
        const log = steps.get("dump")?.rc === 0 ? logs.restore : logs.dump;
        throw new Error(
          `criu ${log === logs.dump ? "dump" : "restore"} failed (exit ${r.code})\n${await this
            .tail(1, log)}`,
        );
      }
      const phasesMs = { dump: stepMs(steps, "dump"), restore: stepMs(steps, "restore") };
      await this.progressed(s, 1);
      return {
        kind: "local",
        workload: w.id,
        tool: "criu",
        round,
        freezeMs: phasesMs.dump + phasesMs.restore,
        phasesMs,
      };
    } finally {
      await this.stop(s);
      await this.g.sh(1, `rm -rf ${dir}`).catch(() => {});
    }
  }

  /** Raw TCP throughput node1 → node2 with bench_net blast/sink. */
  async link(round: number): Promise<LinkSample> {
    const port = PORTS.link + round;
    const sink = this.g.sh(2, `${this.bin.bench_net} sink ${port}`, 660_000);
    const blast = await this.g.sh(
      1,
      `${this.bin.bench_net} blast ${DST} ${port} ${this.opts.linkMiB}`,
      660_000,
    );
    const s = await sink;
    if (blast.code !== 0 || s.code !== 0) {
      throw new Error(
        `bench_net blast/sink failed (exit ${blast.code}/${s.code}): ${blast.stderr.trim()} ${s.stderr.trim()}`,
      );
    }
    const got = parseByteTime(s.stdout, "sink");
    return { round, bytes: got.bytes, ms: got.ms };
  }

  /**
   * Waits until node `from`'s agent sees node `to`'s as alive (after CRIU borrowed node1's
   * address on node2).
   */
  async waitPeers(from = 1, to = 2): Promise<void> {
    const deadline = Date.now() + 180_000;
    let last = "";
    for (let i = 0; i < 60 && Date.now() < deadline; i++) {
      const r = await this.g.exec(from, ["ppm", "peers", "--json"], 60_000);
      try {
        const st = JSON.parse(r.stdout) as { peers: { name: string; state: string }[] };
        if (st.peers.some((p) => p.name === `node${to}` && p.state === "alive")) return;
        last = JSON.stringify(st.peers.map((p) => [p.name, p.state]));
      } catch {
        last = r.stderr.trim() || r.stdout.trim();
      }
      await new Promise((res) => setTimeout(res, 2000));
    }
    throw new Error(`node${from}'s agent does not see node${to}'s as alive (last: ${last})`);
  }

  /** The last lines of a CRIU log on node `n`. */
  private async tail(n: number, log: string): Promise<string> {
    const r = await this.g.sh(n, `tail -n 25 ${log} 2>&1`).catch(() => undefined);
    return r ? `--- ${log} (node${n}), last lines ---\n${r.stdout}` : "";
  }
}
