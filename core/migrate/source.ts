/**
 * The source side of `ppm migrate`: ask the destination first, freeze and
 * stream the image, and end the local copy only once the destination says
 * the process runs there (or make it the process's deputy, core/deputy,
 * when the caller asks for one). Every failure before that resumes the
 * process here, as if nothing had happened.
 *
 * @module
 */
import {
  PageSender,
  type PageStreamTicket,
  pagestreamUnusable,
  wireBytes,
} from "../transport/pagestream.ts";
import { listThreads, type ThreadGroup } from "../ptrace/group.ts";
import { schedulerReasons } from "../host/cgroup.ts";
import { close, kill, pidfdGetfd, pidfdOpen } from "../../ffi/libc.ts";
import { KeptRelay, type KeptStdio } from "../relay/kept.ts";
import { newRelayToken } from "../relay/record.ts";
import { FdRelay, FdRelaySet, fdStreams, relayRole } from "../relay/fds.ts";
import type { FdEntry } from "../image/schema.ts";
import { PPM_ABI_VERSION } from "../../ffi/uapi.ts";
import {
  precopy,
  PRECOPY_DEFAULTS,
  precopyChoice,
  type PrecopyOutcome,
  type PrecopySettings,
} from "./precopy.ts";
import type { RoundStats } from "../dump/precopy.ts";
import { checkpoint, type CheckpointStats } from "../checkpoint/checkpoint.ts";
import { checkReasons } from "../dump/check.ts";
import { fileId, fileIdentity, readFds } from "../dump/files.ts";
import type { ExpectedFile } from "../restore/compat.ts";
import { inspectSockets } from "../dump/sockets.ts";
import type { Redirect } from "../../ffi/redirect.ts";
import { enableForwarding } from "../redirect/forwarding.ts";
import { planLocks, planRedirects } from "../redirect/redirect_plan.ts";
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
  /** The deputy that stands in for the process here (its PID is the process's), when one does. */
  deputy?: { pid: number };
  /**
   * What did not go as it should, though the process moved (no deputy could
   * be made, no dirty tracking for pre-copy).
   */
  warnings?: string[];
  /** The pre-copy rounds, when there were some. */
  precopy?: {
    rounds: RoundStats[];
    bytes: number;
    stopped: PrecopyOutcome["stopped"];
    /** Pages the freeze left to them (unchanged since the last round). */
    held: number;
  };
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
    tids: listThreads(pid).filter((t) => t !== pid),
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
   * Called with the relays of its descriptors whose other end stays here,
   * once they run on the channel: the caller keeps the connection open
   * until they ended (and stops them when the process ended). Without it,
   * they run until the connection ends.
   */
  onFdRelays?: (relays: FdRelaySet) => void;
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
  /**
   * Pre-copy (core/migrate/precopy.ts): rounds that copy the memory while
   * the process runs, so that the freeze sends only what it wrote since;
   * unset fields take {@link PRECOPY_DEFAULTS}.
   */
  precopy?: Partial<PrecopySettings>;
  /**
   * Leave a deputy here (core/deputy), decided before the freeze: once the
   * destination runs the process, the copy here becomes its deputy instead
   * of being killed. When that fails it is killed as without one, and the
   * result's `warnings` say why.
   */
  deputy?: DeputyMaker;
}

/** What makes the deputy (core/agent/deputies.ts provides it). */
export interface DeputyMaker {
  /**
   * Makes the frozen process its deputy; throws when none was made (the
   * process is then still held, to be ended).
   */
  become(group: ThreadGroup, keep?: number[]): Promise<{ pid: number }>;
  /**
   * Once it is made: it closes its copy of relayed descriptor `fd`, whose
   * relay ended (the peer here then sees the end).
   */
  closeFd?(fd: number): void;
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
  /**
   * Removes on the node at `addr` the drops identical to `locks`; resolves to how many were
   * there. Only after the rewrites towards that node are gone (see {@link releaseDestinationLocks}).
   */
  releaseAt?(addr: string, locks: Redirect[]): Promise<number>;
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

/** The bounds of a migration's steps (see {@link stepBounds}). */
interface StepBounds {
  /** Each step's own bound. */
  stepMax: number;
  /** The bound of the next step: the step's, or what is left of the deadline (none: refused). */
  step: () => number;
  /** The destination's next message, within the step or the deadline. */
  answer: () => Promise<unknown>;
  /** The refusal once the deadline passed. */
  pastDeadline: () => PpmError;
}

/**
 * The bounds of a migration's steps: each step's own (`stepTimeoutMs`), cut
 * to what is left of the whole move's deadline (`deadlineMs`), past which it
 * is refused with EXIT.TIMEOUT.
 */
function stepBounds(opts: MigrateOutOptions, channel: MigrationChannel): StepBounds {
  const stepMax = opts.stepTimeoutMs ?? 120_000;
  const until = opts.deadlineMs ? Date.now() + opts.deadlineMs : Infinity;
  const pastDeadline = () =>
    refuse(
      `its deadline of ${opts.deadlineMs! / 1000} s passed before the destination ran it`,
      "give a longer --deadline, or move it when the link or the destination is less busy",
      EXIT.TIMEOUT,
    );
  const step = (): number => {
    const left = until - Date.now();
    if (left <= 0) throw pastDeadline();
    return Math.min(stepMax, left);
  };
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

/** A migration past the freeze: what ending it either way needs. */
interface Move {
  /** The process. */
  pid: number;
  /** The connection to the destination. */
  channel: MigrationChannel;
  /** The options of {@link migrateOut}. */
  opts: MigrateOutOptions;
  /** The offer the destination accepted. */
  offer: Offer;
  /** Copies of the process's standard streams, for the relay. */
  keep: KeptStdio;
  /** Bytes of image sent. */
  bytes: number;
  /** The checkpoint's figures, with the held process and its frozen sockets. */
  stats: CheckpointStats;
  /** Redirect entries added on this node for the flows (FORWARD). */
  forwards: RedirectSet;
  /** Removals of the entries added on other nodes (PEER). */
  undo: (() => Promise<void>)[];
  /** From here on, the process may run at the destination. */
  commitSent: boolean;
  /** The destination's address, as peers know it (once it restored the process). */
  destAddr?: string;
  /** The pre-copy rounds, when there were some. */
  pre?: PrecopyOutcome;
  /** Warnings so far (the offer's). */
  warnings: string[];
  /**
   * When it started, the offer was accepted, the freeze began (after the
   * pre-copy rounds), the image was sent and the destination confirmed that
   * the process runs there (performance.now()).
   */
  times: { t0: number; tOffer: number; tFreeze: number; tSent: number; tRunning?: number };
}

/**
 * The steps of a migration, in order: offer, freeze and stream the image,
 * wait for the restore, redirect the flows, commit. A failure before the
 * freeze leaves the process untouched; after it, {@link settleFailure}
 * decides where it runs.
 */
async function migrate(
  pid: number,
  channel: MigrationChannel,
  opts: MigrateOutOptions,
): Promise<MigrateResult> {
  const t0 = performance.now();
  const bounds = stepBounds(opts, channel);
  const warnings: string[] = [];
  const { offer, ticket } = await offerProcess(pid, channel, opts, bounds, warnings);
  const tOffer = performance.now();
  // Connected before anything is frozen; the pages go there during the freeze.
  const pages = ticket ? await openPageStream(pid, channel, ticket, bounds) : undefined;
  let pre, tFreeze, keep, sent;
  try {
    pre = offer.precopy ? await sendPrecopy(pid, channel, opts, bounds, pages) : undefined;
    tFreeze = performance.now();
    // Keep the process's standard streams: its output keeps going where it went.
    keep = keepStdio(pid, offer.stdin);
    sent = await freezeAndSend(pid, channel, opts, bounds, offer, keep, pre, pages);
  } catch (e) {
    pages?.stop();
    throw e;
  }
  const m: Move = {
    pid,
    channel,
    opts,
    offer,
    keep,
    ...sent,
    forwards: new RedirectSet(),
    undo: [],
    commitSent: false,
    pre,
    warnings,
    times: { t0, tOffer, tFreeze, tSent: performance.now() },
  };
  try {
    const restored = await waitRestored(m, bounds);
    m.destAddr = restored.addr;
    await redirectFlows(m, restored.addr ?? "");
    return await commit(m, bounds, restored);
  } catch (e) {
    return await settleFailure(m, e);
  }
}

/**
 * Checks that `pid` can move, offers it to the destination and waits for
 * its yes; opens the connections to the nodes that will rewrite its flows.
 */
async function offerProcess(
  pid: number,
  channel: MigrationChannel,
  opts: MigrateOutOptions,
  bounds: StepBounds,
  warnings: string[],
): Promise<{ offer: Offer; ticket?: PageStreamTicket }> {
  const reasons = [...await checkReasons(pid, { relay: true }), ...await schedulerReasons(pid)];
  if (reasons.length) throw refuse(`process ${pid} cannot be migrated: ${reasons.join("; ")}`);
  opts.onPhase?.("offer");
  const offer = await buildOffer(
    pid,
    opts.node,
    opts.origin,
    opts.moves ?? 0,
    opts.network?.nodeAddr,
  );
  const pre = precopyChoice({ ...PRECOPY_DEFAULTS, ...opts.precopy }, offer.estimatedBytes);
  if (pre.precopy) offer.precopy = true;
  else if (pre.warning) warnings.push(pre.warning);
  const noStream = channel.addrs ? await pagestreamUnusable() : "the link is not TCP";
  if (!noStream) offer.pagestream = 1;
  else opts.log?.(`process ${pid}: its pages go in the image stream: ${noStream}`);
  await channel.send(offer);
  const reply = expectAnswer(
    await bounds.answer(),
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
  return { offer, ticket: offer.pagestream ? reply.pages : undefined };
}

/** Starts the page stream to the destination (it listens since its yes). */
async function openPageStream(
  pid: number,
  channel: MigrationChannel,
  ticket: PageStreamTicket,
  bounds: StepBounds,
): Promise<PageSender> {
  const to = channel.addrs!.remote;
  try {
    return await PageSender.start({ to, ticket, pid, timeoutMs: bounds.stepMax });
  } catch (e) {
    throw refuse(
      `the page stream to ${to}:${ticket.port} could not start: ${(e as Error).message}`,
      "the agents must reach each other on any TCP port, not only the agents' one",
      EXIT.FAILURE,
      e,
    );
  }
}

/**
 * A sink into `stream` whose every chunk must leave within the step's
 * bound: a destination that takes nothing (a cut link) closes the channel
 * and fails the migration, past the deadline with its own error.
 */
function boundedSink(
  channel: MigrationChannel,
  stream: number,
  { step, stepMax, pastDeadline }: StepBounds,
): (c: Uint8Array) => Promise<void> {
  const sink = channel.streamSink(stream);
  return async (c) => {
    const bound = step();
    await withTimeout(sink(c), bound, () => {
      channel.close();
      return bound < stepMax
        ? pastDeadline()
        : new Error(`the destination took no data for ${bound / 1000} s (link down?)`);
    });
  };
}

/**
 * The pre-copy rounds (core/migrate/precopy.ts), their pages on the page
 * stream when there is one, else on STREAM.PRECOPY; that stream then ends; the process runs on throughout, and a
 * failure leaves it running here.
 */
async function sendPrecopy(
  pid: number,
  channel: MigrationChannel,
  opts: MigrateOutOptions,
  bounds: StepBounds,
  pages: PageSender | undefined,
): Promise<PrecopyOutcome> {
  // On the page stream when there is one; the link's stream 5 then ends empty.
  const send = pages ? { stream: pages } : boundedSink(channel, STREAM.PRECOPY, bounds);
  try {
    const out = await precopy(pid, { ...PRECOPY_DEFAULTS, ...opts.precopy }, send, opts.copyAll);
    await channel.endStream(STREAM.PRECOPY);
    const r = out.rounds;
    opts.log?.(
      `process ${pid}: ${r.length} pre-copy rounds (${r.map((x) => x.dirty).join(", ")} pages; ` +
        `${out.stopped})`,
    );
    return out;
  } catch (e) {
    throw e instanceof PpmError
      ? e
      : refuse(`the pre-copy rounds failed: ${(e as Error).message}`, "", EXIT.FAILURE, e);
  }
}

/** Closes the kept copies of the process's standard streams. */
function dropKept(keep: KeptStdio): void {
  for (const fd of Object.values(keep)) if (fd !== undefined) close(fd);
}

/**
 * Freezes the process and streams its image (the process stays held); on
 * failure the checkpoint resumed it, and the kept streams are closed.
 */
async function freezeAndSend(
  pid: number,
  channel: MigrationChannel,
  opts: MigrateOutOptions,
  bounds: StepBounds,
  offer: Offer,
  keep: KeptStdio,
  pre: PrecopyOutcome | undefined,
  pages: PageSender | undefined,
): Promise<{ bytes: number; stats: CheckpointStats }> {
  let bytes = 0;
  const send = boundedSink(channel, STREAM.IMAGE, bounds);
  opts.onPhase?.("dump");
  try {
    const stats = await checkpoint(pid, async (c) => {
      bytes += c.length;
      await send(c);
      opts.onProgress?.({ sent: bytes, expected: offer.estimatedBytes });
    }, {
      hold: true,
      network: opts.network ? { nodeAddr: opts.network.nodeAddr } : undefined,
      copyAll: opts.copyAll,
      precopy: pre?.state,
      pages,
    });
    if (stats.pagestream) bytes += wireBytes(stats.pagestream);
    return { bytes, stats };
  } catch (e) {
    dropKept(keep);
    throw e instanceof PpmError
      ? e
      : refuse(`the image could not be sent: ${(e as Error).message}`, "", EXIT.FAILURE, e);
  }
}

/** Ends the image stream and waits for the destination to report the process restored. */
async function waitRestored(
  m: Move,
  bounds: StepBounds,
): Promise<MessageOf<"restored"> & { ok: true }> {
  await m.channel.endStream(STREAM.IMAGE);
  m.opts.onPhase?.("restore");
  const restored = expectAnswer(
    await bounds.answer(),
    "the destination's report of the restore",
    "restored",
  );
  if (!restored.ok) {
    throw refuse(`the destination could not restore it: ${restored.reason ?? "no answer"}`);
  }
  return restored;
}

/**
 * The flows' new path, in place before the destination's sockets say a
 * word: forwarding here for outside peers, rewriting on cluster peers' nodes.
 */
async function redirectFlows(m: Move, destAddr: string): Promise<void> {
  const net = m.stats.network;
  const network = m.opts.network;
  if (!net?.entries.length || !network) return;
  const plan = planRedirects(net.entries, network.nodeAddr, destAddr, network.clusterAddrs);
  if (plan.forwards.some((r) => r.action === "forward")) {
    const changed = await enableForwarding();
    if (changed.length) m.opts.log?.(`forwarding for migrated flows: ${changed.join(", ")}`);
  }
  // The peers' rewrites first: a peer whose packets this node forwarded before its own node
  // rewrote them would get the new node's answers from the new address, which it does not know
  // yet, and drop them (a keepalive probe lost at the handover).
  for (const [addr, list] of plan.peers) m.undo.push(await network.addAt(addr, list));
  if (plan.forwards.length) m.forwards.add(plan.forwards);
}

/**
 * Tells the destination to run the process and waits for it to confirm;
 * then this copy ends and the relay of its standard streams starts.
 */
async function commit(
  m: Move,
  { step, stepMax }: StepBounds,
  restored: MessageOf<"restored"> & { ok: true },
): Promise<MigrateResult> {
  // From the commit on, the process may run at the destination: should this agent die or
  // the answer never come, the copy here stays stopped (a SIGSTOP waits for it) and frozen.
  step(); // past the deadline: abandoned here, before the point of no return
  m.stats.network?.journal("committing");
  kill(m.pid, 19);
  m.opts.onPhase?.("commit");
  m.commitSent = true;
  const relay = new KeptRelay(m.keep, newRelayToken(), m.opts.log);
  await m.channel.send({ op: "commit", relay: relay.token } satisfies MessageOf<"commit">);
  const notConfirmed = "the destination did not confirm that the process runs";
  const done = expectAnswer(await m.channel.recv(stepMax), notConfirmed, "committed");
  if (!done.ok) throw refuse(notConfirmed);
  // It runs there: the freeze is over. Ending this copy (freeing its memory) comes after.
  m.times.tRunning = performance.now();
  // Copies of the relayed descriptors, taken while the process is still held here; once a
  // relay ended, the deputy (if one is made) closes its copy too.
  let deputy = false;
  const closeFd = (fd: number) => deputy && m.opts.deputy?.closeFd?.(fd);
  const fdRelays = takeRelays(m.pid, m.stats.relayed ?? [], closeFd, m.opts.log);
  const result = await handOver(m, restored.pid, restored.stats);
  deputy = result.deputy !== undefined;
  fdRelays.run(m.channel);
  m.opts.onFdRelays?.(fdRelays);
  if (m.opts.onRelay) m.opts.onRelay(relay);
  else relay.run(m.channel).finally(() => relay.close());
  return result;
}

/**
 * The relays of the descriptors whose other end stays here (core/relay/fds.ts):
 * each a copy of the process's end; `closeFd(fd)` once one ended. One that cannot be copied is logged
 * (the process there then reads an end of file on it).
 */
function takeRelays(
  pid: number,
  relayed: FdEntry[],
  closeFd: (fd: number) => void,
  log?: (s: string) => void,
): FdRelaySet {
  const out: FdRelay[] = [];
  if (!relayed.length) return new FdRelaySet(out);
  let pidfd = -1;
  try {
    pidfd = pidfdOpen(pid);
    relayed.forEach((f, i) => {
      try {
        const copy = pidfdGetfd(pidfd, f.fd);
        const say = (s: string) => log?.(`process ${pid} fd ${f.fd}: ${s}`);
        const role = relayRole(f.relayed!.end, "source");
        out.push(new FdRelay(copy, role, fdStreams(i, "source"), say, () => closeFd(f.fd)));
      } catch (e) {
        log?.(`process ${pid} fd ${f.fd}: no relay: ${(e as Error).message}`);
      }
    });
  } catch (e) {
    log?.(`process ${pid}: its descriptors are not relayed: ${(e as Error).message}`);
  } finally {
    if (pidfd >= 0) close(pidfd);
  }
  return new FdRelaySet(out);
}

/** What stands in for a process here once it runs elsewhere: its deputy, or nothing. */
export interface StandIn {
  /** The deputy, when one was made. */
  deputy?: { pid: number };
  /** Why none was made though one was asked for. */
  warnings: string[];
}

/**
 * The copy here of process `pid`, which runs at the destination now,
 * becomes its deputy when `deputy` is given, else (and when that fails) it
 * is killed.
 */
export async function standIn(
  held: ThreadGroup,
  pid: number,
  deputy: DeputyMaker | undefined,
  keep: number[] = [],
): Promise<StandIn> {
  if (!deputy) {
    held.kill();
    return { warnings: [] };
  }
  try {
    return { deputy: await deputy.become(held, keep), warnings: [] };
  } catch (e) {
    held.kill();
    const why = e instanceof PpmError
      ? [e.what, e.why].filter(Boolean).join(": ") + (e.fix ? ` (${e.fix})` : "")
      : (e as Error).message;
    return {
      warnings: [
        `no deputy stands in for process ${pid} here: ${why}; it was ended as without one, ` +
        "and its parent sees it killed (SIGKILL)",
      ],
    };
  }
}

/**
 * The process runs at the destination: this copy ends or becomes its
 * deputy, the redirects stay; the figures (the time the deputy took is
 * counted apart: the process ran at the destination meanwhile).
 */
async function handOver(m: Move, newPid: number, restoreStats: unknown): Promise<MigrateResult> {
  const { stats, forwards, times } = m;
  const net = stats.network;
  const tStand = performance.now();
  const keep = (stats.relayed ?? []).map((f) => f.fd);
  const stood = await standIn(stats.held!, m.pid, m.opts.deputy, keep);
  const deputyMs = stood.deputy ? performance.now() - tStand : 0;
  const redirectIds = [...(net?.drops.ids ?? []), ...forwards.ids];
  net?.handOver();
  forwards.keep();
  const tEnd = performance.now() - deputyMs;
  const tRunning = times.tRunning ?? tEnd;
  const { held: _held, network: _net, ...ck } = stats;
  return {
    pid: newPid,
    bytes: m.bytes,
    sockets: net?.entries.length ?? 0,
    redirectIds,
    checkpoint: ck,
    restore: restoreStats,
    timesUs: {
      offer: us(times.tOffer - times.t0),
      ...(m.pre ? { precopy: us(times.tFreeze - times.tOffer) } : {}),
      frozen: us(tRunning - times.tFreeze),
      dumpAndSend: us(times.tSent - times.tFreeze),
      restoreAndCommit: us(tRunning - times.tSent),
      // After the freeze, the process running there: this copy ends (or becomes the deputy).
      handOver: us(tEnd - tRunning),
      total: us(tEnd - times.t0),
      ...(stood.deputy ? { deputy: us(deputyMs) } : {}),
    },
    ...(stood.deputy ? { deputy: stood.deputy } : {}),
    ...(m.pre
      ? {
        precopy: {
          rounds: m.pre.rounds,
          bytes: m.pre.bytes,
          stopped: m.pre.stopped,
          held: ck.pages.precopied,
        },
      }
      : {}),
    ...([...m.warnings, ...stood.warnings].length
      ? { warnings: [...m.warnings, ...stood.warnings] }
      : {}),
  };
}

/** Undoes the move here: the redirects go, the sockets and the process run again. */
async function undoHere(m: Move): Promise<void> {
  m.forwards.removeAll();
  for (const u of m.undo) await u().catch(() => {});
  m.stats.network?.thaw();
  m.stats.held!.resume();
}

/**
 * After the destination said the process is not there (its agent died
 * holding the restored copy, so nothing there removed its locks): asks it
 * to remove the drops that kept the connections quiet until the commit
 * (core/redirect/redirect_plan.ts `planLocks`). Only now: until the
 * rewrites towards it were gone (undoHere), the peers' packets still went
 * there, and without the drops its kernel would have answered them with a
 * reset. A failure is logged; the drops then expire when idle.
 */
async function releaseDestinationLocks(m: Move): Promise<void> {
  const entries = m.stats.network?.entries ?? [];
  const { destAddr } = m;
  if (!destAddr || !m.opts.network?.releaseAt) return;
  const locks = planLocks(entries, destAddr);
  if (!locks.length) return;
  try {
    const n = await m.opts.network.releaseAt(destAddr, locks);
    m.opts.log?.(`process ${m.pid}: the destination released ${n} of its ${locks.length} locks`);
  } catch (e) {
    m.opts.log?.(
      `process ${m.pid}: the destination's locks stay until they expire (${(e as Error).message})`,
    );
  }
}

/**
 * A step after the freeze failed with `e`. Before the commit, the process
 * runs on here; after it, the destination is asked whether it runs there:
 * yes, this copy ends as after a confirmed commit; no, it runs on here;
 * unknown, it stays stopped here, in doubt.
 */
async function settleFailure(m: Move, e: unknown): Promise<MigrateResult> {
  const { pid, channel } = m;
  const outcome = m.commitSent ? await learnOutcome(pid, m.offer.comm, m.opts) : undefined;
  if (outcome === "running") {
    // It runs at the destination: this copy ends as after a confirmed commit.
    dropKept(m.keep);
    channel.close();
    m.opts.log?.(`process ${pid}: the destination did not confirm, but it runs there`);
    return await handOver(m, pid, undefined);
  }
  if (outcome === "absent") {
    // Not there, and no longer coming: it runs on here (the SIGSTOP sent before the commit is lifted).
    await undoHere(m);
    await releaseDestinationLocks(m);
    kill(pid, 18);
    dropKept(m.keep);
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
  if (m.commitSent) throw leaveInDoubt(m, e);
  await undoHere(m);
  dropKept(m.keep);
  try {
    await channel.send({ op: "abort" } satisfies MessageOf<"abort">);
  } catch { /* gone */ }
  throw e;
}

/**
 * Two live copies must never be: the one here stays stopped, its flows still
 * frozen and redirected, until someone who knows the outcome decides.
 */
function leaveInDoubt(m: Move, e: unknown): PpmError {
  const { pid } = m;
  m.forwards.keep();
  m.stats.network?.abandon();
  m.stats.held!.detachStopped();
  dropKept(m.keep);
  m.channel.close();
  return new PpmError(
    `${IN_DOUBT} ${pid} is unknown`,
    `the destination was told to run it and did not confirm (${(e as Error).message})`,
    `it stays stopped here; if it runs at the destination, end it here (kill -9 ${pid}), else let it go on here (kill -CONT ${pid}; its TCP connections, if any, stay frozen); see docs/security.md`,
    EXIT.FAILURE,
    { cause: e },
  );
}
