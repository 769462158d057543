/**
 * A stand-alone discovery agent, for tests and diagnostics: runs discovery
 * with the node agent's configuration (file, PPM_* variables and the same
 * flags as `ppm daemon`) and prints one JSON object per line on stdout:
 *
 *     {"t":…,"type":"ready","id":…,"name":…,"addresses":[…],"interface":…}
 *     {"t":…,"type":"join"|"update"|"leave","id":…,"name":…,"from":…}
 *       (a leave adds "reason": left|expired|replaced and "lastSeen", ms)
 *     {"t":…,"type":"counters","counters":{…}}     after every ignored packet but its own
 *     {"t":…,"type":"stopped","leave":true}
 *
 * SIGTERM or SIGINT stops it with a leaving announcement; so does the end of
 * --max-seconds (default 120) and, with --exit-on-eof, the end of stdin.
 *
 * With --replay N it instead captures announcements from the group and sends
 * the first one of each of N senders again, unchanged, 100 ms later (a test
 * of replay protection), printing {"type":"replayed","id":…,"seq":…}.
 *
 *     deno run -A tests/support/discovery_agent.ts --secret-file S --interface eth0 \
 *       --announce-interval 250ms [--config FILE] [--print-updates]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { PPM_ABI_VERSION } from "../../ffi/uapi.ts";
import { loadConfig } from "../../core/config/load.ts";
import { type LogLevel, logs, type PpmConfig, SETTINGS } from "../../core/config/schema.ts";
import { PpmError } from "../../core/errors.ts";
import { loadSecret } from "../../core/security/secret.ts";
import { ignoredTotal } from "../../core/discovery/counters.ts";
import { interfaceAddress } from "../../core/discovery/local.ts";
import { type Discovery, startDiscovery } from "../../core/discovery/service.ts";
import { closeSocket, openReceiver, openSender, sendPacket } from "../../core/discovery/socket.ts";
import { peekPacket } from "../../core/discovery/wire.ts";

function print(obj: Record<string, unknown>): void {
  console.log(JSON.stringify({ t: Date.now(), ...obj }));
}

function camel(flag: string): string {
  return flag.replace(/^--/, "").replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

function parse(args: string[]) {
  const options: Record<string, { type: "string" | "boolean" }> = {
    config: { type: "string" },
    "ppm-version": { type: "string" },
    "max-seconds": { type: "string" },
    "print-updates": { type: "boolean" },
    "exit-on-eof": { type: "boolean" },
    replay: { type: "string" },
  };
  for (const s of SETTINGS) if (s.flag) options[s.flag.slice(2)] = { type: "string" };
  const { values } = parseArgs({ args, options, strict: true, allowPositionals: false });
  const flags: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    if (s.flag && values[s.flag.slice(2)] !== undefined) {
      flags[camel(s.flag)] = values[s.flag.slice(2)];
    }
  }
  if (values.config !== undefined) flags.config = values.config;
  return { flags, values };
}

function logger(level: LogLevel) {
  return (l: LogLevel, message: string) => {
    if (logs(l, level)) console.error(`${l}: ${message}`);
  };
}

async function replay(config: PpmConfig, count: number, deadline: number): Promise<void> {
  const ifaceAddress = interfaceAddress(config.interface, Deno.networkInterfaces());
  const sender = await openSender({
    interfaceAddress: ifaceAddress,
    ttl: config.ttl,
    loopback: false,
  });
  const seen = new Set<string>();
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const pending: Promise<void>[] = [];
  const receiver = await openReceiver(
    { port: config.port, group: config.group, interfaceAddress: ifaceAddress },
    (packet) => {
      const p = peekPacket(packet);
      if (!p || seen.has(p.id) || seen.size >= count) return;
      seen.add(p.id);
      const copy = packet.slice();
      pending.push((async () => {
        await new Promise((r) => setTimeout(r, 100));
        await sendPacket(sender, copy, config.port, config.group);
        print({ type: "replayed", id: p.id, seq: p.seq });
        if (seen.size >= count) done();
      })());
    },
    (e) => console.error(`error: ${e.message}`),
  );
  print({ type: "ready", mode: "replay" });
  const timer = setTimeout(done, Math.max(0, deadline - Date.now()));
  await finished;
  clearTimeout(timer);
  await Promise.allSettled(pending);
  await closeSocket(receiver);
  await closeSocket(sender);
}

async function agent(
  config: PpmConfig,
  values: Record<string, unknown>,
  deadline: number,
): Promise<void> {
  const secret = await loadSecret(config.secretFile);
  const log = logger(config.logLevel);
  let lastIgnored = 0;
  const holder: { d?: Discovery } = {};
  const d = await startDiscovery(config, {
    secret: secret.key,
    version: String(values["ppm-version"] ?? "0.0.0-agent"),
    abi: PPM_ABI_VERSION,
    log,
    onReceived: () => {
      const c = holder.d?.listener.state.counters;
      const ignored = c ? ignoredTotal(c) - c.ignored.self : 0; // own packets loop back
      if (c && ignored !== lastIgnored) {
        lastIgnored = ignored;
        print({ type: "counters", counters: c });
      }
    },
  });
  holder.d = d;
  d.on((e) => {
    if (e.type === "update" && !values["print-updates"]) return;
    const reason = e.type === "leave" ? { reason: e.reason, lastSeen: e.peer.lastSeen } : {};
    print({ type: e.type, id: e.peer.id, name: e.peer.name, from: e.peer.from, ...reason });
  });
  print({
    type: "ready",
    id: d.identity.id,
    name: d.identity.name,
    addresses: d.identity.addresses,
    interface: d.status().self.interface,
  });
  let stop!: () => void;
  const stopped = new Promise<void>((r) => (stop = r));
  for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, () => stop());
  const timer = setTimeout(() => stop(), Math.max(0, deadline - Date.now()));
  if (values["exit-on-eof"]) {
    (async () => {
      for await (const _ of Deno.stdin.readable) { /* wait for the end */ }
      stop();
    })().catch(() => stop());
  }
  await stopped;
  clearTimeout(timer);
  await d.stop({ leave: true });
  print({ type: "stopped", leave: true, counters: d.listener.state.counters });
}

async function main(): Promise<number> {
  const { flags, values } = parse(Deno.args);
  const maxSeconds = Number(values["max-seconds"] ?? 120);
  const deadline = Date.now() + (Number.isFinite(maxSeconds) ? maxSeconds : 120) * 1000;
  const config = await loadConfig({ flags });
  if (values.replay !== undefined) await replay(config, Number(values.replay), deadline);
  else await agent(config, values, deadline);
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (e) {
    const msg = e instanceof PpmError ? e.render() : String((e as Error)?.stack ?? e);
    print({ type: "error", message: msg });
    console.error(msg);
    Deno.exit(e instanceof PpmError ? e.exitCode : 1);
  }
}
