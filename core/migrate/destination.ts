/**
 * The destination side of a migration: answer the offer, restore the
 * streamed image (never written to disk) with the process held stopped,
 * let it run on `commit`, and relay its stdout and stderr back to the
 * source. Without a commit the copy here is removed.
 *
 * @module
 */
import { close, O, PAGE_SIZE } from "../../ffi/libc.ts";
import type { FdEntry, LoadedImage } from "../image/schema.ts";
import { PPM_ABI_VERSION, PPM_FEAT, ppmPlanHeader, ppmPlanVma } from "../../ffi/uapi.ts";
import { withDevice } from "../../ffi/device.ts";
import { PageReceiver, pagestreamUnusable } from "../transport/pagestream.ts";
import { PpmError } from "../errors.ts";
import { fault } from "../fault.ts";
import { moveToScope, underSystemd } from "../host/systemd.ts";
import {
  checkCpu,
  checkFileIds,
  checkFiles,
  checkKernel,
  checkPidFree,
} from "../restore/compat.ts";
import { checkOffer } from "./offer_check.ts";
import type { StubFiles } from "../restore/launch.ts";
import { isDeputyProcess } from "../deputy/record.ts";
import { planLocks, planRedirects } from "../redirect/redirect_plan.ts";
import { RedirectSet, removeStaleDrops } from "../redirect/table.ts";
import {
  createStaged,
  loadStaged,
  restoreImage,
  type RestoreStats,
  type StagedPlan,
} from "../restore/restore.ts";
import { ensureStub } from "../restore/stub.ts";
import {
  checkPortsFree,
  dropSockets,
  endRepair,
  rebuildSockets,
  type RebuiltSocket,
} from "../restore/sockets.ts";
import {
  type Commit,
  MessageError,
  type Offer,
  receiveMessage,
  type Restored,
  type StdinMode,
} from "./messages.ts";
import { claimedOp } from "../untrusted.ts";
import { type MigrationChannel, STREAM } from "../transport/channel.ts";
import { ArrivedRelay } from "../relay/arrived.ts";
import { PrecopyStore } from "../restore/precopy_store.ts";
import { Vessel } from "../restore/vessel.ts";
import { ensureKeeper, type KeeperId, keeperId, startKeeper } from "../relay/keeper.ts";
import type { RelayEnd } from "../relay/kept.ts";
import { FdRelay, fdStreams, relayRole } from "../relay/fds.ts";

/**
 * Under systemd, a process that arrived leaves the agent's cgroup for a
 * scope of its own, so that restarting or losing the agent never ends it.
 * A failure is logged: the process runs on, in the agent's cgroup.
 */
async function ownScope(
  pid: number | undefined,
  keeper: number | undefined,
  offer: Offer,
  log: (s: string) => void,
): Promise<void> {
  const pids = [pid, keeper].filter((p) => p !== undefined);
  if (!underSystemd() || !pids.length) return;
  const tag = crypto.getRandomValues(new Uint8Array(3));
  const unit = `ppm-${offer.pid}-${
    [...tag].map((b) => b.toString(16).padStart(2, "0")).join("")
  }.scope`;
  try {
    await moveToScope(pids, {
      unit,
      description: pid === undefined
        ? `ppm: the relay keeper of process ${offer.pid} (${offer.comm}) from ${offer.from}`
        : `ppm: process ${pid} (${offer.comm}) from ${offer.from}`,
    });
    log(`process ${pid ?? `${offer.pid}'s relay keeper`} from ${offer.from} runs in ${unit}`);
  } catch (e) {
    log(
      `process ${pid} stays in the agent's cgroup (restarting the agent would end it): ${
        (e as Error).message
      }`,
    );
  }
}

/** A process that arrived here. */
export interface Arrival {
  /** Its PID here. */
  pid: number;
  /** Where it came from. */
  from: string;
  /** Where it started. */
  origin: { node: string; pid: number };
  /** Moves including this one. */
  moves: number;
  /** When it arrived (ISO). */
  at: string;
  /** The relay of its standard streams, running on the migration connection. */
  relay?: ArrivalRelay;
}

/** The relay of an arrival's standard streams. */
export interface ArrivalRelay {
  /** The relay (attach it to the next connection when this one broke). */
  relay: ArrivedRelay;
  /** How its run on the migration connection ended. */
  done: Promise<RelayEnd>;
  /** Names it to the source's agent. */
  token: string;
  /** The keeper holding its FIFOs, when one started. */
  keeper?: KeeperId;
}

/** The image stream with the test fault points after its first chunk. */
async function* withImageFaults(source: AsyncIterable<Uint8Array>) {
  let first = true;
  for await (const chunk of source) {
    yield chunk;
    if (first) {
      first = false;
      await fault("crash-mid-image");
      await fault("image-stall");
    }
  }
}

/** Options of {@link migrateIn}. */
export interface MigrateInOptions {
  /** Bound of each step (default 120 s). */
  stepTimeoutMs?: number;
  /** Progress notes. */
  log?: (s: string) => void;
  /** Where the relay FIFOs live. */
  runDir: string;
  /** Take sockets too: this node's address (the agent knows it). */
  network?: { nodeAddr: string };
  /** The offer, when the caller already read and checked it (`checkOffer`). */
  offer?: Offer;
  /**
   * For an offer whose PID a deputy holds here: how the process takes its
   * deputy's place (core/agent/deputies.ts `homecoming`), or undefined
   * when that deputy is not the process's own (refused then).
   */
  homecoming?: (pid: number, origin: Offer["origin"]) => HomeLaunch | undefined;
}

/** Makes the deputy run the restore stub (core/restore/restore.ts `into`). */
export type HomeLaunch = (files: StubFiles) => Promise<void>;

/** Serves one incoming migration on `channel`; returns the arrival, or undefined if none. */
export async function migrateIn(
  channel: MigrationChannel,
  opts: MigrateInOptions,
): Promise<Arrival | undefined> {
  const log = opts.log ?? (() => {});
  const taken = await takeOffer(channel, opts, log);
  if (!taken) return undefined;
  const { offer, into, stream } = taken;
  let staged: StagedPlan | undefined = stream?.staged;
  let arrival: Arrival | undefined;
  let pre: Precopied | undefined;
  try {
    const relay = await ArrivedRelay.create(
      opts.runDir,
      offer.pid,
      offer.stdin === "relay",
      log,
    );
    try {
      if (offer.precopy) pre = await takePrecopy(channel, offer, stream?.store);
      // The pages go into the restore plan as they arrive (restoreImage discards it).
      const carried = new Set<number>();
      const onBlock = (b: { start: bigint; count: number }) => {
        if (stream) throw new Error("the image carries pages, and the page stream was agreed");
        if (!pre) return;
        const first = Number(b.start / BigInt(PAGE_SIZE));
        for (let i = 0; i < b.count; i++) carried.add(first + i);
      };
      const loaded = await loadStaged(
        withImageFaults(channel.streamSource(STREAM.IMAGE)),
        onBlock,
        staged,
      );
      staged = loaded.staged;
      if (stream) {
        await adoptStream(stream.receiver, loaded.staged, carried, pre !== undefined, log);
      }
      const ahead = await addPrecopied(pre, loaded, carried, log, stream?.vessel);
      relayStdio(loaded.img, offer.stdin);
      // The relay's ends open as the restore opens the process's own.
      const relayDone = relay.attach(channel);
      const vessel = stream?.vessel;
      const held = await restoreHeld(channel, opts, offer, loaded, relay, relayDone, into, vessel);
      if (!held) return undefined;
      if (stream?.vessel) held.r.ahead = ahead;
      arrival = await commitHere(channel, opts, offer, held, relay, relayDone, into !== undefined);
      return arrival;
    } finally {
      // The FIFOs stay while the relay runs (an agent that restarts opens them again).
      if (!arrival) {
        relay.abandon();
        await relay.remove();
      }
    }
  } finally {
    stream?.receiver.stop();
    await stream?.vessel?.end();
    await pre?.store.remove();
    await stream?.store?.remove();
    // The plan is gone already unless a step before the restore failed.
    await staged?.discard();
  }
}

/** A page stream the destination listens on (core/transport/pagestream.ts), and its plan. */
interface StreamIn {
  receiver: PageReceiver;
  staged: StagedPlan;
  /** With pre-copy rounds: where the stream puts their pages. */
  store?: PrecopyStore;
  /** With pre-copy rounds, where this node can: the restore stub started ahead, filled as they come. */
  vessel?: Vessel;
}

/**
 * Waits for the page stream's end and takes its runs into the plan (they
 * come first in it); notes the pages it carried when pre-copy rounds hold
 * older copies.
 */
async function adoptStream(
  receiver: PageReceiver,
  staged: StagedPlan,
  carried: Set<number>,
  precopied: boolean,
  log: (s: string) => void,
): Promise<void> {
  const got = await receiver.done;
  log(
    `page stream: ${got.pages} pages in ${got.frames} runs; ms receiving ${
      got.ms.net.toFixed(0)
    }, ` +
      `checking ${got.ms.open.toFixed(0)}, writing ${got.ms.write.toFixed(0)}`,
  );
  await staged.writer.adopt(got.vmas, got.frames, got.end);
  if (!precopied) return;
  for (const r of got.runs) {
    const first = Number(r.start / BigInt(PAGE_SIZE));
    for (let i = 0; i < r.count; i++) carried.add(first + i);
  }
}

/**
 * Opens the page stream an offer asks for, when this node can: its plan,
 * and the helper listening on the address the source reached this agent at.
 */
async function openStream(
  channel: MigrationChannel,
  offer: Offer,
  stepMs: number,
  log: (s: string) => void,
  launched: boolean,
): Promise<StreamIn | undefined> {
  if (offer.pagestream !== 1 || !channel.addrs) return undefined;
  const why = await pagestreamUnusable();
  if (why) {
    log(`process ${offer.pid}: its pages come in the image stream: ${why}`);
    return undefined;
  }
  const staged = await createStaged();
  // With a module that reads runs where they are, the rounds' pages go in the plan itself, far
  // past its runs: nothing to copy at the freeze. Else a store of their own, copied from then.
  const inPlan = offer.precopy && moduleHas(PPM_FEAT.RUN_AT);
  const store = !offer.precopy
    ? undefined
    : inPlan
    ? PrecopyStore.inPlan(staged.path, precopyBound(offer))
    : await PrecopyStore.create(precopyBound(offer));
  // A launched stub (not a deputy's), a module that keeps mappings: the rounds' pages go into
  // the stub itself, started now, where they belong; the freeze then copies only what changed.
  const vessel = inPlan && launched && moduleHas(PPM_FEAT.KEEP)
    ? await Vessel.launch(offer.pid, staged.dir).catch((e) => {
      log(
        `process ${offer.pid}: no restore ahead, its pages wait in a plan: ${(e as Error).message}`,
      );
      return undefined;
    })
    : undefined;
  try {
    const receiver = await PageReceiver.start({
      bind: channel.addrs.local,
      from: channel.addrs.remote,
      plan: staged.path,
      layout: { head: ppmPlanHeader.size, vma: ppmPlanVma.size },
      maxPages: Math.ceil(offer.estimatedBytes / PAGE_SIZE) * 2 + PRECOPY_SLACK_PAGES,
      timeoutMs: stepMs,
      // Pre-copy rounds come before the freeze, with pauses.
      helloTimeoutMs: offer.precopy ? PRECOPY_HELLO_MS : stepMs,
      // Every copy a round sends is appended: twice the pages held at most.
      store: store && {
        path: store.path,
        offset: inPlan ? PRECOPY_IN_PLAN_AT : 0,
        maxPages: 2 * precopyBound(offer),
        onHeld: (start, count, offset) => store.hold(start, count, offset),
        ...(vessel
          ? {
            vessel: { pid: vessel.pid, rooms: vessel.rooms },
            onPlaced: (start: bigint, count: number) => store.place(start, count),
          }
          : {}),
      },
    });
    return { receiver, staged, store, vessel };
  } catch (e) {
    await vessel?.end();
    await store?.remove();
    await staged.discard();
    log(`process ${offer.pid}: its pages come in the image stream: ${(e as Error).message}`);
    return undefined;
  }
}

/** Where in the plan pre-copy pages go when it holds them (1 TiB: a sparse file in memory). */
const PRECOPY_IN_PLAN_AT = 2 ** 40;

/** Whether the loaded module has feature `bit`. */
function moduleHas(bit: bigint): boolean {
  try {
    return withDevice((d) => (d.info().features & bit) !== 0n);
  } catch {
    return false;
  }
}

/** Bound of each wait of the page stream until the freeze, with pre-copy rounds: 30 minutes. */
const PRECOPY_HELLO_MS = 30 * 60_000;

/** Pages held from pre-copy rounds beyond the offer's estimate (the process may grow): 1 GiB. */
const PRECOPY_SLACK_PAGES = 262_144;

/** The pre-copy rounds' pages being taken (core/restore/precopy_store.ts). */
interface Precopied {
  store: PrecopyStore;
  /** Settles once the rounds' stream ended (rejects when it was malformed). */
  taken: Promise<void>;
}

/** The most pages pre-copy rounds may leave held for an offer. */
function precopyBound(offer: Offer): number {
  return Math.ceil(offer.estimatedBytes / PAGE_SIZE) * 2 + PRECOPY_SLACK_PAGES;
}

/**
 * Starts taking the pre-copy rounds' stream, which comes before the image
 * (empty when they go on the page stream, into `streamed`).
 */
async function takePrecopy(
  channel: MigrationChannel,
  offer: Offer,
  streamed?: PrecopyStore,
): Promise<Precopied> {
  const store = streamed ?? await PrecopyStore.create(precopyBound(offer));
  const taken = store.take(channel.streamSource(STREAM.PRECOPY), streamed !== undefined);
  taken.catch(() => {});
  return { store, taken };
}

/**
 * Adds to the plan the pages the image leaves to the pre-copy rounds;
 * throws when it leaves some and there were none, or they were malformed.
 */
async function addPrecopied(
  pre: Precopied | undefined,
  { img, staged }: { img: LoadedImage; staged: StagedPlan },
  carried: Set<number>,
  log: (s: string) => void,
  vessel?: Vessel,
): Promise<number> {
  if (!img.precopy) return 0;
  if (!pre) {
    throw new PpmError(
      "cannot restore",
      "the image leaves pages to pre-copy rounds, and the offer announced none",
      "",
    );
  }
  await pre.taken;
  const { added, inPlace } = await pre.store.addTo(staged.writer, img, carried, vessel);
  log(
    `process ${img.task.pid}: ${added} pages from the pre-copy rounds (${pre.store.received} ` +
      `received), ${carried.size} from the freeze` +
      (vessel ? `; ${inPlace} of them in place already (restored ahead)` : ""),
  );
  return inPlace;
}

/**
 * The offer (read here unless the caller did), checked, and this node/**
 * The offer (read here unless the caller did), checked, and this node
 * checked against it, then answered; undefined when it was refused or no
 * offer came.
 */
async function takeOffer(
  channel: MigrationChannel,
  opts: MigrateInOptions,
  log: (s: string) => void,
): Promise<{ offer: Offer; into?: HomeLaunch; stream?: StreamIn } | undefined> {
  const offer = opts.offer ?? await readOffer(channel, opts.stepTimeoutMs ?? 120_000, log);
  if (!offer) return undefined;
  let into: HomeLaunch | undefined;
  try {
    into = await admitHere(offer, opts, log);
  } catch (e) {
    const reason = e instanceof PpmError ? e.why : (e as Error).message;
    await channel.send({ op: "offer-reply", ok: false, reason });
    log(`refused process ${offer.pid} from ${offer.from}: ${reason}`);
    return undefined;
  }
  const stream = await openStream(channel, offer, opts.stepTimeoutMs ?? 120_000, log, !into);
  try {
    await channel.send({
      op: "offer-reply",
      ok: true,
      ...(stream ? { pages: stream.receiver.ticket } : {}),
    });
  } catch (e) {
    stream?.receiver.stop();
    await stream?.vessel?.end();
    await stream?.staged.discard();
    throw e;
  }
  log(
    `receiving process ${offer.pid} (${offer.comm}) from ${offer.from}${
      into ? ", coming home into its deputy" : ""
    }`,
  );
  return { offer, into, stream };
}

/** The next message as an offer; undefined when it is none (a malformed one is answered). */
async function readOffer(
  channel: MigrationChannel,
  step: number,
  log: (s: string) => void,
): Promise<Offer | undefined> {
  const raw = await channel.recv(step);
  if (claimedOp(raw, ["offer"]) === undefined) return undefined;
  try {
    return checkOffer(raw);
  } catch (e) {
    const reason = (e as PpmError).why ?? String(e);
    await channel.send({ op: "offer-reply", ok: false, reason });
    log(`refused an offer: ${reason}`);
    return undefined;
  }
}

/**
 * Throws a PpmError("refused", why) when this node cannot take the process
 * of `offer`; for a process coming home into its deputy, returns how.
 */
async function admitHere(
  offer: Offer,
  opts: MigrateInOptions,
  log: (s: string) => void,
): Promise<HomeLaunch | undefined> {
  const sockets = offer.sockets;
  if (sockets.length) {
    if (!opts.network) throw new PpmError("refused", "this node does not take sockets");
    checkPortsFree(sockets, opts.network.nodeAddr);
  }
  if (offer.abi !== PPM_ABI_VERSION) {
    throw new PpmError("refused", `module ABI ${offer.abi} here is ${PPM_ABI_VERSION}`);
  }
  checkKernel(offer.kernel);
  await checkCpu(offer.cpuFlags);
  const into = homeLaunch(offer, opts);
  if (!into) await checkPidFree(offer.pid);
  for (const tid of offer.tids) await checkPidFree(tid, "TID");
  await checkFiles(offer.files);
  if (offer.cwd && !(await Deno.stat(offer.cwd).then((st) => st.isDirectory, () => false))) {
    throw new PpmError("refused", `its working directory ${offer.cwd} does not exist here`);
  }
  checkFileIds(offer.expected ?? []);
  // Built before anything is frozen at the source, never during the freeze.
  await ensureStub();
  await ensureKeeper().catch((e) => log(`no relay keeper: ${(e as Error).message}`));
  return into;
}

/**
 * How a process whose PID a deputy holds here takes its place: its own
 * deputy, when it comes back to the node where it started (docs/deputy.md,
 * "Coming home"); any other process with that PID is refused.
 */
function homeLaunch(offer: Offer, opts: MigrateInOptions): HomeLaunch | undefined {
  if (!isDeputyProcess(offer.pid)) return undefined;
  const into = opts.homecoming?.(offer.pid, offer.origin);
  if (into) return into;
  const own = offer.origin.pid === offer.pid;
  throw new PpmError(
    "refused",
    `PID ${offer.pid} is held here by a deputy${
      own ? " this agent does not know as the process's own" : " of another process"
    } (docs/deputy.md)`,
  );
}

/**
 * Standard streams follow the process: stdout and stderr are relayed to the
 * source's descriptors whatever they were there, and so is stdin unless it
 * was /dev/null (then it is /dev/null here too).
 */
function relayStdio(img: LoadedImage, stdin: StdinMode): void {
  img.files.fds = img.files.fds.map((f) =>
    f.fd === 1 || f.fd === 2 || (f.fd === 0 && stdin === "relay")
      ? { ...f, kind: "stdio" }
      : f.fd === 0
      ? { fd: 0, kind: "device", path: "/dev/null", flags: O.RDONLY, pos: 0n }
      : f
  );
}

/** A process restored here and held stopped, with its sockets in repair mode until the commit. */
interface Held {
  /** The restore's figures, and how to start or remove the process. */
  r: RestoreStats;
  /** Its sockets, rebuilt. */
  rebuilt: RebuiltSocket[];
  /** The drops that keep their flows quiet until the commit. */
  locks: RedirectSet;
  /** The image's sockets. */
  sockets: LoadedImage["sockets"];
  /** Its relayed descriptors, by number. */
  relayed: FdEntry[];
}

/**
 * Restores the image with the process held stopped; on failure tells the
 * source why and returns undefined, with nothing left of it here.
 */
async function restoreHeld(
  channel: MigrationChannel,
  opts: MigrateInOptions,
  offer: Offer,
  { img, staged }: { img: LoadedImage; staged: StagedPlan },
  relay: ArrivedRelay,
  relayDone: Promise<RelayEnd>,
  into?: HomeLaunch,
  vessel?: Vessel,
): Promise<Held | undefined> {
  let rebuilt: RebuiltSocket[] = [];
  const locks = new RedirectSet();
  const nodeAddr = opts.network?.nodeAddr ?? "";
  try {
    if (img.network) {
      throw new PpmError(
        "refused",
        "the image carries a checkpoint's sockets (NETWORK), not a migration's",
      );
    }
    if (img.sockets.length) {
      locks.add(planLocks(img.sockets, nodeAddr));
      rebuilt = rebuildSockets(img.sockets, nodeAddr);
    }
    const r = await restoreImage(img, staged, {
      hold: true,
      // Checked with the offer, unless the process mapped something new since.
      filesChecked: img.files.mapped.every((m) =>
        offer.files.some((f) => f.path === m.path && f.sha256 === m.sha256)
      ),
      stdin: relay.fifos.stdin,
      stdout: relay.fifos.stdout,
      stderr: relay.fifos.stderr,
      sockets: rebuilt.map((x) => ({ fd: x.fd, copy: x.copy, flags: x.flags })),
      relays: true,
      into: into ?? (vessel && ((stub) => vessel.become(stub))),
      keepRooms: vessel?.rooms,
    });
    relay.opened();
    const relayed = img.files.fds.filter((f) => f.kind === "relayed").sort((a, b) => a.fd - b.fd);
    return { r, rebuilt, locks, sockets: img.sockets, relayed };
  } catch (e) {
    dropSockets(rebuilt);
    locks.removeAll();
    const reason = e instanceof PpmError ? `${e.what}: ${e.why}` : (e as Error).message;
    opts.log?.(`process ${offer.pid} from ${offer.from}: restore failed: ${reason}`);
    await channel.send({ op: "restored", ok: false, reason }).catch(() => {});
    // Unblock the relay ends still waiting for the process's ends.
    relay.abandon();
    await relayDone;
    return undefined;
  }
}

/**
 * Tells the source the process is restored and, on its commit, lets the
 * process run; without a commit (or on any failure before it runs) the copy
 * here is removed. Returns the arrival, or undefined.
 */
async function commitHere(
  channel: MigrationChannel,
  opts: MigrateInOptions,
  offer: Offer,
  { r, rebuilt, locks, sockets, relayed }: Held,
  relay: ArrivedRelay,
  relayDone: Promise<RelayEnd>,
  home = false,
): Promise<Arrival | undefined> {
  const log = opts.log ?? (() => {});
  const answers = new RedirectSet();
  let started = false;
  try {
    const commit = await awaitCommit(channel, opts, offer, r);
    if (!commit) return undefined;
    // The redirects are in place on the other nodes; answers here leave with
    // the old address; then the connections may speak.
    if (sockets.length) {
      const nodeAddr = opts.network?.nodeAddr ?? "";
      answers.add(planRedirects(sockets, offer.fromAddr, nodeAddr, []).answers);
    }
    locks.removeAll();
    // A node the process was on before may still drop its flows (the freeze of its move away).
    const stale = removeStaleDrops(
      rebuilt.map((x) => ({ kind: x.entry.kind, local: x.local, remote: x.entry.remote })),
    );
    if (stale) log(`process ${offer.pid}: ${stale} drops of an earlier stay here removed`);
    endRepair(rebuilt);
    r.start!();
    started = true;
    runRelays(channel, relayed, r.relays, log);
    dropSockets(rebuilt);
    answers.keep();
    await channel.send({ op: "committed", ok: true }).catch(() => {});
    log(`process ${offer.pid} from ${offer.from} runs here`);
    return await settleHere(r.pid, offer, relay, relayDone, commit, log, home);
  } finally {
    if (!started) {
      for (const fd of r.relays?.values() ?? []) close(fd);
      r.abort!();
      dropSockets(rebuilt);
      answers.removeAll();
      locks.removeAll();
    }
  }
}

/**
 * Relays the process's descriptors whose other end stayed at the source
 * (core/relay/fds.ts), each from the agent's end made with it, on the
 * streams of its place among them (by number, as the source counts them).
 */
function runRelays(
  channel: MigrationChannel,
  relayed: FdEntry[],
  ends: Map<number, number> | undefined,
  log: (s: string) => void,
): void {
  relayed.forEach((f, i) => {
    const fd = ends?.get(f.fd);
    if (fd === undefined) return;
    const role = relayRole(f.relayed!.end, "destination");
    new FdRelay(fd, role, fdStreams(i, "destination"), (s) => log(`fd ${f.fd}: ${s}`))
      .run(channel);
  });
}

/** Reports the process restored as `r.pid` and waits for the commit; undefined: none came. */
async function awaitCommit(
  channel: MigrationChannel,
  opts: MigrateInOptions,
  offer: Offer,
  r: RestoreStats,
): Promise<Commit | undefined> {
  const log = opts.log ?? (() => {});
  await channel.send(
    {
      op: "restored",
      ok: true,
      pid: r.pid,
      stats: {
        pages: r.pages,
        timesUs: r.timesUs,
        ...(r.ahead !== undefined ? { ahead: r.ahead } : {}),
      },
      addr: opts.network?.nodeAddr,
    } satisfies Restored,
  );
  log(`process ${offer.pid} from ${offer.from} restored as PID ${r.pid}, held until the commit`);
  await fault("crash-before-commit");
  try {
    return await receiveMessage(channel, opts.stepTimeoutMs ?? 120_000, "commit");
  } catch (e) {
    const why = e instanceof MessageError ? ` (${e.why})` : "";
    log(`process ${offer.pid} from ${offer.from}: no commit, removed here${why}`);
    return undefined;
  }
}

/** The process runs here: its relay's keeper and its own scope; the arrival. */
async function settleHere(
  pid: number,
  offer: Offer,
  relay: ArrivedRelay,
  relayDone: Promise<RelayEnd>,
  commit: Commit,
  log: (s: string) => void,
  home: boolean,
): Promise<Arrival> {
  // Its relay's far ends are held beside it, in its scope: the agent may restart.
  const keeper = await startKeeper(pid, relay.fifos).catch((e) => {
    log(`process ${pid}: no relay keeper (an agent restart ends its output): ${e.message}`);
    return undefined;
  });
  const kid = keeper ? keeperId(keeper) : undefined;
  relay.keeper = kid;
  // Come home, it stays where its deputy was: in its parent's cgroup (a batch job's, say).
  if (home) log(`process ${pid} came home: it is its parent's child again`);
  await ownScope(home ? undefined : pid, keeper, offer, log);
  return {
    pid,
    from: offer.from,
    origin: offer.origin,
    moves: offer.moves + 1,
    at: new Date().toISOString(),
    relay: {
      relay,
      done: relayDone,
      // An older source names none: its relay cannot be taken up again.
      token: commit.relay ?? "",
      keeper: kid,
    },
  };
}
