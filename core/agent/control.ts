/**
 * The local control socket between the `ppm` CLI and the node agent: a unix
 * socket only root can use (the directory is 0700, the socket 0600), one
 * JSON request per line, one JSON reply per line. Before its reply, a long
 * request may send event lines (`{"event": ...}`), such as a migration's
 * progress.
 *
 * @module
 */
import { dirname } from "node:path";
import { EXIT, PpmError } from "../errors.ts";
import { type ControlRequest, parseControlRequest } from "./control_schema.ts";
import { writeAll } from "../host/write_all.ts";

export type { ControlRequest } from "./control_schema.ts";

/** Sends an event line to the requester before the reply. */
export type Emit = (event: unknown) => void;

/** A reply: `ok` with a result, or an error the CLI shows as it is. */
export type ControlReply =
  | { ok: true; result: unknown }
  | { ok: false; error: { what: string; why: string; fix: string; exitCode: number } };

const MAX_LINE = 1 << 20;

function replacer(_k: string, v: unknown) {
  return typeof v === "bigint" ? v.toString() : v;
}

/** Serves the control socket at `path` until `signal` aborts; `onListening` once it accepts. */
export async function serveControl(
  path: string,
  handle: (req: ControlRequest, emit: Emit) => Promise<unknown>,
  signal: AbortSignal,
  log: (s: string) => void,
  onListening: () => void = () => {},
): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await Deno.chmod(dirname(path), 0o700);
  await Deno.remove(path).catch(() => {});
  const listener = Deno.listen({ transport: "unix", path });
  await Deno.chmod(path, 0o600);
  signal.addEventListener("abort", () => listener.close(), { once: true });
  onListening();
  try {
    for await (const conn of listener) {
      serveOne(conn, handle, log).catch((e) => log(`control connection: ${(e as Error).message}`));
    }
  } catch (e) {
    if (!signal.aborted) throw e;
  } finally {
    await Deno.remove(path).catch(() => {});
  }
}

/** Reads newline-terminated lines of at most MAX_LINE bytes from a socket. */
class LineReader {
  #buf = new Uint8Array(0);
  constructor(private conn: Deno.Conn) {}

  /** The next line, or null at the end of the connection or after `deadlineMs`. */
  async next(deadlineMs: number): Promise<string | null> {
    const timer = setTimeout(() => this.conn.close(), deadlineMs);
    try {
      const chunk = new Uint8Array(65536);
      for (;;) {
        const nl = this.#buf.indexOf(10);
        if (nl >= 0) {
          const line = new TextDecoder().decode(this.#buf.subarray(0, nl));
          this.#buf = this.#buf.slice(nl + 1);
          return line;
        }
        if (this.#buf.length >= MAX_LINE) return null;
        const n = await this.conn.read(chunk).catch(() => null);
        if (n === null) return null;
        const grown = new Uint8Array(this.#buf.length + n);
        grown.set(this.#buf);
        grown.set(chunk.subarray(0, n), this.#buf.length);
        this.#buf = grown;
      }
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Writes line `s` (JSON and its newline) to `conn`. */
function writeText(conn: Deno.Conn, s: string): Promise<void> {
  return writeAll(conn, new TextEncoder().encode(s));
}

async function serveOne(
  conn: Deno.Conn,
  handle: (req: ControlRequest, emit: Emit) => Promise<unknown>,
  log: (s: string) => void,
): Promise<void> {
  try {
    // Generous: a client writes its request at once, but a starved agent may read it late.
    const line = await new LineReader(conn).next(30_000);
    if (line === null) return;
    let reply: ControlReply;
    // Events go out in order, and never after the reply; a requester that left loses them.
    let events = Promise.resolve();
    const emit: Emit = (event) => {
      events = events.then(() => writeText(conn, JSON.stringify({ event }, replacer) + "\n"))
        .catch(() => {});
    };
    try {
      // Checked whole before anything is done: a bad line is refused, never used.
      const req = parseControlRequest(line);
      reply = { ok: true, result: await handle(req, emit) };
    } catch (e) {
      const err = e instanceof PpmError
        ? e
        : new PpmError("the agent failed", (e as Error).message, "see its log", EXIT.FAILURE, {
          cause: e,
        });
      if (!(e instanceof PpmError)) log(`control request failed: ${(e as Error).stack}`);
      reply = {
        ok: false,
        error: { what: err.what, why: err.why, fix: err.fix, exitCode: err.exitCode },
      };
    }
    await events;
    await writeText(conn, JSON.stringify(reply, replacer) + "\n");
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

/** The `what` of the error {@link controlRequest} throws when a request got no reply. */
export const UNANSWERED = "the ppm agent did not answer";

/**
 * Sends one request to the agent at `path` and returns its result (or
 * throws its error); events before the reply go to `onEvent`.
 */
export async function controlRequest(
  path: string,
  req: ControlRequest,
  timeoutMs = 600_000,
  onEvent?: (event: unknown) => void,
): Promise<unknown> {
  let conn: Deno.Conn;
  try {
    conn = await Deno.connect({ transport: "unix", path });
  } catch (e) {
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new PpmError(
        "cannot reach the ppm agent",
        `${path} is for root only`,
        "run ppm as root",
        EXIT.PERMISSION,
        { cause: e },
      );
    }
    throw new PpmError(
      "cannot reach the ppm agent",
      `no agent listens on ${path}`,
      "start it: ppm daemon (or systemctl start ppm)",
      EXIT.MISSING,
      { cause: e },
    );
  }
  try {
    await writeText(conn, JSON.stringify(req) + "\n");
    const lines = new LineReader(conn);
    const deadline = Date.now() + timeoutMs;
    let reply: ControlReply | undefined;
    while (!reply) {
      const line = await lines.next(Math.max(1, deadline - Date.now()));
      if (line === null) {
        throw new PpmError(
          UNANSWERED,
          Date.now() >= deadline
            ? `no reply within ${Math.round(timeoutMs / 1000)} s`
            : "it closed the connection without a reply",
          "see the agent's log",
        );
      }
      const msg = JSON.parse(line) as ControlReply | { event: unknown };
      if ("event" in msg) onEvent?.(msg.event);
      else reply = msg;
    }
    if (!reply.ok) {
      const e = reply.error;
      throw new PpmError(e.what, e.why, e.fix, e.exitCode as typeof EXIT[keyof typeof EXIT]);
    }
    return reply.result;
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}
