/**
 * `ppm check`: the node's pre-flight for health scripts and job prologues;
 * exit 0 when it is ready, 1 with the reasons when not.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import type { DiscoveryStatus } from "../../core/discovery/service.ts";
import { EXIT, PpmError } from "../../core/errors.ts";
import { report } from "../output.ts";

async function processCount(): Promise<number> {
  let n = 0;
  for await (const e of Deno.readDir("/proc")) if (/^\d+$/.test(e.name)) n++;
  return n;
}

/** The `check` command. */
export function checkCommand(): Command {
  return new Command("check")
    .description(
      "pre-flight for health scripts: kernel, module, secret, agent, peers, PIDs; exit 0 when ready",
    )
    .option("--min-peers <n>", "alive peers needed (default 1; 0 for a single node)", "1")
    .option("--config <file>", "configuration file")
    .option("--control-socket <path>", "the agent's control socket")
    .option("--json", "print the checks as JSON")
    .action(async (o) => {
      const minPeers = Number(o.minPeers);
      if (!/^\d+$/.test(o.minPeers) || !Number.isSafeInteger(minPeers)) {
        throw new PpmError("invalid --min-peers", o.minPeers, "give a whole number", EXIT.USAGE);
      }
      const { loadConfig } = await import("../../core/config/load.ts");
      const { controlRequest } = await import("../../core/agent/control.ts");
      const { moduleStatus } = await import("../../core/module/manage.ts");
      const { exists } = await import("../../core/paths.ts");
      const { renderChecks, runChecks } = await import("../../core/preflight/check.ts");
      const { loadSecret } = await import("../../core/security/secret.ts");
      const config = await loadConfig({
        flags: { config: o.config, controlSocket: o.controlSocket },
      });
      const r = await runChecks({
        uid: Deno.uid() ?? -1,
        module: moduleStatus,
        peers: () =>
          controlRequest(config.controlSocket, { op: "peers" }, 10_000) as Promise<
            DiscoveryStatus
          >,
        secret: async () => void await loadSecret(config.secretFile),
        readProc: (p) => Deno.readTextFile(p),
        exists,
        processCount,
      }, { minPeers });
      report(o.json, r, renderChecks);
      if (!r.ok) Deno.exitCode = EXIT.FAILURE;
    }) as unknown as Command;
}
