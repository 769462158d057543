/**
 * The node agent and what talks to it: `ppm daemon`, `ppm peers`,
 * `ppm migrate`, `ppm ps`.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { AGENT_NICE } from "../../core/agent/nice.ts";
import type { ProcessEntry } from "../../core/agent/processes.ts";
import {
  CONFIG_DEFAULTS,
  DEFAULT_CONFIG_PATH,
  LOG_LEVEL_HELP,
} from "../../core/config/defaults.ts";
import type { DiscoveryStatus } from "../../core/discovery/service.ts";
import { EXIT, PpmError } from "../../core/errors.ts";
import { renderPs } from "../balance_text.ts";
import { report } from "../output.ts";
import { parseProgressMode, Progress, PROGRESS_HELP } from "../events.ts";
import { parseCount, parsePid, socketPath } from "./agent_socket.ts";

/** The agent commands. */
export function agentCommands(): Command[] {
  return [daemonCommand(), peersCommand(), migrateCommand(), psCommand()] as unknown as Command[];
}

/** `ppm daemon`: the node agent, in the foreground. */
function daemonCommand() {
  return new Command("daemon")
    .description(
      "run the node agent: discovery, migrations in and out, the control socket (foreground)",
    )
    .option("--config <file>", `configuration file (default ${DEFAULT_CONFIG_PATH})`)
    .option("--node-name <name>", "this node's name (default: hostname)")
    .option("--group <address>", `multicast group (default ${CONFIG_DEFAULTS.group})`)
    .option("--port <port>", `discovery port (default ${CONFIG_DEFAULTS.port})`)
    .option("--interface <name|address>", "interface for multicast (the cluster network)")
    .option("--advertise <address>", "address to announce")
    .option("--secret-file <file>", `cluster secret (default ${CONFIG_DEFAULTS.secretFile})`)
    .option(
      "--migration-port <port>",
      `port for incoming migrations (default ${CONFIG_DEFAULTS.migrationPort})`,
    )
    .option(
      "--announce-interval <seconds>",
      `seconds between announcements (default ${CONFIG_DEFAULTS.announceInterval})`,
    )
    .option("--log-level <level>", LOG_LEVEL_HELP)
    .option("--control-socket <path>", `control socket (default ${CONFIG_DEFAULTS.controlSocket})`)
    .option(
      "--balance",
      "balance load by itself (as balance.enabled in the config; docs/balancing.md)",
    )
    .option(
      "--nice <n>",
      `the agent's nice value, -20 to 19 (default ${AGENT_NICE}: it stays responsive on a busy node)`,
    )
    .action(async ({ balance, nice, ...o }) => {
      const niceValue = parseNice(nice);
      const { loadConfig } = await import("../../core/config/load.ts");
      const { runDaemon } = await import("../../core/agent/daemon.ts");
      const config = await loadConfig({ flags: { ...o } });
      const ac = new AbortController();
      for (const sig of ["SIGTERM", "SIGINT"] as const) {
        Deno.addSignalListener(sig, () => {
          ac.abort();
          // A migration in flight may hold the cleanup up: stop anyway, soon.
          setTimeout(() => Deno.exit(0), 3000);
        });
      }
      await runDaemon(config, ac.signal, { balance, nice: niceValue });
      // Open relays and connections would keep the process alive: the agent is done.
      Deno.exit(0);
    });
}

/** The value of `--nice` (default {@link AGENT_NICE}); a usage PpmError when it is not -20 to 19. */
function parseNice(nice: string | undefined): number {
  const niceValue = nice === undefined ? AGENT_NICE : Number(nice);
  if (!Number.isInteger(niceValue) || niceValue < -20 || niceValue > 19) {
    throw new PpmError(
      `--nice ${nice} is not a nice value`,
      "it must be an integer from -20 to 19",
      "",
      EXIT.USAGE,
    );
  }
  return niceValue;
}

/** `ppm peers`: the peers the agent knows. */
function peersCommand() {
  return new Command("peers")
    .description("list the peers this node's agent knows: state, last announcement, versions, load")
    .option("--config <file>", "configuration file")
    .option("--control-socket <path>", "the agent's control socket")
    .option("--json", "print them as JSON")
    .action(async (o) => {
      const { controlRequest } = await import("../../core/agent/control.ts");
      const st = await controlRequest(await socketPath(o), { op: "peers" }) as DiscoveryStatus;
      report(o.json, st, renderPeers);
    });
}

/** The text of `ppm peers`. */
function renderPeers(d: DiscoveryStatus): string {
  return [
    `this node: ${d.self.name} (${d.self.addresses.join(", ")})`,
    ...(d.peers.length ? d.peers : []).map((p) =>
      `  ${p.name.padEnd(12)} ${p.state.padEnd(6)} ${
        String(p.age.toFixed(1)).padStart(5)
      } s ago  ` +
      `ppm ${p.version} abi ${p.abi} ${p.kernel}  load ${JSON.stringify(p.load.loadavg ?? p.load)}`
    ),
    d.peers.length ? "" : "  no peers yet",
  ].join("\n").trimEnd();
}

/** What the agent answers to a migrate request. */
interface Moved {
  /** The PID on the destination. */
  pid: number;
  /** Bytes sent. */
  bytes: number;
  /** The destination. */
  to: string;
  /** Per-phase times in µs. */
  timesUs: Record<string, number>;
  /** The deputy left in its place here, when one was. */
  deputy?: { pid: number };
  /** What did not go as it should, though the process moved. */
  warnings?: string[];
  /** The pre-copy rounds, when there were some. */
  precopy?: { rounds: { dirty: number }[]; bytes: number; stopped: string; held: number };
}

/** `ppm migrate`: asks the agent to move a process, showing its progress. */
function migrateCommand() {
  return new Command("migrate")
    .description("move a running process to another node; it keeps running there")
    .argument("<pid>", "the process")
    .requiredOption("--to <node>", "the destination: a peer's name or address")
    .option("--config <file>", "configuration file")
    .option("--control-socket <path>", "the agent's control socket")
    .option(
      "--timeout <seconds>",
      "give up (and resume the process here) when the destination is silent this long (default 120)",
    )
    .option(
      "--deadline <seconds>",
      "bound the whole move: when it has not committed by then, the process runs on here (exit 7)",
    )
    .option(
      "--copy-all",
      "send the pages of code and libraries too (the optimized total copy off, for comparison)",
    )
    .option(
      "--precopy-rounds <n>",
      "rounds that copy the memory while the process runs, before the freeze (0: none; default 8)",
    )
    .option(
      "--precopy-min-mib <mib>",
      "pre-copy only processes with at least this much memory to send (default 32)",
    )
    .option("--json", "print the figures (per-phase times in µs) as JSON")
    .option("--progress <mode>", PROGRESS_HELP)
    .action(async (rawPid, o) => {
      const pid = parsePid(rawPid);
      const precopyRounds = o.precopyRounds === undefined
        ? undefined
        : parseCount(o.precopyRounds, "--precopy-rounds", 0, 16);
      const precopyMinMiB = o.precopyMinMib === undefined
        ? undefined
        : parseCount(o.precopyMinMib, "--precopy-min-mib", 0, 1 << 30);
      const mode = parseProgressMode(o.progress);
      const { timeoutS, deadlineS } = migrateBounds(o);
      // A bar on a terminal only, and never with --json; NDJSON events for scripts.
      const shown = new Progress(mode, `migrating ${pid} to ${o.to}`, o.json);
      shown.event("start", { command: "migrate", pid, to: o.to });
      const { controlRequest } = await import("../../core/agent/control.ts");
      const r = await controlRequest(
        await socketPath(o),
        {
          op: "migrate",
          pid,
          to: o.to,
          timeoutMs: timeoutS * 1000,
          deadlineMs: deadlineS === undefined ? undefined : deadlineS * 1000,
          copyAll: o.copyAll,
          precopyRounds,
          precopyMinBytes: precopyMinMiB === undefined ? undefined : precopyMinMiB * 2 ** 20,
        },
        answerWithinMs(timeoutS, deadlineS),
        (ev) => {
          const e = ev as { progress?: { sent: number; expected: number }; phase?: string };
          if (e.progress) shown.transfer(e.progress.sent, e.progress.expected);
          if (typeof e.phase === "string") shown.event("phase", { phase: e.phase });
        },
      ).finally(() => shown.clear()) as Moved;
      shown.report(o.json, r, (d) => renderMoved(pid, d));
      // With --json they are in the result.
      if (!o.json) { for (const w of r.warnings ?? []) console.error(`ppm: warning: ${w}`); }
    });
}

/** `--timeout` (default 120) and `--deadline` in seconds; a usage PpmError when out of range. */
function migrateBounds(o: { timeout?: string; deadline?: string }): {
  timeoutS: number;
  deadlineS: number | undefined;
} {
  const timeoutS = o.timeout === undefined ? 120 : Number(o.timeout);
  if (!(timeoutS > 0 && timeoutS <= 3600)) {
    throw new PpmError(
      "invalid --timeout",
      `${o.timeout}`,
      "give 1 to 3600 seconds",
      EXIT.USAGE,
    );
  }
  const deadlineS = o.deadline === undefined ? undefined : Number(o.deadline);
  if (deadlineS !== undefined && !(deadlineS > 0 && deadlineS <= 86400)) {
    throw new PpmError(
      "invalid --deadline",
      `${o.deadline}`,
      "give 1 to 86400 seconds",
      EXIT.USAGE,
    );
  }
  return { timeoutS, deadlineS };
}

/** How long to wait for the agent's answer to a migrate request, in ms. */
function answerWithinMs(timeoutS: number, deadlineS: number | undefined): number {
  // The agent answers within a few steps of the timeout each (past a deadline, after
  // the commit's outcome, which it waits for at most a step and the outcome query).
  return deadlineS === undefined
    ? Math.max(600_000, timeoutS * 1000 * 6)
    : deadlineS * 1000 + timeoutS * 1000 + 120_000;
}

/** The text of a finished move of `pid`. */
function renderMoved(pid: number, d: Moved): string {
  const frozenMs = d.timesUs.frozen / 1000;
  const mibps = d.bytes / 2 ** 20 / Math.max(1e-6, d.timesUs.dumpAndSend / 1e6);
  return `process ${pid} runs on ${d.to} as PID ${d.pid}\n` +
    `frozen ${frozenMs.toFixed(0)} ms, ${(d.bytes / 1024).toFixed(0)} KiB sent at ${
      mibps.toFixed(1)
    } MiB/s` +
    (d.precopy
      ? `\nbefore the freeze, ${d.precopy.rounds.length} pre-copy rounds sent ${
        (d.precopy.bytes / 2 ** 20).toFixed(1)
      } MiB while it ran (${d.precopy.stopped}); the freeze left ${
        (d.precopy.held * 4 / 1024).toFixed(1)
      } MiB to them`
      : "") +
    (d.deputy ? `\nits deputy stands in for it here as PID ${d.deputy.pid}` : "");
}

/** `ppm ps`: the managed and migrated processes the agent knows. */
function psCommand() {
  return new Command("ps")
    .description(
      "list the managed and migrated processes this node knows: where they run, moves, and why they moved",
    )
    .option("--config <file>", "configuration file")
    .option("--control-socket <path>", "the agent's control socket")
    .option("--json", "print them as JSON")
    .action(async (o) => {
      const { controlRequest } = await import("../../core/agent/control.ts");
      const list = await controlRequest(await socketPath(o), { op: "ps" }) as ProcessEntry[];
      report(o.json, list, renderPs);
    });
}
