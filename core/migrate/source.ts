/**
 * The source side of `ppm migrate`: ask the destination first, freeze and
 * stream the image, and end the local copy only once the destination says
 * the process runs there. Every failure before that resumes the process
 * here, as if nothing had happened.
 *
 * @module
 */
import { schedulerReasons } from "../host/cgroup.ts";
import { close, kill, pidfdGetfd, pidfdOpen } from "../../ffi/libc.ts";
import { KeptRelay, type KeptStdio } from "../relay/kept.ts";
import { newRelayToken } from "../relay/record.ts";
import { PPM_ABI_VERSION } from "../../ffi/uapi.ts";
import { checkpoint, type CheckpointStats } from "../checkpoint/checkpoint.ts";
import { checkReasons } from "../dump/check.ts";
import { fileId, fileIdentity, readFds } from "../dump/files.ts";
import type { ExpectedFile } from "../restore/compat.ts";
import { inspectSockets } from "../dump/sockets.ts";
import type { Redirect } from "../../ffi/redirect.ts";
import { enableForwarding } from "../redirect/forwarding.ts";
import { planRedirects } from "../redirect/redirect_plan.ts";
import { RedirectSet } from "../redirect/table.ts";
import { parseMaps } from "../dump/proc.ts";
import { parseCpuFlags } from "../host/cpu.ts";
import { EXIT, type ExitCode, PpmError } from "../errors.ts";
import { withTimeout } from "../transport/deadline.ts";
import { type MigrationChannel, STREAM } from "../transport/channel.ts";
import {
  expectMessage,
  type MessageOf,
  type Offer,
  type Op,
  type Outcome,
  type StdinMode,
} from "./messages.ts";

/** Result of {@link migrateOut}. */
export interface MigrateResult {
  /** PID at the destination. */
  pid: number;
  /** Bytes of image sent. */
  bytes: number;
  /** Per-phase times, µs. */
  timesUs: Record<string, number>;
  /** Figures of the checkpoint. */
  checkpoint: Omit<CheckpointStats, "held" | "network">;
  /** Sockets that moved. */
  sockets: number;
  /** Redirect entries left on this node for them (drops and forwards). */
  redirectIds: number[];
  /** Restore figures from the destination. */
  restore: unknown;
}

const us = (ms: number) => Math.round(ms * 1000);

const REFUSED = "the migration did not happen; the process runs on here";
/** How a failure after the commit begins: the process neither runs here nor is known to run there. */
const IN_DOUBT = "the outcome of moving process";

function refuse(
  why: string,
  fix = "",
  code: ExitCode = EXIT.FAILURE,
  cause?: unknown,
): PpmError {
  return new PpmError(REFUSED, why, fix, code, cause === undefined ? "" : { cause });
}

/**
 * Any failure of a migration, told as what it is: the process runs on here.
 * The original error stays the refusal's `cause`.
 */
function asRefusal(e: unknown): PpmError {
  if (e instanceof PpmError && e.what.startsWith(IN_DOUBT)) return e;
  if (e instanceof PpmError) {
    return e.what === REFUSED ? e : refuse(`${e.what}: ${e.why}`, e.fix, e.exitCode, e);
  }
  return refuse(`the connection failed: ${(e as Error).message}`, "", EXIT.FAILURE, e);
}

/** What the process's stdin is: closed, /dev/null, or something to relay. */
async function stdinMode(pid: number): Promise<StdinMode> {
  try {
    return (await Deno.readLink(`/proc/${pid}/fd/0`)) === "/dev/null" ? "null" : "relay";
  } catch {
    return "closed";
  }
}

/** Builds the offer for `pid` (file identities are hashed before anything is frozen). */
export async function buildOffer(
  pid: number,
  from: string,
  origin?: { node: string; pid: number },
  moves = 0,
  fromAddr = "",
): Promise<Offer> {
  const maps = parseMaps(await Deno.readTextFile(`/proc/${pid}/maps`));
  const paths = [
    ...new Set(
      maps.filter((m) => m.ino && m.name.startsWith("/") && m.name !== "/dev/zero").map((m) =>
        m.name
      ),
    ),
  ];
  const files = [];
  const cwd = await Deno.readLink(`/proc/${pid}/cwd`);
  const expected: ExpectedFile[] = [
    { path: cwd, id: fileId(`/proc/${pid}/cwd`), role: "the working directory" },
  ];
  for (const p of paths) {
    const id = await fileIdentity(p);
    files.push({ path: id.path, size: id.size, sha256: id.sha256 });
    expected.push({ path: p, id: id.id, role: "a mapped file", hashChecked: true });
  }
  const open = await readFds(pid);
  // Standard streams are relayed from here (or /dev/null), never reopened at the destination.
  for (const f of open.fds.filter((x) => x.fd > 2 && x.kind !== "stdio")) {
    expected.push({ path: f.path, id: f.id, flags: f.flags, role: `fd ${f.fd}` });
  }
  // Private pages in memory are what the optimized total copy sends.
  const rollup = await Deno.readTextFile(`/proc/${pid}/smaps_rollup`).catch(() => "");
  const anonKiB = Number(/^Anonymous:\s+(\d+) kB/m.exec(rollup)?.[1] ?? NaN);
  const anon = Number.isFinite(anonKiB)
    ? anonKiB * 1024
    : maps.filter((m) => !m.name || m.name === "[heap]" || m.name === "[stack]")
      .reduce((a, m) => a + Number(m.end - m.start), 0);
  return {
    op: "offer",
    pid,
    comm: (await Deno.readTextFile(`/proc/${pid}/comm`)).trim(),
    kernel: Deno.osRelease(),
    cpuFlags: parseCpuFlags(await Deno.readTextFile("/proc/cpuinfo")),
    abi: PPM_ABI_VERSION,
    files,
    estimatedBytes: anon,
    from,
    origin: origin ?? { node: from, pid },
    moves,
    stdin: await stdinMode(pid),
    cwd,
    expected,
    fromAddr,
    sockets: inspectSockets(pid, open.sockets.map((x) => x.fd)).sockets.map(
      (x) => ({ kind: x.kind, local: x.local, remote: x.remote }),
    ),
  };
}

/** How long a source asks for the outcome of an unconfirmed commit before leaving it in doubt. */
export const OUTCOME_WAIT_MS = 60_000;

/**
 * Asks the destination whether the process runs there, every second until
 * it knows ("pending" and unreachable are not knowing), at most
 * {@link OUTCOME_WAIT_MS}; undefined when it never learned.
 */
async function learnOutcome(
  pid: number,
  comm: string,
  opts: MigrateOutOptions,
): Promise<"running" | "absent" | undefined> {
  if (!opts.askOutcome) return undefined;
  const deadline = Date.now() + OUTCOME_WAIT_MS;
  for (let i = 0; i < 120 && Date.now() < deadline; i++) {
    const o = await opts.askOutcome(pid, comm).catch(() => undefined);
    if (o === "running" || o === "absent") return o;
    await new Promise((r) => setTimeout(r, 1000));
  }
  return undefined;
}

/** Takes copies of the process's standard streams (those it has; stdin only to relay it). */
function keepStdio(pid: number, stdin: StdinMode): KeptStdio {
  const keep: KeptStdio = {};
  let pidfd = -1;
  try {
    pidfd = pidfdOpen(pid);
    for (const fd of [0, 1, 2] as const) {
      if (fd === 0 && stdin !== "relay") continue;
      try {
        keep[fd] = pidfdGetfd(pidfd, fd);
      } catch { /* not open */ }
    }
  } catch {
    /* no relay then */
  } finally {
    if (pidfd >= 0) close(pidfd);
  }
  return keep;
}

/** Progress of the image transfer. */
export interface MigrateProgress {
  /** Image bytes sent so far. */
  sent: number;
  /** The expected image size (an estimate: memory to send plus metadata). */
  expected: number;
}

/**
 * The steps of a migration, in order: the destination is offered the
 * process; it is frozen and its image sent; the destination restores it;
 * the source commits (from here the process runs there).
 */
export type MigratePhase = "offer" | "dump" | "restore" | "commit";

/** Options of {@link migrateOut}. */
export interface MigrateOutOptions {
  /** This node's name. */
  node: string;
  /** Where the process started and how often it moved. */
  origin?: { node: string; pid: number };
  /** Moves so far. */
  moves?: number;
  /**
   * Bound for each step (default 120 s): each answer of the destination,
   * and each chunk of the image to leave (a cut link stalls the sending).
   */
  stepTimeoutMs?: number;
  /**
   * Bound for the whole migration up to the commit (default none): when it
   * passes first, the migration is abandoned and the process runs on here
   * (EXIT.TIMEOUT). Once the commit is sent, the outcome is waited for.
   */
  deadlineMs?: number;
  /** Called as the image goes out (at most every 64 KiB of progress). */
  onProgress?: (p: MigrateProgress) => void;
  /** Called as each step begins (see {@link MigratePhase}). */
  onPhase?: (phase: MigratePhase) => void;
  /**
   * Called with the relay of the process's standard streams once it runs at
   * the destination; the caller runs it on the channel (and keeps it when the
   * connection breaks). Without it, the relay runs until the connection ends.
   */
  onRelay?: (relay: KeptRelay) => void;
  /**
   * Asks the destination, on a new connection, whether the process runs
   * there (when the commit was not confirmed); undefined when it cannot be
   * reached. Without it, an unconfirmed commit leaves the process stopped.
   */
  askOutcome?: (pid: number, comm: string) => Promise<Outcome | undefined>;
  /** Progress notes. */
  log?: (s: string) => void;
  /** Move the process's sockets too (the agent provides the cluster's side). */
  network?: NetworkSide;
  /** Send the pages of code and libraries too (the optimized total copy off; for comparison). */
  copyAll?: boolean;
}

/** What socket migration needs from the cluster, provided by the agent. */
export interface NetworkSide {
  /** This node's address, as peers know it. */
  nodeAddr: string;
  /** Addresses of the cluster's nodes (those running ppm). */
  clusterAddrs: string[];
  /** Adds `entries` on the node at `addr` (through its agent); resolves to their removal. */
  addAt(addr: string, entries: Redirect[]): Promise<() => Promise<void>>;
  /** Opens the connections to those nodes ahead, before the process is frozen. */
  prepare?(addrs: Iterable<string>): Promise<void>;
}

/**
 * Migrates `pid` over `channel`; throws a PpmError saying the process runs
 * on here (it was resumed, or never stopped) on any failure.
 */
export async function migrateOut(
  pid: number,
  channel: MigrationChannel,
  opts: MigrateOutOptions,
): Promise<MigrateResult> {
  try {
    return await migrate(pid, channel, opts);
  } catch (e) {
    throw asRefusal(e);
  }
}

/**
 * The bounds of a migration's steps: each step's own (`stepTimeoutMs`), cut
 * to what is left of the whole move's deadline (`deadlineMs`), past which it
 * is refused with EXIT.TIMEOUT.
 */
function stepBounds(opts: MigrateOutOptions, channel: MigrationChannel) {
  const stepMax = opts.stepTimeoutMs ?? 120_000;
  const until = opts.deadlineMs ? Date.now() + opts.deadlineMs : Infinity;
  const pastDeadline = () =>
    refuse(
      `its deadline of ${opts.deadlineMs! / 1000} s passed before the destination ran it`,
      "give a longer --deadline, or move it when the link or the destination is less busy",
      EXIT.TIMEOUT,
    );
  /** The bound of the next step: the step's, or what is left of the deadline (none: refused). */
  const step = (): number => {
    const left = until - Date.now();
    if (left <= 0) throw pastDeadline();
    return Math.min(stepMax, left);
  };
  /** The destination's next message, within the step or the deadline. */
  const answer = async (): Promise<unknown> => {
    const bound = step();
    try {
      return await channel.recv(bound);
    } catch (e) {
      throw bound < stepMax && Date.now() >= until - 50 ? pastDeadline() : e;
    }
  };
  return { stepMax, step, answer, pastDeadline };
}

/** `raw` as one of the messages `ops`, or a refusal beginning with `what`. */
function expectAnswer<K extends Op>(raw: unknown, what: string, ...ops: K[]): MessageOf<K> {
  try {
    return expectMessage(raw, ...ops);
  } catch (e) {
    throw refuse(`${what}: ${(e as PpmError).why}`, "", EXIT.FAILURE, e);
  }
}

async function migrate(
  pid: number,
  channel: MigrationChannel,
  opts: MigrateOutOptions,
): Promise<MigrateResult> {
  const t0 = performance.now();
  const { stepMax, step, answer, pastDeadline } = stepBounds(opts, channel);
  const reasons = [...await checkReasons(pid), ...await schedulerReasons(pid)];
  if (reasons.length) throw refuse(`process ${pid} cannot be migrated: ${reasons.join("; ")}`);
  opts.onPhase?.("offer");
  const offer = await buildOffer(
    pid,
    opts.node,
    opts.origin,
    opts.moves ?? 0,
    opts.network?.nodeAddr,
  );
  await channel.send(offer);
  const reply = expectAnswer(
    await answer(),
    "the destination's answer to the offer",
    "offer-reply",
  );
  if (!reply.ok) throw refuse(`the destination refused: ${reply.reason ?? "no answer"}`);
  if (opts.network?.prepare && offer.sockets.length) {
    // The nodes that will rewrite flows, reached before the freeze rather than during it.
    const guess = planRedirects(
      offer.sockets,
      opts.network.nodeAddr,
      "",
      opts.network.clusterAddrs,
    );
    await opts.network.prepare(guess.peers.keys());
  }
  const tOffer = performance.now();

  // Keep the process's standard streams: its output keeps going where it went.
  const keep = keepStdio(pid, offer.stdin);
  const dropKept = () => {
    for (const fd of Object.values(keep)) if (fd !== undefined) close(fd);
  };

  let bytes = 0;
  const sink = channel.streamSink(STREAM.IMAGE);
  opts.onPhase?.("dump");
  let stats: CheckpointStats;
  try {
    stats = await checkpoint(pid, async (c) => {
      bytes += c.length;
      const bound = step();
      await withTimeout(sink(c), bound, () => {
        channel.close();
        return bound < stepMax
          ? pastDeadline()
          : new Error(`the destination took no data for ${bound / 1000} s (link down?)`);
      });
      opts.onProgress?.({ sent: bytes, expected: offer.estimatedBytes });
    }, {
      hold: true,
      network: opts.network ? { nodeAddr: opts.network.nodeAddr } : undefined,
      copyAll: opts.copyAll,
    });
  } catch (e) {
    dropKept();
    throw e instanceof PpmError
      ? e
      : refuse(`the image could not be sent: ${(e as Error).message}`, "", EXIT.FAILURE, e);
  }
  const held = stats.held!;
  const net = stats.network;
  const forwards = new RedirectSet();
  const undo: (() => Promise<void>)[] = [];
  const tSent = performance.now();
  let commitSent = false;
  /** The process runs at the destination: this copy ends, the redirects stay; the figures. */
  const handOver = (newPid: number, restoreStats: unknown): MigrateResult => {
    held.kill();
    const redirectIds = [...(net?.drops.ids ?? []), ...forwards.ids];
    net?.handOver();
    forwards.keep();
    const tEnd = performance.now();
    const { held: _held, network: _net, ...ck } = stats;
    return {
      pid: newPid,
      bytes,
      sockets: net?.entries.length ?? 0,
      redirectIds,
      checkpoint: ck,
      restore: restoreStats,
      timesUs: {
        offer: us(tOffer - t0),
        frozen: us(tEnd - tOffer),
        dumpAndSend: us(tSent - tOffer),
        restoreAndCommit: us(tEnd - tSent),
        total: us(tEnd - t0),
      },
    };
  };
  try {
    await channel.endStream(STREAM.IMAGE);
    opts.onPhase?.("restore");
    const restored = expectAnswer(
      await answer(),
      "the destination's report of the restore",
      "restored",
    );
    if (!restored.ok) {
      throw refuse(`the destination could not restore it: ${restored.reason ?? "no answer"}`);
    }
    if (net?.entries.length && opts.network) {
      // The flows' new path, in place before the destination's sockets say a word.
      const plan = planRedirects(
        net.entries,
        opts.network.nodeAddr,
        restored.addr ?? "",
        opts.network.clusterAddrs,
      );
      if (plan.forwards.some((r) => r.action === "forward")) {
        const changed = await enableForwarding();
        if (changed.length) opts.log?.(`forwarding for migrated flows: ${changed.join(", ")}`);
      }
      if (plan.forwards.length) forwards.add(plan.forwards);
      for (const [addr, list] of plan.peers) undo.push(await opts.network.addAt(addr, list));
    }
    // From the commit on, the process may run at the destination: should this agent die or
    // the answer never come, the copy here stays stopped (a SIGSTOP waits for it) and frozen.
    step(); // past the deadline: abandoned here, before the point of no return
    net?.journal("committing");
    kill(pid, 19);
    opts.onPhase?.("commit");
    commitSent = true;
    const relay = new KeptRelay(keep, newRelayToken(), opts.log);
    await channel.send({ op: "commit", relay: relay.token } satisfies MessageOf<"commit">);
    const notConfirmed = "the destination did not confirm that the process runs";
    const done = expectAnswer(await channel.recv(stepMax), notConfirmed, "committed");
    if (!done.ok) throw refuse(notConfirmed);
    const result = handOver(restored.pid, restored.stats);
    if (opts.onRelay) opts.onRelay(relay);
    else relay.run(channel).finally(() => relay.close());
    return result;
  } catch (e) {
    const outcome = commitSent ? await learnOutcome(pid, offer.comm, opts) : undefined;
    if (outcome === "running") {
      // It runs at the destination: this copy ends as after a confirmed commit.
      dropKept();
      channel.close();
      opts.log?.(`process ${pid}: the destination did not confirm, but it runs there`);
      return handOver(pid, undefined);
    }
    if (outcome === "absent") {
      // Not there, and no longer coming: it runs on here (the SIGSTOP sent before the commit is lifted).
      forwards.removeAll();
      for (const u of undo) await u().catch(() => {});
      net?.thaw();
      held.resume();
      kill(pid, 18);
      dropKept();
      channel.close();
      throw refuse(
        `the destination did not confirm (${
          (e as Error).message
        }), and its agent since says the process is not there`,
        "",
        EXIT.FAILURE,
        e,
      );
    }
    if (commitSent) {
      // Two live copies must never be: the one here stays stopped, its flows still frozen
      // and redirected, until someone who knows the outcome decides.
      forwards.keep();
      net?.abandon();
      held.detachStopped();
      dropKept();
      channel.close();
      throw new PpmError(
        `${IN_DOUBT} ${pid} is unknown`,
        `the destination was told to run it and did not confirm (${(e as Error).message})`,
        `it stays stopped here; if it runs at the destination, end it here (kill -9 ${pid}), else let it go on here (kill -CONT ${pid}; its TCP connections, if any, stay frozen); see docs/security.md`,
        EXIT.FAILURE,
        { cause: e },
      );
    }
    forwards.removeAll();
    for (const u of undo) await u().catch(() => {});
    net?.thaw();
    held.resume();
    dropKept();
    try {
      await channel.send({ op: "abort" } satisfies MessageOf<"abort">);
    } catch { /* gone */ }
    throw e;
  }
}
