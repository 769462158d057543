/**
 * Living under systemd: readiness notifications for `Type=notify`, and
 * moving processes that arrive on this node out of the agent's cgroup into
 * scopes of their own, so that `systemctl restart ppm` (or an agent crash)
 * never takes them down with it.
 *
 * @module
 */
import { AF, closeSocket, connectUnix, sendAll, SOCK, socket } from "../../ffi/socket.ts";

/** True when systemd is this node's init (sd_booted(3): /run/systemd/system exists). */
export function underSystemd(): boolean {
  try {
    return Deno.lstatSync("/run/systemd/system").isDirectory;
  } catch {
    return false;
  }
}

/**
 * Sends `state` (newline-separated VAR=value lines, sd_notify(3)) to
 * `$NOTIFY_SOCKET`; does nothing when it is not set. Returns whether it was
 * sent. Never throws: a lost notification makes systemd time out, which it
 * reports itself.
 */
export function notifySystemd(state: string, path = Deno.env.get("NOTIFY_SOCKET")): boolean {
  if (!path || !(path.startsWith("/") || path.startsWith("@"))) return false;
  let fd = -1;
  try {
    fd = socket(AF.UNIX, SOCK.DGRAM);
    connectUnix(fd, path);
    sendAll(fd, new TextEncoder().encode(state));
    return true;
  } catch {
    return false;
  } finally {
    if (fd >= 0) closeSocket(fd);
  }
}

/** What a scope is made of. */
export interface ScopeSpec {
  /** The unit's name, ending in ".scope". */
  unit: string;
  /** Shown by systemctl status. */
  description: string;
  /** The slice to put it in (default: systemd's, system.slice). */
  slice?: string;
}

/** Unit names systemd accepts: [A-Za-z0-9:_.\-] and \xNN escapes; ppm builds only plain ones. */
const UNIT_NAME = /^[A-Za-z0-9:_.-]{1,240}\.(scope|slice)$/;

/**
 * The busctl(1) arguments of a StartTransientUnit call that creates scope
 * `s` holding `pids` (what `systemd-run --scope` does for a new process, for
 * running ones). Every value is a separate argument: no shell.
 */
export function scopeCall(pids: number | number[], s: ScopeSpec): string[] {
  const list = typeof pids === "number" ? [pids] : pids;
  if (list.length === 0 || list.length > 16) throw new Error(`bad PID count ${list.length}`);
  for (const pid of list) {
    if (!Number.isSafeInteger(pid) || pid <= 1) throw new Error(`bad PID ${pid}`);
  }
  if (!UNIT_NAME.test(s.unit) || !s.unit.endsWith(".scope")) {
    throw new Error(`bad scope name ${JSON.stringify(s.unit)}`);
  }
  if (s.slice !== undefined && (!UNIT_NAME.test(s.slice) || !s.slice.endsWith(".slice"))) {
    throw new Error(`bad slice name ${JSON.stringify(s.slice)}`);
  }
  // Printable, one line: the description is data, never an argument busctl could misread.
  const description = s.description.replace(/[^\x20-\x7e]/g, "?").slice(0, 200);
  const props: string[] = [
    "PIDs",
    "au",
    String(list.length),
    ...list.map(String),
    "Description",
    "s",
    description,
    "CollectMode",
    "s",
    "inactive-or-failed",
  ];
  if (s.slice) props.push("Slice", "s", s.slice);
  return [
    "--system",
    "--timeout=10",
    "call",
    "org.freedesktop.systemd1",
    "/org/freedesktop/systemd1",
    "org.freedesktop.systemd1.Manager",
    "StartTransientUnit",
    "ssa(sv)a(sa(sv))",
    s.unit,
    "fail",
    String(countProps(props)),
    ...props,
    "0",
  ];
}

function countProps(props: string[]): number {
  // Each property is NAME SIG VALUE, except "au" arrays: NAME au N V1..VN.
  let n = 0;
  for (let i = 0; i < props.length; n++) {
    i += props[i + 1] === "au" ? 3 + Number(props[i + 2]) : 3;
  }
  return n;
}

/** The cgroup v2 path of `pid` ("" when it cannot be read). */
export function cgroupOf(pid: number): string {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/cgroup`);
    return /^0::(.*)$/m.exec(text)?.[1] ?? "";
  } catch {
    return "";
  }
}

/**
 * Moves `pids` (the first is the process the scope is for) into a new
 * scope `s` and waits (at most 5 s) until the kernel shows the first there.
 * Returns its cgroup; throws an Error saying why otherwise.
 */
export async function moveToScope(pids: number | number[], s: ScopeSpec): Promise<string> {
  const list = typeof pids === "number" ? [pids] : pids;
  const pid = list[0];
  const out = await new Deno.Command("busctl", {
    args: scopeCall(list, s),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (out.code !== 0) {
    throw new Error(
      `busctl StartTransientUnit ${s.unit}: ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
  for (let i = 0; i < 100; i++) {
    const cg = cgroupOf(pid);
    if (cg.endsWith(`/${s.unit}`)) return cg;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`process ${pid} did not reach ${s.unit} (it is in ${cgroupOf(pid) || "?"})`);
}
