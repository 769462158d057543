/**
 * The agent's answers to the control socket's requests (control.ts): status,
 * peers, ps, migrate, manage, unmanage, wait, balance, drain, undrain. Every
 * dependency is injected, so that the requests are tested with a fake move
 * function and fake /proc readings.
 *
 * @module
 */
import { schedulerReasons } from "../host/cgroup.ts";
import type { DiscoveryStatus } from "../discovery/service.ts";
import { EXIT, PpmError } from "../errors.ts";
import type { BalanceReport } from "./balancer.ts";
import type { ControlRequest, Emit } from "./control.ts";
import type { MoveFn } from "./outbound.ts";
import { EXIT_GRACE_MS } from "./outbound.ts";
import { type Caller, checkMayManage } from "./permission.ts";
import type { ExitStatus, ProcessEntry, ProcessTable } from "./processes.ts";
import { type ProcFacts, startedAtSeconds } from "./procfs.ts";

/** Longest single `wait` request; the CLI asks again. */
export const MAX_WAIT_MS = 60_000;

/** What `wait` says about a process that ran here as a PID. */
export type WaitAnswer =
  /** It runs (or ended) here, never moved: its parent here knows how it ended. */
  | { state: "here" }
  /** It left and has not ended yet (or came back and runs under the agent). */
  | { state: "elsewhere"; node: string }
  /** It ended elsewhere (or back here), and its output is all out. */
  | { state: "exited"; exit: ExitStatus }
  /** Its output relay ended, but how it ended never came back. */
  | { state: "ended"; node: string }
  /** Not a process this agent knows. */
  | { state: "unknown" };

/** The agent's balancing state, as `status` shows it. */
export interface BalanceStatus {
  /** Balancing by itself. */
  enabled: boolean;
  /** Draining. */
  draining: boolean;
  /** Cordoned: accepts no process, sends none away. */
  cordoned?: boolean;
  /** Managed processes running here. */
  managedHere: number;
  /** Processes being migrated from here right now. */
  migrating: number;
  /** The local and exported loads, when measured. */
  load?: { local: number; exported: number };
}

/** What the handler needs from the agent. */
export interface OpsDeps {
  /** This node's name. */
  node: string;
  /** The agent's own PID (never managed). */
  agentPid: number;
  /** Who is asking (the control socket is root's). */
  caller: Caller;
  /** The process table. */
  table: ProcessTable;
  /** PIDs being migrated now. */
  busy: ReadonlySet<number>;
  /** Moves a process. */
  move: MoveFn;
  /** One balancing round now. */
  balance: (dryRun: boolean) => Promise<BalanceReport>;
  /** The balancing state. */
  balanceStatus: () => BalanceStatus;
  /** Discovery's status. */
  discovery: () => DiscoveryStatus;
  /** Sets the drain flag. */
  setDraining: (on: boolean) => void;
  /** Why a process may not move for its scheduler (default: its Slurm job, from its cgroup). */
  schedulerReasons?: (pid: number) => Promise<string[]>;
  /** Sets the cordon flag. */
  setCordoned?: (on: boolean) => void;
  /** Reads a process's facts; null when there is none. */
  facts: (pid: number) => Promise<ProcFacts | null>;
  /** This node's boot time in seconds since the epoch. */
  bootTime: () => Promise<number>;
  /** Waits (for `wait`'s polling; default setTimeout). */
  sleep?: (ms: number) => Promise<void>;
  /** The rows of `ps` for the deputies here (deputies.ts `Deputies.rows`). */
  deputyRows?: () => ProcessEntry[];
  /** Where the process of deputy `pid` runs; undefined when `pid` is no deputy here. */
  deputyOf?: (pid: number) => string | undefined;
}

function badPid(pid: unknown): PpmError | undefined {
  return Number.isInteger(pid) && (pid as number) > 0
    ? undefined
    : new PpmError("invalid PID", String(pid), "give a positive whole number", EXIT.USAGE);
}

/** A request of kind `op`. */
type RequestOf<Op extends ControlRequest["op"]> = Extract<ControlRequest, { op: Op }>;

/** Makes process `pid` managed here, after the permission and scheduler checks. */
async function manage(d: OpsDeps, pid: number, name: string | undefined, by: "run" | "manage") {
  const at = d.deputyOf?.(pid);
  if (at !== undefined) {
    throw new PpmError(
      `cannot manage process ${pid}`,
      `it is the deputy of process ${pid}, which runs on ${at}`,
      `manage the process itself: ppm manage ${pid}, on ${at}`,
      EXIT.USAGE,
    );
  }
  const f = await d.facts(pid);
  if (!f) {
    throw new PpmError(`cannot manage process ${pid}`, "no such process", "check the PID", 4);
  }
  checkMayManage(d.caller, f, d.agentPid);
  const held = await (d.schedulerReasons ?? schedulerReasons)(pid);
  if (held.length) {
    throw new PpmError(`cannot manage process ${pid}`, held.join("; "), "", EXIT.FAILURE);
  }
  return d.table.manage({
    pid,
    name: name?.trim() || f.comm,
    startedAt: startedAtSeconds(await d.bootTime(), f.startTicks),
    startTicks: f.startTicks,
    by,
  });
}

/** Makes process `pid` unmanaged; a PpmError saying where it is when it is not managed here. */
function unmanage(d: OpsDeps, pid: number): { pid: number; managed: false } {
  if (!d.table.unmanage(pid)) {
    throw new PpmError(
      `process ${pid} is not managed here`,
      d.table.departed(pid)
        ? `it moved to ${d.table.departed(pid)!.current.node}`
        : "it was never made managed on this node",
      "run ppm unmanage on the node where it runs (see ppm ps)",
      EXIT.MISSING,
    );
  }
  return { pid, managed: false };
}

/** Where `pid` is now, for `wait`: an answer, or "running" while it still runs somewhere. */
function fate(d: OpsDeps, pid: number): WaitAnswer | { state: "running"; node: string } {
  if (d.busy.has(pid)) return { state: "running", node: d.node };
  const here = d.table.running(pid);
  if (here?.direction === "local") return { state: "here" };
  // Came back and runs under the agent: the news of its end comes round to the departure.
  if (here) return { state: "running", node: d.node };
  const dep = d.table.departure(pid);
  if (!dep) return { state: "unknown" };
  const now = Date.now();
  // Exited, and its output is all out (or its relay is stuck: a child of it holds it).
  if (dep.exit && (dep.relayEndedAt || now - Date.parse(dep.exit.at) > EXIT_GRACE_MS)) {
    return { state: "exited", exit: dep.exit };
  }
  if (
    !dep.exit && dep.relayEndedAt && now - Date.parse(dep.relayEndedAt) > EXIT_GRACE_MS + 1000
  ) {
    return { state: "ended", node: dep.to };
  }
  return { state: "running", node: dep.to };
}

/** Waits up to `timeoutMs` (at most {@link MAX_WAIT_MS}) for `pid` to end, polling {@link fate}. */
async function wait(
  d: OpsDeps,
  sleep: (ms: number) => Promise<void>,
  pid: number,
  timeoutMs: number,
): Promise<WaitAnswer> {
  const deadline = Date.now() + Math.min(Math.max(0, timeoutMs), MAX_WAIT_MS);
  for (;;) {
    const f = fate(d, pid);
    if (f.state !== "running") return f;
    if (Date.now() >= deadline) return { state: "elsewhere", node: f.node };
    await sleep(200);
  }
}

/** Moves a process for `ppm migrate`, emitting its progress (every MiB) and phases. */
async function migrate(d: OpsDeps, req: RequestOf<"migrate">, emit: Emit): Promise<unknown> {
  let lastEmitted = 0;
  return await d.move({
    pid: req.pid,
    to: req.to,
    timeoutMs: req.timeoutMs,
    deadlineMs: typeof req.deadlineMs === "number" && req.deadlineMs > 0
      ? req.deadlineMs
      : undefined,
    copyAll: req.copyAll === true,
    precopy: {
      ...(req.precopyRounds !== undefined ? { rounds: req.precopyRounds } : {}),
      ...(req.precopyMinBytes !== undefined ? { minBytes: req.precopyMinBytes } : {}),
    },
    why: { kind: "manual", by: "ppm migrate" },
    onProgress: (p) => {
      if (p.sent - lastEmitted < 1 << 20) return;
      lastEmitted = p.sent;
      emit({ progress: p });
    },
    onPhase: (phase) => emit({ phase }),
  });
}

/** Builds the control socket's handler. */
export function makeHandler(d: OpsDeps): (req: ControlRequest, emit: Emit) => Promise<unknown> {
  const sleep = d.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));

  return async (req, emit) => {
    switch (req.op) {
      case "status":
        return { node: d.node, ...d.discovery().self, balance: d.balanceStatus() };
      case "peers":
        return d.discovery();
      case "ps":
        return [...d.table.list(), ...(d.deputyRows?.() ?? [])];
      case "migrate": {
        const bad = badPid(req.pid);
        if (bad) throw bad;
        return await migrate(d, req, emit);
      }
      case "manage": {
        const bad = badPid(req.pid);
        if (bad) throw bad;
        return await manage(d, req.pid, req.name, req.by === "run" ? "run" : "manage");
      }
      case "unmanage": {
        const bad = badPid(req.pid);
        if (bad) throw bad;
        return unmanage(d, req.pid);
      }
      case "wait": {
        const bad = badPid(req.pid);
        if (bad) throw bad;
        return await wait(d, sleep, req.pid, req.timeoutMs ?? 30_000);
      }
      case "balance":
        return await d.balance(req.dryRun === true);
      case "drain":
        d.setDraining(true);
        return d.balanceStatus();
      case "undrain":
        d.setDraining(false);
        return d.balanceStatus();
      case "cordon":
      case "uncordon":
        d.setCordoned?.(req.op === "cordon");
        return d.balanceStatus();
      default:
        throw new PpmError(
          "unknown request",
          JSON.stringify((req as { op?: unknown }).op),
          "use a ppm of the same version as the agent",
          EXIT.USAGE,
        );
    }
  };
}
