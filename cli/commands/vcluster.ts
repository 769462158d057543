/**
 * `ppm vcluster`: a virtual cluster of QEMU guests on a private bridge.
 *
 * @module
 */
import { Command, Option } from "@commander-js/extra-typings";
import {
  DEFAULT_NAME,
  GUEST_INITS,
  KERNEL_LINES,
  LIMITS,
  parseNode,
  parseSpec,
  validateName,
} from "../../core/vcluster/spec.ts";
import { parseProgressMode, Progress, PROGRESS_HELP } from "../events.ts";
import { progress, report } from "../output.ts";

const nameOption = () =>
  new Option("--name <name>", "cluster name, to run several side by side").default(DEFAULT_NAME);

/** `vcluster up`. */
function upCommand() {
  return new Command("up")
    .description("boot N guests of a Debian kernel on a private bridge; returns when all answer")
    .option(
      "--nodes <n>",
      `number of nodes (${LIMITS.nodes.min}-${LIMITS.nodes.max})`,
      String(LIMITS.nodes.default),
    )
    .addOption(
      new Option("--kernel <line>", "guest kernel line").choices(KERNEL_LINES).default(
        "6.1" as const,
      ),
    )
    .option("--memory <mib>", "memory per guest in MiB", String(LIMITS.memory.default))
    .addOption(
      new Option(
        "--init <kind>",
        "PID 1 of the guests: busybox (the agent alone), or systemd (the host's, managing services)",
      ).choices(GUEST_INITS).default("busybox" as const),
    )
    .addOption(nameOption())
    .option("--json", "print the cluster as JSON")
    .option("--progress <mode>", PROGRESS_HELP)
    .action(async (o) => {
      const spec = parseSpec(o);
      const shown = new Progress(parseProgressMode(o.progress), "booting", o.json);
      shown.event("start", { command: "vcluster up", ...spec });
      const { up } = await import("../../core/vcluster/cluster.ts");
      const st = await up(spec, {
        progress: (s) => shown.ndjson ? shown.event("step", { message: s }) : progress(s),
      });
      shown.report(o.json, st, (d) =>
        [
          `cluster ${d.name} is up: ${d.nodes.length} nodes, kernel ${d.kernel.release}${
            d.init === "systemd" ? ", systemd" : ""
          }`,
          ...d.nodes.map((n) => `  ${n.name}  ${n.address}  console ${n.console}`),
          `run commands with: ppm vcluster exec${
            d.name === DEFAULT_NAME ? "" : ` --name ${d.name}`
          } node1 -- CMD...`,
        ].join("\n"));
    });
}

/** `vcluster exec`. */
function execCommand() {
  return new Command("exec")
    .description("run CMD as root in a guest; its output and exit code become ours")
    .argument("<node>", "node name (node1...) or number")
    .argument("<cmd...>", "command and arguments (put -- before them)")
    .addOption(nameOption())
    .option("--cwd <dir>", "working directory in the guest (default: the current one)")
    .option("--timeout <seconds>", "kill the command after this many seconds", "600")
    .action(async (node, argv, o) => {
      const { requireState } = await import("../../core/vcluster/cluster.ts");
      const { guestExec } = await import("../../core/vcluster/client.ts");
      const st = await requireState(validateName(o.name));
      const i = parseNode(node, st.nodes.length);
      const r = await guestExec(st.runDir, i, argv, {
        cwd: o.cwd,
        timeoutMs: Number(o.timeout) * 1000,
        onStdout: (b) => Deno.stdout.writeSync(b),
        onStderr: (b) => Deno.stderr.writeSync(b),
      });
      Deno.exitCode = r.code;
    });
}

/** `vcluster status`. */
function statusCommand() {
  return new Command("status")
    .description("show the clusters, their nodes and any kernel trouble on the consoles")
    .addOption(nameOption())
    .option("--json", "print the status as JSON")
    .action(async (o) => {
      const { listClusters, requireState, status } = await import(
        "../../core/vcluster/cluster.ts"
      );
      const names = o.name === DEFAULT_NAME ? await listClusters() : [validateName(o.name)];
      const all = [];
      for (const n of names) all.push(await status(n));
      if (!all.length && o.name !== DEFAULT_NAME) await requireState(o.name);
      report(o.json, all, (d) =>
        d.length === 0 ? "no virtual cluster is up" : d.map((c) =>
          [
            `cluster ${c.name}: ${c.up ? "up" : "DEGRADED"}, kernel ${c.kernel}`,
            ...c.nodes.map((n) =>
              `  ${n.name}  ${n.address}  ${
                n.running ? "running" : "stopped"
              }  pid ${n.pid}  ${n.console}` +
              (n.trouble.length
                ? `\n    console trouble: ${n.trouble.slice(0, 3).join(" | ")}`
                : "")
            ),
          ].join("\n")
        ).join("\n"));
    });
}

/** `vcluster down`. */
function downCommand() {
  return new Command("down")
    .description("stop the guests and remove the private network (console logs stay)")
    .addOption(nameOption())
    .option("--json", "print the result as JSON")
    .action(async (o) => {
      const { down } = await import("../../core/vcluster/cluster.ts");
      const r = await down(validateName(o.name));
      report(
        o.json,
        r,
        (d) => `cluster ${o.name}: ${d.stopped} guest${d.stopped === 1 ? "" : "s"} stopped`,
      );
    });
}

/** The `vcluster` command tree. */
export function vclusterCommand(): Command {
  const cmd = new Command("vcluster").description(
    "a virtual cluster of QEMU guests for trying and testing ppm",
  );
  for (const c of [upCommand(), execCommand(), statusCommand(), downCommand()]) {
    cmd.addCommand(c as unknown as Command);
  }
  return cmd as unknown as Command;
}
