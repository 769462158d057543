/**
 * The deputies of the processes that left this node (core/deputy): a
 * process whose parent is not ppm, init or this agent is not killed when
 * it moves away, but made its own deputy, which keeps its PID, parent,
 * process group, session and standard streams here.
 *
 * - which process gets one: {@link needsDeputy};
 * - making it, at the hand-over (core/migrate/source.ts): {@link Deputies.plan};
 * - what the deputy gets is passed on towards where the process runs now
 *   (signals.ts), and a deputy killed here (SIGKILL: its parent, a user,
 *   scancel) has the process killed there;
 * - the news of the process's end (outbound.ts) ends the deputy the same
 *   way, once its output is out (bounded), so that the parent's waitpid
 *   sees the real exit code or signal;
 * - a record of each under /run/ppm/deputies, so that a restarted agent
 *   expects them again and takes up their relay when the node they went to
 *   asks ({@link Deputies.adopt}, {@link Deputies.relayFor});
 * - their rows in `ppm ps` ({@link Deputies.rows}).
 *
 * @module
 */
import { close, pidfdGetfd, pidfdOpen } from "../../ffi/libc.ts";
import { becomeDeputy, type DeputySpec } from "../deputy/become.ts";
import { comeHome, type HomeDeps } from "../deputy/home.ts";
import type { StubFiles } from "../restore/launch.ts";
import type { DeputyEvents, DeputyLink } from "../deputy/link.ts";
import {
  deputiesDir,
  type DeputyRecord,
  dropDeputyRecord,
  isDeputyProcess,
  loadDeputyRecords,
  saveDeputyRecord,
} from "../deputy/record.ts";
import { PpmError } from "../errors.ts";
import { parseProcStatLine, startTicks } from "../host/proc_stat.ts";
import type { ThreadGroup } from "../ptrace/group.ts";
import { KeptRelay, type KeptStdio } from "../relay/kept.ts";
import type { ProcessEntry } from "./processes.ts";
import type { SignalRoutes } from "./signals.ts";

/** The deputies' reconnect window, seconds (deputy.c's default, given explicitly). */
export const RECONNECT_S = 600;

/** How long the end of a deputy waits for its process's output to be out. */
export const OUTPUT_WAIT_MS = 10_000;

/** How long telling a deputy its end may take (it connects again every second). */
export const TELL_WAIT_MS = 30_000;

/** How often a deputy is told its end before it is given up (each {@link TELL_WAIT_MS}). */
export const TELL_TRIES = 20;

/** SIGKILL. */
const SIGKILL = 9;

/** The parts of the deputy link the agent uses (core/deputy/link.ts; a fake in tests). */
export type DeputyLinkApi = Pick<
  DeputyLink,
  "expect" | "forget" | "exit" | "killed" | "isConnected" | "closeKept" | "home"
>;

/** Whether a process gets a deputy, and why not. */
export type DeputyChoice = { deputy: true } | { deputy: false; why: string };

/** What {@link needsDeputy} looks at. */
export interface DeputyFacts {
  /** The process's parent. */
  ppid: number;
  /** This agent's PID. */
  agentPid: number;
  /** Its entry in the process table here, if any. */
  entry?: Pick<ProcessEntry, "direction" | "managedBy">;
}

/**
 * Whether a process that moves away from here leaves a deputy: when
 * someone here waits for it. Not when it arrived here (its parent is this
 * agent, and its deputy, if it has one, stays at its home node), nor when
 * its parent is init (nobody waits for it), nor under `ppm run` (which
 * learns its end through the agent).
 */
export function needsDeputy(f: DeputyFacts): DeputyChoice {
  if (f.entry?.direction === "arrived" || f.ppid === f.agentPid) {
    return {
      deputy: false,
      why: "it arrived here by migration: its deputy, if it has one, stays at its home node",
    };
  }
  if (f.ppid <= 1) return { deputy: false, why: "its parent is init: nobody waits for it" };
  if (f.entry?.managedBy === "run") {
    return { deputy: false, why: "ppm run waits for it, and learns its end through the agent" };
  }
  return { deputy: true };
}

/** What a migration needs to leave a deputy (core/migrate/source.ts `MigrateOutOptions.deputy`). */
export interface DeputyPlan {
  /**
   * Makes the frozen process its deputy; throws when none was made (the
   * process is still held then, for the caller to end).
   */
  become?: (group: ThreadGroup) => Promise<{ pid: number }>;
  /**
   * Once the deputy is made: it closes its copy of relayed descriptor `fd`
   * (the relay ended, core/relay/fds.ts), so that the peer here sees the end.
   */
  closeFd?: (fd: number) => void;
  /** Why it gets none by the rule ({@link needsDeputy}). */
  none?: string;
  /** Why it gets none though it should: a warning for the log and `ppm migrate --json`. */
  warning?: string;
}

/** What {@link Deputies} needs. */
export interface DeputiesDeps {
  /** This node's name. */
  node: string;
  /** This agent's PID. */
  agentPid: number;
  /** The ways to the processes that left (signals.ts). */
  routes: SignalRoutes;
  /** Logs a line. */
  log: (level: string, s: string) => void;
  /** The installed deputy program (core/deputy/binary.ts `ensureDeputy`). */
  binary: () => Promise<string>;
  /** The link's socket, which the deputies connect to. */
  socket: string;
  /** Makes a frozen process its deputy (default core/deputy/become.ts `becomeDeputy`). */
  become?: (group: ThreadGroup, spec: DeputySpec) => Promise<void>;
  /** Where the records are (default `deputiesDir()`). */
  dir?: string;
  /** The parent of `pid`; null when it is gone (default: /proc/PID/stat). */
  ppid?: (pid: number) => number | null;
  /** Whether `pid` is still the deputy recorded with `startTicks` (default: /proc). */
  isDeputy?: (pid: number, startTicks: string) => boolean;
  /** The restore stub installed for deputies (core/deputy/binary.ts `ensureHomeStub`). */
  homeStub?: () => Promise<string>;
  /** Brings a process home into its deputy (default core/deputy/home.ts `comeHome`). */
  comeHome?: (pid: number, files: StubFiles, d: HomeDeps) => Promise<void>;
  /** The deputies' reconnect window, seconds (default {@link RECONNECT_S}). */
  reconnectS?: number;
  /** See {@link OUTPUT_WAIT_MS}. */
  outputWaitMs?: number;
  /** See {@link TELL_WAIT_MS}. */
  tellWaitMs?: number;
}

/** How a process ended, as the news of it says. */
export interface EndNews {
  code?: number;
  signal?: number;
}

function procPpid(pid: number): number | null {
  try {
    return parseProcStatLine(Deno.readTextFileSync(`/proc/${pid}/stat`))?.ppid ?? null;
  } catch {
    return null;
  }
}

function stillDeputy(pid: number, ticks: string): boolean {
  return startTicks(pid) === ticks && isDeputyProcess(pid);
}

function message(e: unknown): string {
  if (e instanceof PpmError) return [e.what, e.why].filter(Boolean).join(": ");
  return (e as Error).message;
}

/** The deputies on this node; see the module's text. */
export class Deputies {
  readonly #d: DeputiesDeps;
  readonly #dir: string;
  #link?: DeputyLinkApi;
  #linkError = "the deputy link is not open yet";
  /** The deputies, by PID. */
  readonly #live = new Map<number, DeputyRecord>();

  constructor(d: DeputiesDeps) {
    this.#d = d;
    this.#dir = d.dir ?? deputiesDir();
  }

  /** The events to listen for on the link. */
  get events(): DeputyEvents {
    return {
      onSignal: (pid, sig) => this.#signal(pid, sig),
      onGone: (pid) => this.#gone(pid),
      onConnect: (pid) => this.#d.log("debug", `the deputy of process ${pid} connected`),
      log: (s) => this.#d.log("info", s),
    };
  }

  /** Uses `link` from now on (none: `why` says why deputies cannot be made). */
  attach(link: DeputyLinkApi | undefined, why = ""): void {
    this.#link = link;
    if (!link) this.#linkError = why || "the deputy link is not open";
  }

  /** Whether `pid` is a deputy here. */
  has(pid: number): boolean {
    return this.#live.has(pid);
  }

  /** The node the process of deputy `pid` runs on, as last heard. */
  runsOn(pid: number): string | undefined {
    return this.#live.get(pid)?.runsOn;
  }

  /** The deputies' PIDs. */
  get pids(): number[] {
    return [...this.#live.keys()];
  }

  /**
   * Whether process `pid` (its entry here: `entry`) leaves a deputy when it
   * moves, and how; called before anything is frozen (the program is
   * installed now, never while the process is frozen).
   */
  async plan(pid: number, entry?: ProcessEntry): Promise<DeputyPlan> {
    const ppid = (this.#d.ppid ?? procPpid)(pid);
    if (ppid === null) return { none: "it is gone" };
    const choice = needsDeputy({ ppid, agentPid: this.#d.agentPid, entry });
    if (!choice.deputy) return { none: choice.why };
    const cannot = (why: string): DeputyPlan => ({
      warning: `no deputy can stand in for process ${pid} here (${why}): it is ended when it ` +
        "moves, as without one, and its parent sees it killed (SIGKILL)",
    });
    const link = this.#link;
    if (!link) return cannot(this.#linkError);
    let binary: string;
    try {
      binary = await this.#d.binary();
    } catch (e) {
      return cannot(message(e));
    }
    return {
      become: async (group, keep = []) => {
        const name = (() => {
          try {
            return Deno.readTextFileSync(`/proc/${pid}/comm`).replace(/\n$/, "");
          } catch {
            return "";
          }
        })();
        link.expect(pid);
        try {
          await (this.#d.become ?? becomeDeputy)(group, {
            binary,
            socket: this.#d.socket,
            // Relayed descriptors stay open in it: the peer here sees no end while the process runs.
            keep,
            reconnectS: this.#d.reconnectS ?? RECONNECT_S,
          });
        } catch (e) {
          link.forget(pid);
          throw e;
        }
        this.#live.set(pid, {
          pid,
          startTicks: startTicks(pid) || "0",
          name: name.slice(0, 64),
          to: this.#d.node,
          runsOn: this.#d.node,
          token: "",
          since: new Date().toISOString(),
        });
        // What it gets before the way to its process is open waits for it.
        this.#d.routes.hold(pid);
        return { pid };
      },
      closeFd: (fd) => {
        if (!this.#live.has(pid)) return;
        try {
          link.closeKept(pid, fd);
        } catch (e) {
          this.#d.log("warn", `deputy ${pid}: cannot close its fd ${fd}: ${message(e)}`);
        }
      },
    };
  }

  /**
   * How the process that left here as `pid` and now comes back (its offer
   * names this node and `pid` as its origin) takes its deputy's place: a
   * launcher for its restore (core/restore/restore.ts `into`), or
   * undefined when `pid` is no deputy of ours for that process, or its
   * process ended. Once the deputy runs the restore stub it is no deputy
   * any more: forgotten, its signals no longer passed on.
   */
  homecoming(
    pid: number,
    origin: { node: string; pid: number },
  ): ((files: StubFiles) => Promise<void>) | undefined {
    const r = this.#live.get(pid);
    const link = this.#link;
    const homeStub = this.#d.homeStub;
    if (!r || r.end || !link || !homeStub || origin.node !== this.#d.node || origin.pid !== pid) {
      return undefined;
    }
    // Installed now, before the source freezes the process.
    const installing = homeStub();
    installing.catch(() => {});
    return async (files) => {
      const stub = await installing;
      if (this.#live.get(pid) !== r || r.end) {
        throw new PpmError(
          `the deputy of process ${pid} is gone`,
          "its process ended meanwhile",
          "",
        );
      }
      this.#d.log("info", `process ${pid} comes home: its deputy runs the restore stub`);
      await (this.#d.comeHome ?? comeHome)(pid, files, {
        link,
        stub,
        gone: () => {
          this.#d.routes.close(pid);
          this.#forget(pid);
        },
      });
    };
  }

  /**
   * The deputy `pid` stands in for a process that went to `to`, whose relay
   * is `token` (for an agent that restarts): recorded.
   */
  departed(pid: number, to: string, token: string): void {
    const r = this.#live.get(pid);
    if (!r) return;
    r.to = r.runsOn = to;
    r.token = token;
    this.#save(r);
  }

  /** The process of deputy `pid` moved on to `node`. */
  moved(pid: number, node: string): void {
    const r = this.#live.get(pid);
    if (!r || r.runsOn === node) return;
    this.#d.log("info", `process ${pid}, whose deputy is here, moved on to ${node}`);
    r.runsOn = node;
    this.#save(r);
  }

  /**
   * The process of deputy `pid` ended as `news` says: once its output is
   * out (`outputDone`, waited for at most {@link OUTPUT_WAIT_MS}), the
   * deputy ends the same way: its exit code, or the signal (a status not
   * known: SIGKILL, as a process lost). The news is recorded first, so that
   * an agent that restarts meanwhile tells it. Nothing when `pid` has no
   * deputy.
   */
  async exited(pid: number, news: EndNews, outputDone: Promise<unknown>): Promise<void> {
    const r = this.#live.get(pid);
    if (!r || r.end) return;
    r.end = {
      ...(news.code !== undefined ? { code: news.code } : {}),
      ...(news.signal !== undefined ? { signal: news.signal } : {}),
    };
    this.#save(r);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      outputDone.catch(() => {}),
      new Promise<void>((res) => timer = setTimeout(res, this.#d.outputWaitMs ?? OUTPUT_WAIT_MS)),
    ]);
    clearTimeout(timer);
    await this.#tell(r);
  }

  /**
   * Tells the deputy of `r` to end as `r.end` says, and forgets it once it
   * did; asks again while it does not (it may be reconnecting), up to
   * {@link TELL_TRIES} times; keeps it, record and all, when the link went
   * away meanwhile (the agent stops: the next one tells it).
   */
  async #tell(r: DeputyRecord): Promise<void> {
    const { pid } = r, end = r.end ?? {};
    const wait = this.#d.tellWaitMs ?? TELL_WAIT_MS;
    const sig = end.signal !== undefined && end.signal >= 1 && end.signal <= 64
      ? end.signal
      : end.code === undefined
      ? SIGKILL
      : undefined;
    if (sig !== undefined) {
      this.#d.log(
        end.signal === sig ? "info" : "warn",
        end.signal === sig
          ? `process ${pid} was ended by signal ${sig}: so is its deputy here`
          : `process ${pid} ended, and how is not known: its deputy here ends by SIGKILL`,
      );
    } else {
      this.#d.log("info", `process ${pid} exited with ${end.code}: so does its deputy here`);
    }
    for (let i = 1;; i++) {
      const link = this.#link;
      if (!link || this.#live.get(pid) !== r) return; // the agent stops, or it is gone
      try {
        await (sig !== undefined ? link.killed(pid, sig, wait) : link.exit(pid, end.code!, wait));
        break;
      } catch (e) {
        if (this.#link !== link || this.#live.get(pid) !== r) return;
        if (i >= TELL_TRIES) {
          this.#d.log(
            "warn",
            `the deputy of process ${pid} did not end when told (${message(e)}): given up; ` +
              `end it: kill -KILL ${pid} (its parent then sees it killed)`,
          );
          break;
        }
        if (i === 1) this.#d.log("info", `the deputy of process ${pid}: ${message(e)}; told again`);
      }
    }
    this.#forget(pid);
  }

  /**
   * Expects again the deputies of the records a previous agent left (they
   * connect again for their reconnect window); a record whose deputy is
   * gone is removed. Their signals are held until the node their process
   * went to takes their relay up again ({@link relayFor}). Returns how
   * many were taken up.
   */
  adopt(): number {
    const { records, bad } = loadDeputyRecords(this.#dir);
    for (const b of bad) this.#d.log("warn", `ignored a deputy record: ${b}`);
    let n = 0;
    for (const r of records) {
      if (this.#live.has(r.pid)) continue;
      if (!(this.#d.isDeputy ?? stillDeputy)(r.pid, r.startTicks)) {
        this.#d.log("info", `the deputy of process ${r.pid} ended while no agent ran`);
        dropDeputyRecord(r.pid, this.#dir);
        continue;
      }
      try {
        if (!this.#link) throw new PpmError(this.#linkError, "");
        this.#link.expect(r.pid);
      } catch (e) {
        this.#d.log("warn", `cannot take up the deputy of process ${r.pid}: ${message(e)}`);
        continue;
      }
      this.#live.set(r.pid, r);
      n++;
      if (r.end) {
        // Its process ended before the last agent could tell it: told now.
        this.#d.log("info", `taking up the deputy of process ${r.pid}, whose process ended`);
        this.#tell(r);
        continue;
      }
      this.#d.routes.hold(r.pid);
      this.#d.log("info", `taking up the deputy of process ${r.pid} (${r.name}, on ${r.runsOn})`);
    }
    return n;
  }

  /**
   * The relay of a deputy's process, made again from the deputy's own
   * standard streams, for the agent of `peer` that asks to take it up with
   * `ask` (this agent started after the process left); undefined when no
   * deputy here matches (its token, its PID, the node it went to).
   */
  relayFor(ask: { token: string; pid: number }, peer: string): KeptRelay | undefined {
    const r = this.#live.get(ask.pid);
    if (!r || !r.token || r.token !== ask.token || r.to !== peer) return undefined;
    const fds: KeptStdio = {};
    let pidfd = -1;
    try {
      pidfd = pidfdOpen(r.pid);
      // stdin is relayed unless it is /dev/null (core/migrate/source.ts `stdinMode`).
      const stdin = Deno.readLinkSync(`/proc/${r.pid}/fd/0`) !== "/dev/null";
      for (const fd of [0, 1, 2] as const) {
        if (fd === 0 && !stdin) continue;
        try {
          fds[fd] = pidfdGetfd(pidfd, fd);
        } catch { /* not open */ }
      }
    } catch (e) {
      for (const fd of Object.values(fds)) if (fd !== undefined) close(fd);
      this.#d.log("warn", `cannot take up the relay of process ${r.pid}: ${message(e)}`);
      return undefined;
    } finally {
      if (pidfd >= 0) close(pidfd);
    }
    return new KeptRelay(
      fds,
      r.token,
      (s) => this.#d.log("info", `relay of process ${r.pid}: ${s}`),
      { offsetsKnown: false },
    );
  }

  /**
   * The rows of `ppm ps` for the deputies: where each one's process runs
   * now; `departed` gives the process's entry here, when the table has one.
   */
  rows(departed: (pid: number) => ProcessEntry | undefined): ProcessEntry[] {
    return [...this.#live.values()].map((r) => {
      const e = departed(r.pid);
      const since = Date.parse(r.since) / 1000;
      return {
        origin: e?.origin ?? { node: this.#d.node, pid: r.pid },
        current: { node: r.runsOn, pid: r.pid },
        moves: e?.moves ?? 1,
        movedAt: e?.movedAt ?? r.since,
        direction: "deputy",
        managed: false,
        name: e?.name ?? r.name,
        startedAt: e?.startedAt ?? since,
        arrivedAt: since,
        deputy: {
          pid: r.pid,
          connected: this.#link?.isConnected(r.pid) ?? false,
          since: r.since,
        },
      };
    });
  }

  #save(r: DeputyRecord): void {
    try {
      saveDeputyRecord(r, this.#dir);
    } catch (e) {
      this.#d.log(
        "warn",
        `cannot keep the record of the deputy of process ${r.pid} (an agent restart forgets it): ${
          message(e)
        }`,
      );
    }
  }

  #forget(pid: number): void {
    this.#live.delete(pid);
    dropDeputyRecord(pid, this.#dir);
  }

  #signal(pid: number, sig: number): void {
    const r = this.#live.get(pid);
    if (!r) return;
    if (r.end) {
      this.#d.log("debug", `the deputy of process ${pid} got signal ${sig}: its process ended`);
      return;
    }
    const fate = this.#d.routes.send(pid, sig);
    if (fate === "none") {
      this.#d.log("warn", `the deputy of process ${pid} got signal ${sig}: no way to it, dropped`);
    } else {
      this.#d.log(
        "debug",
        `the deputy of process ${pid} got signal ${sig}: ${
          fate === "sent" ? "passed on" : "held for when it can be passed on"
        } to ${r.runsOn}`,
      );
    }
  }

  #gone(pid: number): void {
    const r = this.#live.get(pid);
    if (!r) return;
    const fate = this.#d.routes.send(pid, SIGKILL);
    this.#d.log(
      "warn",
      `the deputy of process ${pid} ended without being told (killed?): process ${pid} on ${r.runsOn} ${
        fate === "none" ? "cannot be reached, and runs on" : "is killed"
      }`,
    );
    this.#forget(pid);
  }
}
