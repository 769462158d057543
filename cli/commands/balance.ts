/**
 * Balancing from the command line: `ppm balance --once`, `ppm drain`,
 * `ppm undrain`, `ppm manage`, `ppm unmanage`.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import type { BalanceReport } from "../../core/agent/balancer.ts";
import type { BalanceStatus } from "../../core/agent/ops.ts";
import type { ProcessEntry } from "../../core/agent/processes.ts";
import { EXIT, PpmError } from "../../core/errors.ts";
import { renderReport } from "../balance_text.ts";
import { parseProgressMode, Progress, PROGRESS_HELP } from "../events.ts";
import { report } from "../output.ts";
import { parsePid, socketPath } from "./agent_socket.ts";

/** Seconds `ppm drain --wait` waits by default. */
const DRAIN_WAIT_S = 600;

function balanceCommand(): Command {
  return new Command("balance")
    .description(
      "run one balancing round now: per candidate the loads, the cost and the benefit, and why",
    )
    .option("--once", "one round now (required: the agent balances by itself with --balance)")
    .option("--dry-run", "only show what the round would do")
    .option("--json", "print the round's records as JSON")
    .option("--config <file>", "configuration file")
    .option("--control-socket <path>", "the agent's control socket")
    .action(async (o) => {
      if (!o.once) {
        throw new PpmError(
          "ppm balance needs --once",
          "the agent balances by itself only when started with --balance (or balance.enabled)",
          "run `ppm balance --once --dry-run` to see a round, `ppm balance --once` to run one",
          EXIT.USAGE,
        );
      }
      const { controlRequest } = await import("../../core/agent/control.ts");
      const r = await controlRequest(
        await socketPath(o),
        { op: "balance", dryRun: o.dryRun === true },
      ) as BalanceReport;
      report(o.json, r, renderReport);
    });
}

function drainText(s: BalanceStatus): string {
  return `${
    s.draining ? "draining" : s.cordoned ? "cordoned" : "not draining"
  }; ${s.managedHere} managed process${s.managedHere === 1 ? "" : "es"} here${
    s.migrating ? `, ${s.migrating} migrating` : ""
  }`;
}

function drainCommands(): Command[] {
  const drain = new Command("drain")
    .description(
      "move every managed process off this node and accept none (maintenance); ppm undrain ends it",
    )
    .option("--wait", "wait until no managed process is left here")
    .option("--timeout <seconds>", `give up waiting after this long (default ${DRAIN_WAIT_S})`)
    .option("--deadline <seconds>", "the same as --wait --timeout S: the whole drain is bounded")
    .option("--json", "print the state as JSON")
    .option("--progress <mode>", PROGRESS_HELP)
    .option("--config <file>", "configuration file")
    .option("--control-socket <path>", "the agent's control socket")
    .action(async (o) => {
      const shown = new Progress(parseProgressMode(o.progress), "draining", o.json);
      if (o.deadline !== undefined) o.wait = true;
      const given = o.deadline ?? o.timeout;
      const timeout = given === undefined ? DRAIN_WAIT_S : Number(given);
      if (!(timeout > 0 && timeout <= 86400)) {
        throw new PpmError(
          `invalid ${o.deadline !== undefined ? "--deadline" : "--timeout"}`,
          `${given}`,
          "give 1 to 86400 seconds",
          2,
        );
      }
      const path = await socketPath(o);
      const { controlRequest } = await import("../../core/agent/control.ts");
      shown.event("start", { command: "drain", wait: o.wait === true, deadlineS: timeout });
      let s = await controlRequest(path, { op: "drain" }) as BalanceStatus;
      const deadline = Date.now() + timeout * 1000;
      let said = "";
      while (o.wait && (s.managedHere > 0 || s.migrating > 0)) {
        const now = `${s.managedHere}/${s.migrating}`;
        if (now !== said) {
          shown.event("drain", { managedHere: s.managedHere, migrating: s.migrating });
        }
        said = now;
        if (Date.now() > deadline) {
          throw new PpmError(
            "this node still has managed processes",
            drainText(s),
            "see `ppm balance --once --dry-run` for why they stay (no peer takes them?)",
            EXIT.TIMEOUT,
          );
        }
        await new Promise((r) => setTimeout(r, 500));
        s = (await controlRequest(path, { op: "status" }) as { balance: BalanceStatus }).balance;
      }
      shown.report(o.json, s, drainText);
    });
  const undrain = new Command("undrain")
    .description("end a drain: this node accepts processes again")
    .option("--json", "print the state as JSON")
    .option("--config <file>", "configuration file")
    .option("--control-socket <path>", "the agent's control socket")
    .action(async (o) => {
      const { controlRequest } = await import("../../core/agent/control.ts");
      const s = await controlRequest(await socketPath(o), { op: "undrain" }) as BalanceStatus;
      report(o.json, s, drainText);
    });
  const cordon = (op: "cordon" | "uncordon", what: string) =>
    new Command(op)
      .description(what)
      .option("--json", "print the state as JSON")
      .option("--config <file>", "configuration file")
      .option("--control-socket <path>", "the agent's control socket")
      .action(async (o) => {
        const { controlRequest } = await import("../../core/agent/control.ts");
        const s = await controlRequest(await socketPath(o), { op }) as BalanceStatus;
        report(o.json, s, drainText);
      });
  return [
    drain,
    undrain,
    cordon(
      "cordon",
      "accept no process here and send none away (ppm uncordon ends it); work here stays",
    ),
    cordon("uncordon", "end a cordon: this node takes part in balancing again"),
  ] as unknown as Command[];
}

function manageCommands(): Command[] {
  const manage = new Command("manage")
    .description("make a running process managed: the balancer may move it (root or its owner)")
    .argument("<pid>", "the process")
    .option("--name <name>", "a name to show in ppm ps (default: its command name)")
    .option("--json", "print its entry as JSON")
    .option("--config <file>", "configuration file")
    .option("--control-socket <path>", "the agent's control socket")
    .action(async (raw, o) => {
      const pid = parsePid(raw);
      const { controlRequest } = await import("../../core/agent/control.ts");
      const e = await controlRequest(
        await socketPath(o),
        { op: "manage", pid, name: o.name, by: "manage" },
      ) as ProcessEntry;
      report(o.json, e, (x) => `process ${x.current.pid} (${x.name}) is managed`);
    });
  const unmanage = new Command("unmanage")
    .description("release a managed process: it is never moved automatically again")
    .argument("<pid>", "the process")
    .option("--json", "print the result as JSON")
    .option("--config <file>", "configuration file")
    .option("--control-socket <path>", "the agent's control socket")
    .action(async (raw, o) => {
      const pid = parsePid(raw);
      const { controlRequest } = await import("../../core/agent/control.ts");
      const r = await controlRequest(await socketPath(o), { op: "unmanage", pid });
      report(o.json, r, () => `process ${pid} is no longer managed`);
    });
  return [manage, unmanage] as unknown as Command[];
}

/** The balancing commands. */
export function balanceCommands(): Command[] {
  return [balanceCommand(), ...drainCommands(), ...manageCommands()];
}
