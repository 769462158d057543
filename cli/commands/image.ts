/**
 * `ppm image inspect`: what an image holds.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { report } from "../output.ts";

const hex = (n: bigint) => `0x${n.toString(16)}`;
const ITIMERS = ["ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF"];
const secs = (t: { sec: bigint; nsec: number }) => Number(t.sec) + t.nsec / 1e9;
const when = (left: number, every: number) =>
  left ? `${left} s left${every ? `, then every ${every} s` : ", once"}` : "disarmed";
const PROT = (p: number) => `${p & 1 ? "r" : "-"}${p & 2 ? "w" : "-"}${p & 4 ? "x" : "-"}`;

type Image = Awaited<ReturnType<typeof import("../../core/image/schema.ts").loadImage>>;

/** What `ppm image inspect` shows of an image, as plain data (its --json). */
function summary(img: Image) {
  const stats = (img.end.pageStats ?? []) as {
    dumped: number;
    file: number;
    zero: number;
    absent: number;
  }[];
  return {
    task: img.task,
    cpu: {
      restart: img.cpu.restart,
      xsaveBytes: img.cpu.xstate.length,
      sigmask: hex(img.cpu.sigmask),
    },
    mm: Object.fromEntries(
      Object.entries(img.mm).map(([k, v]) => [k, Array.isArray(v) ? v.length : hex(v)]),
    ),
    vmas: img.vmas.map((v, i) => ({
      start: hex(v.start),
      end: hex(v.end),
      prot: PROT(v.prot),
      kind: v.kind,
      path: v.path ?? null,
      pages: stats[i] ?? null,
    })),
    files: img.files,
    signals: {
      handlers: img.signals.actions.map((a) => ({
        sig: a.sig,
        handler: hex(a.handler),
        flags: hex(a.flags),
      })),
      blocked: hex(img.signals.blocked),
      pending: hex(img.signals.pending | img.signals.sharedPending),
      altstack: { sp: hex(img.signals.altstack.sp), size: Number(img.signals.altstack.size) },
    },
    timers: {
      itimers: (img.timers?.itimers ?? []).map((t) => ({
        which: ITIMERS[t.which],
        left: secs(t.value),
        interval: secs(t.interval),
      })),
      posix: (img.timers?.posix ?? []).map((t) => ({
        id: t.id,
        clock: t.clock,
        notify: t.notify,
        tid: t.tid ?? null,
        signal: t.signal,
        value: hex(t.value),
        left: secs(t.left),
        interval: secs(t.interval),
      })),
    },
    sockets: (img.network?.sockets ?? img.sockets).map((x) => ({
      fd: x.fd,
      kind: x.kind,
      local: `${x.local.addr}:${x.local.port}`,
      remote: x.remote ? `${x.remote.addr}:${x.remote.port}` : null,
    })),
    drops: (img.network?.drops ?? []).length,
    pages: img.pageCount,
  };
}

/** The summary for people. */
function summaryText(d: ReturnType<typeof summary>): string {
  return [
    `process ${d.task.pid} (${d.task.comm}) ${d.task.exe}, uid ${
      d.task.uid[0]
    }, kernel ${d.task.kernel}`,
    `taken ${d.task.createdAt}; ${d.pages} pages in the image; syscall restart: ${d.cpu.restart}`,
    "mappings:",
    ...d.vmas.map((v) =>
      `  ${v.start}-${v.end} ${v.prot} ${v.kind.padEnd(11)} ${
        v.pages ? `${v.pages.dumped} in image, ${v.pages.file} file, ${v.pages.zero} zero` : ""
      } ${v.path ?? ""}`
    ),
    "files:",
    ...d.files.fds.map((f) => `  fd ${f.fd} ${f.kind} ${f.path} pos ${f.pos}`),
    ...d.files.mapped.map((m) =>
      `  mapped ${m.path} ${m.size} bytes sha256 ${m.sha256.slice(0, 16)}…`
    ),
    `signals: ${d.signals.handlers.length} handlers, blocked ${d.signals.blocked}, pending ${d.signals.pending}`,
    ...(d.timers.itimers.length || d.timers.posix.length ? ["timers:"] : []),
    ...d.timers.itimers.map((t) => `  ${t.which}: ${when(t.left, t.interval)}`),
    ...d.timers.posix.map((t) =>
      `  POSIX timer ${t.id} on clock ${t.clock}: ${
        t.notify === "none"
          ? "no signal"
          : `signal ${t.signal} to ${t.tid ? `thread ${t.tid}` : "the process"}${
            t.notify === "thread" ? " (SIGEV_THREAD)" : ""
          }`
      }, value ${t.value}, ${when(t.left, t.interval)}`
    ),
    ...(d.sockets.length ? ["sockets:"] : []),
    ...d.sockets.map((x) =>
      `  ${x.kind === "tcp-pending" ? `queued on fd ${x.fd}` : `fd ${x.fd}`} ${x.kind} ` +
      `${x.local}${x.remote ? ` <-> ${x.remote}` : ""}`
    ),
    ...(d.drops
      ? [`  ${d.drops} drop rules hold their peers' packets on the node until ppm restore`]
      : []),
  ].join("\n");
}

/** The `image` command tree. */
export function imageCommand(): Command {
  const cmd = new Command("image").description("work with checkpoint images");
  cmd.command("inspect")
    .description(
      "list what an image holds: task, mappings with their pages, files, signals, timers, sockets",
    )
    .argument("<file>", "the image")
    .option("--json", "print it as JSON")
    .action(async (file, o) => {
      const { pathSource } = await import("../../core/host/bytes.ts");
      const { loadImage } = await import("../../core/image/schema.ts");
      const img = await loadImage(pathSource(file));
      report(o.json, summary(img), summaryText);
    });
  return cmd as unknown as Command;
}
