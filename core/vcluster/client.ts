/**
 * The host side of `ppm vcluster exec`: runs a command in a guest through
 * the guest agent's virtio-serial ports (see guest/agent.c for the frames).
 * Each port carries one command at a time; a port is taken with a
 * non-blocking flock on its lock file, so separate processes can run
 * commands in the same guest at once.
 *
 * @module
 */
import { close, flock, LOCK, O, open } from "../../ffi/libc.ts";
import { EXIT, PpmError } from "../errors.ts";
import { portSocket } from "./qemu.ts";
import { guestPath, LIMITS, nodeName } from "./spec.ts";

/** Options of {@link guestExec}. */
export interface ExecOptions {
  /** Working directory in the guest (default: the caller's, as paths match). */
  cwd?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Kill the command after this long (default 10 minutes). */
  timeoutMs?: number;
  /** How long to wait for a free, answering port (default 30 s). */
  connectTimeoutMs?: number;
  /** Called with each chunk of standard output as it arrives. */
  onStdout?: (b: Uint8Array) => void;
  /** Called with each chunk of standard error as it arrives. */
  onStderr?: (b: Uint8Array) => void;
}

/** Result of {@link guestExec}. */
export interface ExecResult {
  /** Exit code, or 128+signal. */
  code: number;
  /** Standard output (empty when streamed through onStdout). */
  stdout: string;
  /** Standard error (empty when streamed through onStderr). */
  stderr: string;
}

function frame(type: string, nonce: Uint8Array, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + 8 + body.length);
  out[0] = type.charCodeAt(0);
  new DataView(out.buffer).setUint32(1, 8 + body.length, true);
  out.set(nonce, 5);
  out.set(body, 13);
  return out;
}

/** Encodes an exec request body (after the nonce). */
export function encodeRequest(
  argv: string[],
  env: Record<string, string>,
  cwd: string,
): Uint8Array {
  const enc = new TextEncoder();
  const envs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const strs = [cwd, ...envs, ...argv].map((s) => enc.encode(s + "\0"));
  const body = new Uint8Array(8 + strs.reduce((a, s) => a + s.length, 0));
  const dv = new DataView(body.buffer);
  dv.setUint32(0, argv.length, true);
  dv.setUint32(4, envs.length, true);
  let off = 8;
  for (const s of strs) {
    body.set(s, off);
    off += s.length;
  }
  return body;
}

/** Incremental frame parser. */
export class FrameReader {
  private buf = new Uint8Array(0);

  /** Adds bytes; returns the complete frames. */
  push(chunk: Uint8Array): { type: string; nonce: Uint8Array; body: Uint8Array }[] {
    const merged = new Uint8Array(this.buf.length + chunk.length);
    merged.set(this.buf);
    merged.set(chunk, this.buf.length);
    const frames = [];
    let off = 0;
    while (merged.length - off >= 5) {
      const len = new DataView(merged.buffer, off + 1, 4).getUint32(0, true);
      if (len < 8 || len > 1 << 24) throw new Error(`bad frame length ${len}`);
      if (merged.length - off < 5 + len) break;
      frames.push({
        type: String.fromCharCode(merged[off]),
        nonce: merged.slice(off + 5, off + 13),
        body: merged.slice(off + 13, off + 5 + len),
      });
      off += 5 + len;
    }
    this.buf = merged.slice(off);
    return frames;
  }
}

/** How long a guest agent may take to say it started a command (or that its port is busy). */
const ACK_TIMEOUT_MS = 60_000;

const sameNonce = (a: Uint8Array, b: Uint8Array) => a.every((x, i) => x === b[i]);

interface Port {
  lockFd: number;
  conn: Deno.UnixConn;
}

async function acquirePort(runDir: string, node: number, deadline: number): Promise<Port> {
  let lastErr = "no free port";
  for (let attempt = 0; attempt < 10_000 && Date.now() < deadline; attempt++) {
    for (let p = 0; p < LIMITS.ports; p++) {
      const sock = portSocket(runDir, node, p);
      let fd: number;
      try {
        fd = open(`${sock}.lock`, O.RDWR | O.CREAT, 0o600);
      } catch (e) {
        lastErr = (e as Error).message;
        continue;
      }
      if (!flock(fd, LOCK.EX | LOCK.NB)) {
        close(fd);
        continue;
      }
      try {
        const conn = await Deno.connect({ transport: "unix", path: sock });
        return { lockFd: fd, conn };
      } catch (e) {
        lastErr = (e as Error).message;
        close(fd);
        break; // the guest's QEMU is not listening: wait and retry
      }
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new PpmError(
    `cannot reach ${nodeName(node)}`,
    `no agent port answered (${lastErr})`,
    "check `ppm vcluster status`; the console log shows what the guest did",
    EXIT.TIMEOUT,
  );
}

/**
 * Runs `argv` as root in node `node` of the cluster whose sockets are in
 * `runDir`, and returns its exit code and output.
 */
export async function guestExec(
  runDir: string,
  node: number,
  argv: string[],
  opts: ExecOptions = {},
): Promise<ExecResult> {
  if (argv.length === 0) {
    throw new PpmError(
      "nothing to run",
      "no command given",
      "ppm vcluster exec NODE -- CMD...",
      EXIT.USAGE,
    );
  }
  const connectDeadline = Date.now() + (opts.connectTimeoutMs ?? 30_000);
  const cwd = opts.cwd ?? guestPath(Deno.cwd());
  const nonce = crypto.getRandomValues(new Uint8Array(8));
  const run: Attempt = {
    node,
    argv,
    opts,
    nonce,
    request: frame("X", nonce, encodeRequest(argv, opts.env ?? {}, cwd)),
    timeoutMs: opts.timeoutMs ?? 600_000,
  };
  for (let tries = 0; tries < 20; tries++) {
    const port = await acquirePort(runDir, node, connectDeadline);
    const r = await attempt(run, port);
    if (r !== "retry") return r;
  }
  throw new PpmError(
    `cannot run ${argv[0]} on ${nodeName(node)}`,
    "no agent port accepted the command",
    "",
    EXIT.TIMEOUT,
  );
}

/** One command sent to a guest, tried port after port. */
interface Attempt {
  node: number;
  argv: string[];
  opts: ExecOptions;
  nonce: Uint8Array;
  request: Uint8Array;
  timeoutMs: number;
}

/** The timers of one try: the deadline's kill, the wait for the guest's ack, the close after the kill. */
interface Timers {
  deadline?: ReturnType<typeof setTimeout>;
  ack?: ReturnType<typeof setTimeout>;
  closer?: ReturnType<typeof setTimeout>;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* closed meanwhile */ }
}

/**
 * Sends the command on `port` and collects its output until it ends;
 * "retry" when this port could not take it (busy, or closed before it
 * started), so another may.
 */
async function attempt(
  run: Attempt,
  port: Port,
): Promise<ExecResult | "retry"> {
  const { node, argv, opts, nonce, timeoutMs } = run;
  const state = { started: false, busy: false, unanswered: false };
  const out: string[] = [], err: string[] = [];
  const reader = new FrameReader();
  const dec = new TextDecoder();
  const timers: Timers = {};
  try {
    await port.conn.write(run.request);
    timers.deadline = setTimeout(() => {
      port.conn.write(frame("K", nonce, new Uint8Array(new Int32Array([9]).buffer))).catch(
        () => {},
      );
      timers.closer = setTimeout(() => closeQuietly(port.conn), 2000);
    }, timeoutMs);
    // A busy port answers 'B' at once. Without any answer the command may
    // still have started, so it is never sent again: that is an error.
    timers.ack = setTimeout(() => {
      if (state.started) return;
      state.unanswered = true;
      closeQuietly(port.conn);
    }, ACK_TIMEOUT_MS);
    const buf = new Uint8Array(65536);
    const t0 = Date.now();
    while (true) {
      const n = await port.conn.read(buf).catch(() => null);
      if (n === null) {
        if (state.unanswered) {
          throw new PpmError(
            `${argv.join(" ")} on ${nodeName(node)}: no answer`,
            `the guest agent did not say within ${ACK_TIMEOUT_MS / 1000} s whether it started it`,
            "the guest may be overloaded; check its console log in `ppm vcluster status`",
            EXIT.TIMEOUT,
          );
        }
        if (Date.now() - t0 >= timeoutMs) {
          throw new PpmError(
            `${argv.join(" ")} on ${nodeName(node)} did not finish`,
            `killed after ${Math.round(timeoutMs / 1000)} s`,
            "",
            EXIT.TIMEOUT,
          );
        }
        if (!state.started) return "retry"; // the guest closed the port before starting
        throw new PpmError(
          `lost ${nodeName(node)} while running ${argv[0]}`,
          "the guest agent's port closed",
          "check the console log in `ppm vcluster status`",
          EXIT.FAILURE,
        );
      }
      for (const f of reader.push(buf.subarray(0, n))) {
        if (!sameNonce(f.nonce, nonce)) continue;
        if (f.type === "A") state.started = true;
        else if (f.type === "B") state.busy = true;
        else if (f.type === "O") {
          opts.onStdout ? opts.onStdout(f.body) : out.push(dec.decode(f.body, { stream: true }));
        } else if (f.type === "E") {
          opts.onStderr ? opts.onStderr(f.body) : err.push(dec.decode(f.body, { stream: true }));
        } else if (f.type === "R") {
          const code = new DataView(f.body.buffer, f.body.byteOffset).getInt32(0, true);
          return { code, stdout: out.join(""), stderr: err.join("") };
        } else if (f.type === "F") {
          throw new PpmError(
            `cannot run ${argv[0]} on ${nodeName(node)}`,
            dec.decode(f.body),
            "",
            EXIT.FAILURE,
          );
        }
      }
      // This port still runs a command whose client left: another may take it.
      if (state.busy) return "retry";
    }
  } finally {
    clearTimeout(timers.deadline);
    clearTimeout(timers.ack);
    clearTimeout(timers.closer);
    closeQuietly(port.conn);
    close(port.lockFd);
  }
}
