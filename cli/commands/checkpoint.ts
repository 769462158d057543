/**
 * `ppm checkpoint`: freeze a process, write its image, resume or end it.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { EXIT, PpmError } from "../../core/errors.ts";
import { parseProgressMode, Progress, PROGRESS_HELP } from "../events.ts";
import { report } from "../output.ts";

function parsePid(raw: string): number {
  const pid = Number(raw);
  if (!Number.isInteger(pid) || pid <= 0) {
    throw new PpmError("invalid PID", JSON.stringify(raw), "pass a process ID", EXIT.USAGE);
  }
  return pid;
}

const kib = (b: number) => `${(b / 1024).toFixed(0)} KiB`;

type Figures =
  & Awaited<ReturnType<typeof import("../../core/checkpoint/checkpoint.ts").checkpoint>>
  & { image: string };

/** A checkpoint's figures for people. */
function figuresText(d: Figures): string {
  return [
    `checkpointed process ${d.pid} into ${d.image} (${kib(d.imageBytes)}); it was ${
      d.leftRunning ? "resumed" : "ended"
    }`,
    `frozen ${(d.timesUs.frozen / 1000).toFixed(1)} ms (freeze ${
      (d.timesUs.freeze / 1000).toFixed(1)
    } ms, ` +
    `state ${(d.timesUs.dumpState / 1000).toFixed(1)} ms, memory ${
      (d.timesUs.dumpMemory / 1000).toFixed(1)
    } ms)`,
    `pages: ${d.pages.dumped} written, skipped ${d.pages.file} still the file's, ${d.pages.zero} zero, ` +
    `${d.pages.absent} never touched`,
    ...(d.sockets?.carried
      ? [
        `sockets: ${d.sockets.carried} carried` + (d.sockets.dropsKept
          ? `; their peers' packets are dropped here until ppm restore ${d.image}`
          : ""),
      ]
      : []),
  ].join("\n");
}

/** The `checkpoint` command. */
export function checkpointCommand(): Command {
  return new Command("checkpoint")
    .description("freeze a process invisibly, write its image, and resume it (or end it)")
    .argument("<pid>", "the process")
    .option("-o, --output <file>", "image file to write")
    .option("--leave-running", "resume the process afterwards (the default)")
    .option("--kill", "end the process after the image is taken")
    .option(
      "--check",
      "only say whether the process can be checkpointed, and if not, why (exit 0 or 1)",
    )
    .option(
      "--copy-all",
      "carry the resident pages of code and libraries too (the optimized total copy off)",
    )
    .option(
      "--tcp-established",
      "carry its IPv4 TCP connections, listeners and UDP sockets in the image, to restore " +
        "on this node (with --kill, their peers wait, seeing no reset, until ppm restore)",
    )
    .option("--json", "print the figures (per-phase times in µs) as JSON")
    .option("--progress <mode>", PROGRESS_HELP)
    .action(async (rawPid, o) => {
      const pid = parsePid(rawPid);
      const shown = new Progress(parseProgressMode(o.progress), `checkpointing ${pid}`, o.json);
      if (o.check) {
        const { checkReasons } = await import("../../core/dump/check.ts");
        const reasons = await checkReasons(pid, { carrySockets: !!o.tcpEstablished });
        report(
          o.json,
          { pid, checkpointable: reasons.length === 0, reasons },
          (d) =>
            d.checkpointable
              ? `process ${pid} can be checkpointed`
              : `process ${pid} cannot be checkpointed:\n${
                d.reasons.map((r) => `  - ${r}`).join("\n")
              }`,
        );
        Deno.exitCode = reasons.length ? EXIT.FAILURE : EXIT.OK;
        return;
      }
      if (!o.output) {
        throw new PpmError(
          "no image file given",
          "-o FILE is required",
          "ppm checkpoint PID -o FILE",
          EXIT.USAGE,
        );
      }
      if (o.kill && o.leaveRunning) {
        throw new PpmError(
          "conflicting options",
          "--kill and --leave-running",
          "pick one",
          EXIT.USAGE,
        );
      }
      const { dirname, resolve } = await import("node:path");
      const { ensureDir } = await import("../../core/paths.ts");
      const { writeAll } = await import("../../core/host/write_all.ts");
      const { checkpoint } = await import("../../core/checkpoint/checkpoint.ts");
      await ensureDir(dirname(resolve(o.output)));
      const tmp = `${o.output}.tmp-${Deno.pid}`;
      const file = await Deno.open(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
      let stats;
      let written = 0;
      shown.event("start", { command: "checkpoint", pid, image: o.output });
      try {
        stats = await checkpoint(pid, async (c) => {
          await writeAll(file, c);
          written += c.length;
          shown.transfer(written, undefined);
        }, { kill: o.kill, copyAll: o.copyAll, tcpEstablished: o.tcpEstablished })
          .finally(() => shown.clear());
        file.close();
        await Deno.rename(tmp, o.output);
      } catch (e) {
        try {
          file.close();
        } catch { /* closed */ }
        await Deno.remove(tmp).catch(() => {});
        throw e;
      }
      shown.report(o.json, { ...stats, image: o.output }, figuresText);
    }) as unknown as Command;
}
