/**
 * Network namespaces for tests that need real sockets: N namespaces on one
 * bridge (the bridge in a namespace of its own) or two joined by a veth
 * pair, with addresses 10.88.0.x/24 on `eth0` and a multicast route on it.
 * Nothing is created in the machine's own namespace: veth ends are created
 * directly inside the test namespaces, so multicast can never leave through
 * a real interface. Names are unique per run (`ppmt-PID-RANDOM-…`).
 *
 * Also: running a program inside a namespace and reading its JSON lines.
 * Every wait is bounded; {@link Netns.cleanup} kills what was started here
 * (by PID) and deletes the namespaces: call it in a finally block.
 *
 * @module
 */
import { run } from "../../core/host/run.ts";

/** One namespace of a test network. */
export interface NetnsNode {
  /** The namespace's name. */
  ns: string;
  /** Its address on the test network (10.88.0.x). */
  address: string;
  /** Its interface on the test network. */
  iface: string;
}

/** The subnet of the test networks; node i gets .i+1. */
export const SUBNET = "10.88.0";

/** Milliseconds any `ip` command may take. */
const IP_TIMEOUT_MS = 10_000;

async function ip(args: string[]): Promise<void> {
  const r = await run("ip", args, { timeoutMs: IP_TIMEOUT_MS });
  if (r.code !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr.trim() || r.code}`);
}

/** Null when this process may create network namespaces, else why not (to skip a test). */
export async function netnsUnavailable(): Promise<string | null> {
  if (Deno.build.os !== "linux") return "network namespaces need Linux";
  if (Deno.uid() !== 0) return "creating network namespaces needs root";
  const probe = `ppmt-${Deno.pid}-probe-${randomHex()}`;
  try {
    await ip(["netns", "add", probe]);
  } catch (e) {
    return `cannot create a network namespace: ${(e as Error).message}`;
  }
  await run("ip", ["netns", "del", probe], { timeoutMs: IP_TIMEOUT_MS });
  return null;
}

function randomHex(): string {
  return [...crypto.getRandomValues(new Uint8Array(3))]
    .map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

/** A running program inside a namespace, with its stdout read as JSON lines. */
export class NsProcess {
  /** The child. */
  readonly child: Deno.ChildProcess;
  /** Its namespace. */
  readonly ns: string;
  /** Lines printed so far: the parsed JSON (or {raw}) and when it was read (ms). */
  readonly lines: { at: number; value: Record<string, unknown> }[] = [];
  /** What it wrote to stderr so far. */
  stderr = "";
  /** Resolves when it has exited. */
  readonly status: Promise<Deno.CommandStatus>;
  #exited = false;
  readonly #reading: Promise<unknown>;

  #stdinPiped: boolean;

  /** Wraps a spawned child (stdout and stderr piped; stdin piped when `stdinPiped`). */
  constructor(child: Deno.ChildProcess, ns: string, stdinPiped = false) {
    this.child = child;
    this.ns = ns;
    this.#stdinPiped = stdinPiped;
    this.status = child.status.then((s) => {
      this.#exited = true;
      return s;
    });
    this.#reading = Promise.all([this.#readStdout(), this.#readStderr()]);
  }

  /** Its PID. */
  get pid(): number {
    return this.child.pid;
  }

  /** True once it has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  async #readStdout(): Promise<void> {
    let rest = "";
    const dec = new TextDecoder();
    for await (const chunk of this.child.stdout) {
      rest += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = rest.indexOf("\n")) >= 0) {
        const line = rest.slice(0, nl).trim();
        rest = rest.slice(nl + 1);
        if (!line) continue;
        let value: Record<string, unknown>;
        try {
          value = JSON.parse(line);
        } catch {
          value = { raw: line };
        }
        this.lines.push({ at: Date.now(), value });
      }
    }
  }

  async #readStderr(): Promise<void> {
    const dec = new TextDecoder();
    for await (const chunk of this.child.stderr) {
      this.stderr += dec.decode(chunk, { stream: true });
      if (this.stderr.length > 1 << 20) this.stderr = this.stderr.slice(-(1 << 19));
    }
  }

  /**
   * The first line (from index `from`) that `pred` accepts, waiting at most
   * `timeoutMs`; throws with the process's output when none comes.
   */
  async waitFor(
    pred: (v: Record<string, unknown>) => boolean,
    timeoutMs: number,
    from = 0,
  ): Promise<{ at: number; value: Record<string, unknown>; index: number }> {
    const deadline = Date.now() + timeoutMs;
    for (let i = from;;) {
      for (; i < this.lines.length; i++) {
        if (pred(this.lines[i].value)) return { ...this.lines[i], index: i };
      }
      if (Date.now() >= deadline || this.#exited) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    for (let i = from; i < this.lines.length; i++) {
      if (pred(this.lines[i].value)) return { ...this.lines[i], index: i };
    }
    throw new Error(
      `${this.ns} (pid ${this.pid}): nothing expected within ${timeoutMs} ms${
        this.#exited ? " (it exited)" : ""
      }\nstdout:\n${this.lines.map((l) => JSON.stringify(l.value)).join("\n")}\nstderr:\n${
        this.stderr.slice(-4000)
      }`,
    );
  }

  /** Sends `signal` to this PID (only), unless it has exited. */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    if (this.#exited) return;
    try {
      this.child.kill(signal);
    } catch { /* gone meanwhile */ }
  }

  /** Closes its stdin (a program that waits for the end of its input then ends). */
  async closeStdin(): Promise<void> {
    if (!this.#stdinPiped) return;
    this.#stdinPiped = false;
    await this.child.stdin.close().catch(() => {});
  }

  /** Waits at most `timeoutMs` for it to exit, then kills it; returns its status. */
  async stop(timeoutMs = 3000): Promise<Deno.CommandStatus> {
    await this.closeStdin();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<null>((r) => (timer = setTimeout(() => r(null), timeoutMs)));
    const s = await Promise.race([this.status, timeout]);
    clearTimeout(timer);
    if (s) {
      await this.#reading;
      return s;
    }
    this.kill("SIGKILL");
    const st = await this.status;
    await this.#reading;
    return st;
  }
}

/** A test network: namespaces, and the processes started in them. */
export class Netns {
  /** The run's unique prefix. */
  readonly prefix: string;
  /** The node namespaces. */
  readonly nodes: NetnsNode[] = [];
  /** Every namespace created, the bridge's included. */
  readonly namespaces: string[] = [];
  readonly #processes: NsProcess[] = [];

  /** An empty network; use {@link createBridged} or {@link createVethPair}. */
  constructor() {
    this.prefix = `ppmt-${Deno.pid}-${randomHex()}`;
  }

  async #addNamespace(name: string): Promise<string> {
    const ns = `${this.prefix}-${name}`;
    await ip(["netns", "add", ns]);
    this.namespaces.push(ns);
    await ip(["-n", ns, "link", "set", "lo", "up"]);
    return ns;
  }

  async #configure(ns: string, index: number): Promise<NetnsNode> {
    const address = `${SUBNET}.${index + 1}`;
    await ip(["-n", ns, "addr", "add", `${address}/24`, "dev", "eth0"]);
    await ip(["-n", ns, "link", "set", "eth0", "up"]);
    await ip(["-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
    const node = { ns, address, iface: "eth0" };
    this.nodes.push(node);
    return node;
  }

  /**
   * `n` namespaces, each with eth0 plugged into a bridge (no STP, no
   * multicast snooping) in a namespace of its own.
   */
  static async createBridged(n: number): Promise<Netns> {
    const net = new Netns();
    try {
      const br = await net.#addNamespace("br");
      await ip(["-n", br, "link", "add", "br0", "type", "bridge", "stp_state", "0"]);
      await ip(["-n", br, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0"]);
      await ip(["-n", br, "link", "set", "br0", "up"]);
      for (let i = 0; i < n; i++) {
        const ns = await net.#addNamespace(String(i));
        const port = `p${i}`;
        await ip([
          "link",
          "add",
          "name",
          "eth0",
          "netns",
          ns,
          "type",
          "veth",
          "peer",
          "name",
          port,
          "netns",
          br,
        ]);
        await ip(["-n", br, "link", "set", port, "master", "br0"]);
        await ip(["-n", br, "link", "set", port, "up"]);
        await net.#configure(ns, i);
      }
    } catch (e) {
      await net.cleanup();
      throw e;
    }
    return net;
  }

  /** Two namespaces joined by a veth pair. */
  static async createVethPair(): Promise<Netns> {
    const net = new Netns();
    try {
      const a = await net.#addNamespace("0");
      const b = await net.#addNamespace("1");
      await ip([
        "link",
        "add",
        "name",
        "eth0",
        "netns",
        a,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        b,
      ]);
      await net.#configure(a, 0);
      await net.#configure(b, 1);
    } catch (e) {
      await net.cleanup();
      throw e;
    }
    return net;
  }

  /** Runs `cmd args` inside namespace `ns` (`ip netns exec`), stdout and stderr piped. */
  spawn(
    ns: string,
    cmd: string,
    args: string[],
    options: { cwd?: string; env?: Record<string, string>; stdin?: "piped" | "null" } = {},
  ): NsProcess {
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", ns, cmd, ...args],
      cwd: options.cwd,
      env: options.env,
      stdin: options.stdin ?? "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const p = new NsProcess(child, ns, options.stdin === "piped");
    this.#processes.push(p);
    return p;
  }

  /** Runs a Deno script inside `ns` with this Deno (`deno run -A --cached-only SCRIPT ARGS`). */
  spawnDeno(
    ns: string,
    script: string,
    args: string[],
    options: { cwd?: string; env?: Record<string, string>; stdin?: "piped" | "null" } = {},
  ): NsProcess {
    return this.spawn(
      ns,
      Deno.execPath(),
      ["run", "-A", "--cached-only", script, ...args],
      { ...options, env: { NO_COLOR: "1", ...options.env } },
    );
  }

  /** Stops every process started here (SIGKILL by PID), then deletes every namespace. */
  async cleanup(): Promise<void> {
    for (const p of this.#processes) p.kill("SIGKILL");
    await Promise.all(this.#processes.map((p) => p.stop(5000).catch(() => {})));
    for (const ns of [...this.namespaces].reverse()) {
      await run("ip", ["netns", "del", ns], { timeoutMs: IP_TIMEOUT_MS }).catch(() => {});
    }
    this.namespaces.length = 0;
  }
}
