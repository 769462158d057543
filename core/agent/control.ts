/**
 * The local control socket between the `ppm` CLI and the node agent: a unix
 * socket only root can use (the directory is 0700, the socket 0600), one
 * JSON request per line, one JSON reply per line.
 *
 * @module
 */
import { dirname } from "node:path";
import { EXIT, PpmError } from "../errors.ts";

/** A request from the CLI. */
export type ControlRequest =
  | { op: "status" }
  | { op: "peers" }
  | { op: "ps" }
  | { op: "migrate"; pid: number; to: string };

/** A reply: `ok` with a result, or an error the CLI shows as it is. */
export type ControlReply =
  | { ok: true; result: unknown }
  | { ok: false; error: { what: string; why: string; fix: string; exitCode: number } };

const MAX_LINE = 1 << 20;

function replacer(_k: string, v: unknown) {
  return typeof v === "bigint" ? v.toString() : v;
}

/** Serves the control socket at `path` until `signal` aborts. */
export async function serveControl(
  path: string,
  handle: (req: ControlRequest) => Promise<unknown>,
  signal: AbortSignal,
  log: (s: string) => void,
): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await Deno.chmod(dirname(path), 0o700);
  await Deno.remove(path).catch(() => {});
  const listener = Deno.listen({ transport: "unix", path });
  await Deno.chmod(path, 0o600);
  signal.addEventListener("abort", () => listener.close(), { once: true });
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

async function readLine(conn: Deno.Conn, deadlineMs: number): Promise<string | null> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const buf = new Uint8Array(65536);
  const timer = setTimeout(() => conn.close(), deadlineMs);
  try {
    while (total < MAX_LINE) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) return null;
      const part = buf.slice(0, n);
      const nl = part.indexOf(10);
      chunks.push(nl >= 0 ? part.subarray(0, nl) : part);
      total += n;
      if (nl >= 0) break;
    }
  } finally {
    clearTimeout(timer);
  }
  const all = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    all.set(c, o);
    o += c.length;
  }
  return new TextDecoder().decode(all);
}

async function writeAll(conn: Deno.Conn, s: string): Promise<void> {
  const b = new TextEncoder().encode(s);
  for (let off = 0; off < b.length;) off += await conn.write(b.subarray(off));
}

async function serveOne(
  conn: Deno.Conn,
  handle: (req: ControlRequest) => Promise<unknown>,
  log: (s: string) => void,
): Promise<void> {
  try {
    const line = await readLine(conn, 10_000);
    if (line === null) return;
    let reply: ControlReply;
    try {
      const req = JSON.parse(line) as ControlRequest;
      reply = { ok: true, result: await handle(req) };
    } catch (e) {
      const err = e instanceof PpmError
        ? e
        : new PpmError("the agent failed", (e as Error).message, "see its log");
      if (!(e instanceof PpmError)) log(`control request failed: ${(e as Error).stack}`);
      reply = {
        ok: false,
        error: { what: err.what, why: err.why, fix: err.fix, exitCode: err.exitCode },
      };
    }
    await writeAll(conn, JSON.stringify(reply, replacer) + "\n");
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

/** Sends one request to the agent at `path` and returns its result (or throws its error). */
export async function controlRequest(
  path: string,
  req: ControlRequest,
  timeoutMs = 600_000,
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
      );
    }
    throw new PpmError(
      "cannot reach the ppm agent",
      `no agent listens on ${path}`,
      "start it: ppm daemon (or systemctl start ppm)",
      EXIT.MISSING,
    );
  }
  try {
    await writeAll(conn, JSON.stringify(req) + "\n");
    const line = await readLine(conn, timeoutMs);
    if (line === null) {
      throw new PpmError("the ppm agent hung up", "no reply", "see the agent's log");
    }
    const reply = JSON.parse(line) as ControlReply;
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
