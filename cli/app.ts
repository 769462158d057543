/**
 * The `ppm` command tree. Commands only parse and print; the work is in
 * core/. Exit codes are listed in core/errors.ts (EXIT) and docs/cli.md.
 *
 * Every `ppm` run builds the whole tree (names, options, help, completions),
 * so the modules it is built from import nothing heavy: each action loads
 * the core/ modules it uses when it runs, with a dynamic import of a
 * literal path (which `deno compile` and `deno bundle --code-splitting`
 * follow), and help texts take their defaults from light modules
 * (core/config/defaults.ts, core/agent/nice.ts). `ppm --version` thus loads
 * commander and cli/ only; tests/unit/cli_startup_test.ts keeps it so.
 *
 * @module
 */
import { Argument, Command } from "@commander-js/extra-typings";
import { PPM_ABI_VERSION } from "../ffi/uapi.ts";
import { agentCommands } from "./commands/agent.ts";
import { balanceCommands } from "./commands/balance.ts";
import { checkCommand } from "./commands/check.ts";
import { configCommand } from "./commands/config.ts";
import { checkpointCommand } from "./commands/checkpoint.ts";
import { demoCommand } from "./commands/demo.ts";
import { imageCommand } from "./commands/image.ts";
import { redirectsCommand } from "./commands/redirects.ts";
import { restoreCommand } from "./commands/restore.ts";
import { runCommand } from "./commands/run.ts";
import { secretCommand } from "./commands/secret.ts";
import { moduleCommand } from "./commands/module.ts";
import { vclusterCommand } from "./commands/vcluster.ts";
import { bashScript, completionTable, fishScript, zshScript } from "./completions.ts";

export { VERSION } from "../core/version.ts";
import { VERSION } from "../core/version.ts";

const EXIT_HELP = `
Exit codes:
  0  success
  1  the operation failed (or a check said no)
  2  bad command line
  3  not permitted (root or a capability is needed)
  4  something needed is missing (headers, package, module, cluster)
  5  the kernel or module is incompatible (kernel version, ABI, lockdown)
  6  busy (in use, already running)
  7  a deadline passed
ppm run passes its command's status, and keeps 125 (ppm failed), 126 (cannot
execute) and 127 (not found) for itself, like timeout(1) and docker run.`;

/** Builds the command tree. */
export function buildApp(): Command {
  const program = new Command("ppm")
    .description("preemptive process migration for Linux clusters")
    .version(`ppm ${VERSION} (ABI ${PPM_ABI_VERSION})`, "-V, --version")
    .addHelpText("after", EXIT_HELP)
    .showHelpAfterError("(run with --help for usage)")
    // `ppm run CMD -x`: options after the command are the command's.
    .enablePositionalOptions();

  program.addCommand(moduleCommand());
  program.addCommand(checkCommand());
  program.addCommand(configCommand());
  program.addCommand(checkpointCommand());
  program.addCommand(restoreCommand());
  program.addCommand(imageCommand());
  program.addCommand(secretCommand());
  for (const c of agentCommands()) program.addCommand(c);
  program.addCommand(runCommand());
  for (const c of balanceCommands()) program.addCommand(c);
  program.addCommand(redirectsCommand());
  program.addCommand(vclusterCommand());
  program.addCommand(demoCommand());

  program.command("completions")
    .description("print a shell completion script")
    .addArgument(
      new Argument("<shell>", "bash, zsh or fish").choices(["bash", "zsh", "fish"] as const),
    )
    .action((shell) => {
      const t = completionTable(program as unknown as Parameters<typeof completionTable>[0]);
      const gen = { bash: bashScript, zsh: zshScript, fish: fishScript }[shell];
      Deno.stdout.writeSync(new TextEncoder().encode(gen(t)));
    });

  return program as unknown as Command;
}
