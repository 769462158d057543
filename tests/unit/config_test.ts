/** The node agent's configuration: defaults, precedence, validation, the file. */
import { join } from "node:path";
import * as v from "valibot";
import { EXIT, PpmError } from "../../core/errors.ts";
import {
  CONFIG_DEFAULTS,
  type ConfigInputs,
  explainConfig,
  loadConfig,
  PpmConfigSchema,
  resolveConfig,
  SETTINGS,
} from "../../core/config/mod.ts";
import { LOG_LEVELS, logs } from "../../core/config/schema.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

function inputs(over: Partial<ConfigInputs> = {}): ConfigInputs {
  return { env: {}, flags: {}, hostname: "node1", ...over };
}

/** The PpmError thrown by `fn`; fails when it returns or throws anything else. */
function usageError(fn: () => unknown): PpmError {
  try {
    fn();
  } catch (e) {
    assert(e instanceof PpmError, `expected a PpmError, got ${e}`);
    assertEquals(e.exitCode, EXIT.USAGE, e.message);
    return e;
  }
  throw new Error("expected a PpmError, nothing was thrown");
}

async function rejection(fn: () => Promise<unknown>): Promise<PpmError> {
  try {
    await fn();
  } catch (e) {
    assert(e instanceof PpmError, `expected a PpmError, got ${e}`);
    return e;
  }
  throw new Error("expected a PpmError, nothing was thrown");
}

Deno.test("config: the defaults, with the hostname as node name", () => {
  const c = resolveConfig(inputs());
  assertEquals(c, { ...CONFIG_DEFAULTS, nodeName: "node1" });
  assertEquals(c.group, "239.77.0.1");
  assertEquals(c.port, 7377);
  assertEquals(c.interface, null);
  assertEquals(c.ttl, 1);
  assertEquals(c.advertise, null);
  assertEquals(c.secretFile, "/etc/ppm/secret");
  assertEquals(c.migrationPort, 7378);
  assertEquals(c.announceInterval, 1);
  assertEquals(c.peerExpiry, 3);
  assertEquals(c.logLevel, "info");
  assertEquals(c.controlSocket, "/run/ppm/ppm.sock");
  assertEquals(c.balance, undefined);
  assertEquals(resolveConfig({ env: {}, flags: {} }).nodeName, "localhost");
});

Deno.test("config: flags win over the environment, which wins over the file", () => {
  const file = { port: 1001, ttl: 2, logLevel: "warn", nodeName: "fromfile", group: "239.1.1.1" };
  const env = { PPM_PORT: "2002", PPM_TTL: "3", PPM_NODE_NAME: "fromenv", HOME: "/root" };
  const flags = { port: "3003", config: "/x.json", interface: undefined };
  const { config, sources } = explainConfig(inputs({ file, env, flags }));
  assertEquals(config.port, 3003);
  assertEquals(config.ttl, 3);
  assertEquals(config.nodeName, "fromenv");
  assertEquals(config.logLevel, "warn");
  assertEquals(config.group, "239.1.1.1");
  assertEquals(config.migrationPort, 7378);
  assertEquals(sources.port, "flag");
  assertEquals(sources.ttl, "env");
  assertEquals(sources.nodeName, "env");
  assertEquals(sources.logLevel, "file");
  assertEquals(sources.migrationPort, "default");
  assertEquals(sources.interface, "default");
});

Deno.test("config: every setting can come from each of its sources", () => {
  const text: Record<string, string> = {
    group: "239.9.9.9",
    port: "9000",
    interface: "br0",
    ttl: "4",
    advertise: "10.0.0.5",
    nodeName: "n-5.a_b",
    secretFile: "/srv/secret",
    migrationPort: "9001",
    announceInterval: "250ms",
    peerExpiry: "5",
    logLevel: "debug",
    controlSocket: "/tmp/ppm.sock",
  };
  const typed: Record<string, unknown> = {
    ...text,
    port: 9000,
    ttl: 4,
    migrationPort: 9001,
    announceInterval: 0.25,
    peerExpiry: 5,
  };
  const env: Record<string, string> = {};
  for (const s of SETTINGS) if (s.env) env[s.env] = text[s.name];
  assertEquals(resolveConfig(inputs({ file: typed })), { ...typed } as unknown);
  assertEquals(resolveConfig(inputs({ env })), { ...typed } as unknown);
  assertEquals(resolveConfig(inputs({ flags: text })), { ...typed } as unknown);
  const numericFlags = { ...text, port: 9000, ttl: 4, peerExpiry: 5, announceInterval: 0.25 };
  assertEquals(resolveConfig(inputs({ flags: numericFlags })), { ...typed } as unknown);
});

Deno.test("config: empty variables are unset; null and empty flags clear nullable settings", () => {
  const file = { interface: "eth1", advertise: "10.1.1.1" };
  assertEquals(
    resolveConfig(inputs({ file, env: { PPM_INTERFACE: "", PPM_PORT: "" } })).port,
    7377,
  );
  assertEquals(resolveConfig(inputs({ file, env: { PPM_INTERFACE: "" } })).interface, "eth1");
  const cleared = resolveConfig(inputs({ file, flags: { interface: "", advertise: null } }));
  assertEquals([cleared.interface, cleared.advertise], [null, null]);
  const nulls = resolveConfig(inputs({ file: { interface: null, advertise: null } }));
  assertEquals([nulls.interface, nulls.advertise], [null, null]);
});

Deno.test("config: the balance object is passed through untouched", () => {
  const balance = { busyLoad: 1.2, whatever: "checked elsewhere", nested: { a: [1] } };
  const c = resolveConfig(inputs({ file: { balance } }));
  assertEquals(c.balance, balance);
  const e = usageError(() => resolveConfig(inputs({ file: { balance: [1] } })));
  assertMatch(e.message, /^balance \[1\] in file: not an object$/);
  const f = usageError(() => resolveConfig(inputs({ flags: { balance: {} } })));
  assertMatch(f.message, /unknown option --balance/);
});

Deno.test("config: an error names the variable, flag or file key and the bad value", () => {
  assertEquals(
    usageError(() => resolveConfig(inputs({ env: { PPM_PORT: "abc" } }))).message,
    "PPM_PORT=abc: not a port",
  );
  const flag = usageError(() => resolveConfig(inputs({ flags: { port: "0" } })));
  assertEquals(flag.message, "--port 0: not a port");
  assertEquals(flag.fix, "give a whole number from 1 to 65535");
  assertEquals(
    usageError(() => resolveConfig(inputs({ file: { port: "7377" }, filePath: "/etc/p.json" })))
      .message,
    'port "7377" in /etc/p.json: not a port',
  );
  assertMatch(
    usageError(() => resolveConfig(inputs({ flags: { migrationPort: 70000 } }))).render(),
    /^ppm: --migration-port 70000: not a port\n {2}what to do: give a whole number from 1 to 65535$/,
  );
});

Deno.test("config: every validation error", () => {
  const bad: [Record<string, string>, RegExp][] = [
    [{ PPM_GROUP: "10.0.0.1" }, /^PPM_GROUP=10\.0\.0\.1: not an IPv4 multicast address$/],
    [{ PPM_GROUP: "239.77.0.256" }, /not an IPv4 multicast address/],
    [{ PPM_GROUP: "239.077.0.1" }, /not an IPv4 multicast address/],
    [{ PPM_GROUP: "240.0.0.1" }, /not an IPv4 multicast address/],
    [{ PPM_PORT: "65536" }, /^PPM_PORT=65536: not a port$/],
    [{ PPM_PORT: "1.5" }, /not a port/],
    [{ PPM_PORT: "-1" }, /not a port/],
    [{ PPM_INTERFACE: "a/b" }, /^PPM_INTERFACE=a\/b: not an interface name/],
    [{ PPM_INTERFACE: "sixteen-chars-xx" }, /not an interface name/],
    [{ PPM_INTERFACE: "eth0:1" }, /not an interface name/],
    [{ PPM_INTERFACE: "10.0.0.999" }, /^PPM_INTERFACE=10\.0\.0\.999: not an IPv4 address$/],
    [{ PPM_TTL: "0" }, /^PPM_TTL=0: not a TTL$/],
    [{ PPM_TTL: "256" }, /not a TTL/],
    [{ PPM_ADVERTISE: "239.77.0.1" }, /^PPM_ADVERTISE=239\.77\.0\.1: not a unicast address/],
    [{ PPM_ADVERTISE: "0.0.0.0" }, /not a unicast address/],
    [{ PPM_ADVERTISE: "host.example" }, /not an IPv4 address/],
    [{ PPM_NODE_NAME: "-x" }, /^PPM_NODE_NAME=-x: not a node name$/],
    [{ PPM_NODE_NAME: "a b" }, /not a node name/],
    [{ PPM_NODE_NAME: "n".repeat(65) }, /not a node name/],
    [{ PPM_SECRET_FILE: " " }, /^PPM_SECRET_FILE= : not a file path$/],
    [{ PPM_MIGRATION_PORT: "x" }, /^PPM_MIGRATION_PORT=x: not a port$/],
    [{ PPM_ANNOUNCE_INTERVAL: "soon" }, /^PPM_ANNOUNCE_INTERVAL=soon: not a duration$/],
    [{ PPM_ANNOUNCE_INTERVAL: "10ms" }, /^PPM_ANNOUNCE_INTERVAL=10ms: out of range$/],
    [{ PPM_ANNOUNCE_INTERVAL: "3601" }, /out of range/],
    [{ PPM_PEER_EXPIRY: "1" }, /^PPM_PEER_EXPIRY=1: not a number of missed intervals$/],
    [{ PPM_PEER_EXPIRY: "2.5" }, /not a number of missed intervals/],
    [{ PPM_LOG_LEVEL: "verbose" }, /^PPM_LOG_LEVEL=verbose: not a log level$/],
    [{ PPM_CONTROL_SOCKET: "ppm.sock" }, /^PPM_CONTROL_SOCKET=ppm\.sock: not an absolute path$/],
    [{ PPM_CONTROL_SOCKET: "/" + "x".repeat(107) }, /longer than 107 bytes/],
  ];
  for (const [env, re] of bad) {
    const e = usageError(() => resolveConfig(inputs({ env })));
    assertMatch(e.message, re, JSON.stringify(env));
    assert(e.fix.length > 0, `a fix for ${JSON.stringify(env)}`);
  }
  assertMatch(
    usageError(() => resolveConfig(inputs({ env: { PPM_LOG_LEVEL: "x" } }))).fix,
    /^use error, warn, info or debug$/,
  );
});

Deno.test("config: the file needs JSON types; durations accept units", () => {
  const file = (f: Record<string, unknown>) => resolveConfig(inputs({ file: f, filePath: "c" }));
  assertMatch(usageError(() => file({ ttl: "1" })).message, /^ttl "1" in c: not a TTL$/);
  assertMatch(usageError(() => file({ group: 1 })).message, /not an IPv4 multicast address/);
  assertMatch(usageError(() => file({ nodeName: null })).message, /^nodeName null in c/);
  assertMatch(usageError(() => file({ announceInterval: "2" })).message, /not a duration/);
  assertEquals(file({ announceInterval: "1.5s" }).announceInterval, 1.5);
  assertEquals(file({ announceInterval: "300ms" }).announceInterval, 0.3);
  assertEquals(file({ announceInterval: 0.05 }).announceInterval, 0.05);
  assertEquals(file({ interface: "10.88.0.1" }).interface, "10.88.0.1");
  assertMatch(usageError(() => file({ interface: 5 })).message, /^interface 5 in c: not an/);
});

Deno.test("config: a file that is not an object, unknown keys and flags are refused with a hint", () => {
  for (const f of [[], null, "x", 3]) {
    const e = usageError(() => resolveConfig(inputs({ file: f, filePath: "/etc/ppm/ppm.json" })));
    assertEquals(e.message, "the configuration /etc/ppm/ppm.json: not a JSON object");
  }
  const key = usageError(() => resolveConfig(inputs({ file: { prot: 1 }, filePath: "f.json" })));
  assertEquals(key.message, 'the configuration f.json: unknown setting "prot"');
  assertMatch(key.fix, /^did you mean port\? known: group, port, interface/);
  const far = usageError(() => resolveConfig(inputs({ file: { zzzzzzzz: 1 } })));
  assertMatch(far.fix, /^known: group, port/);
  const flag = usageError(() => resolveConfig(inputs({ flags: { nodeNmae: "x" } })));
  assertEquals(flag.message, "unknown option --node-nmae: it is not a setting of the node agent");
  assertMatch(flag.fix, /^did you mean --node-name\?/);
  // "config" names the file and is not a setting; undefined flags are not given.
  assertEquals(resolveConfig(inputs({ flags: { config: "/x", port: undefined } })).port, 7377);
  // Other PPM_ variables belong to other parts of ppm.
  assertEquals(resolveConfig(inputs({ env: { PPM_STATE_DIR: "/x", PPM_PROT: "1" } })).port, 7377);
});

Deno.test("config: a hostname that is not a node name needs nodeName", () => {
  const e = usageError(() => resolveConfig({ env: {}, flags: {}, hostname: "my host" }));
  assertEquals(e.message, 'the hostname "my host": is not a valid node name');
  assertMatch(e.fix, /^set nodeName \(--node-name, PPM_NODE_NAME\)/);
  assertEquals(
    resolveConfig({ env: {}, flags: { nodeName: "ok" }, hostname: "my host" }).nodeName,
    "ok",
  );
});

Deno.test("config: loadConfig reads the file; a missing default is fine, a missing --config is not", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "ppm.json");
    await Deno.writeTextFile(path, JSON.stringify({ port: 8000, ttl: 2 }));
    const opts = { env: { PPM_TTL: "3" }, hostname: "h", defaultPath: join(dir, "none.json") };
    const c = await loadConfig({ ...opts, flags: { config: path } });
    assertEquals([c.port, c.ttl, c.nodeName], [8000, 3, "h"]);
    const viaEnv = await loadConfig({ env: { PPM_CONFIG: path }, hostname: "h" });
    assertEquals(viaEnv.port, 8000);
    // The default file may be missing ...
    assertEquals((await loadConfig(opts)).port, 7377);
    // ... or present.
    assertEquals((await loadConfig({ ...opts, defaultPath: path })).port, 8000);
    // An explicit one must exist.
    const missing = await rejection(() =>
      loadConfig({ ...opts, flags: { config: join(dir, "nope.json") } })
    );
    assertEquals(missing.exitCode, EXIT.MISSING);
    assertMatch(missing.message, /nope\.json: the file does not exist$/);
    assertMatch(missing.fix, /--config/);
    const missingEnv = await rejection(() =>
      loadConfig({ env: { PPM_CONFIG: join(dir, "nope.json") }, hostname: "h" })
    );
    assertMatch(missingEnv.fix, /PPM_CONFIG/);
    // Bad JSON, a directory, a bad value: usage errors naming the file.
    await Deno.writeTextFile(path, '{"port": 8000,}');
    const syntax = await rejection(() => loadConfig({ ...opts, flags: { config: path } }));
    assertEquals(syntax.exitCode, EXIT.USAGE);
    assertMatch(
      syntax.message,
      /^cannot parse the configuration .*ppm\.json: it is not valid JSON/,
    );
    const isDir = await rejection(() => loadConfig({ ...opts, flags: { config: dir } }));
    assertMatch(isDir.message, /not a regular file/);
    await Deno.writeTextFile(path, '{"port": "x"}');
    const value = await rejection(() => loadConfig({ ...opts, flags: { config: path } }));
    assertEquals(value.message, `port "x" in ${path}: not a port`);
    const emptyFlag = await rejection(() => loadConfig({ ...opts, flags: { config: "" } }));
    assertEquals(emptyFlag.exitCode, EXIT.USAGE);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("config: log levels, least verbose first; a level logs what is at most as verbose", () => {
  assertEquals(LOG_LEVELS, ["error", "warn", "info", "debug"]);
  assertEquals(LOG_LEVELS.map((l) => logs(l, "info")), [true, true, true, false]);
  assertEquals(LOG_LEVELS.map((l) => logs(l, "error")), [true, false, false, false]);
  assert(logs("debug", "debug"));
  assert(logs("notice", "error"), "a message of no known level is logged");
});

Deno.test("config: hostile values are refused, named by their source", () => {
  const cases: [Partial<ConfigInputs>, RegExp][] = [
    // Huge numbers, NaN and infinities.
    [{ env: { PPM_PORT: "1e400" } }, /^PPM_PORT=1e400: not a port$/],
    [{ env: { PPM_PORT: "9".repeat(400) } }, /^PPM_PORT=9{400}: not a port$/],
    [{ file: { port: 1e308 } }, /^port 1e\+308 in file: not a port$/],
    // (A flag's value is shown as JSON, where NaN and the infinities are null.)
    [{ flags: { port: Infinity } }, /^--port null: not a port$/],
    [{ flags: { ttl: NaN } }, /^--ttl null: not a TTL$/],
    [{ flags: { peerExpiry: 2 ** 53 } }, /^--peer-expiry 9007199254740992: not a number of/],
    [{ flags: { announceInterval: NaN } }, /^--announce-interval null: not a duration$/],
    [{ flags: { announceInterval: -Infinity } }, /not a duration$/],
    [{ env: { PPM_ANNOUNCE_INTERVAL: "1e400" } }, /^PPM_ANNOUNCE_INTERVAL=1e400: not a duration$/],
    [{ env: { PPM_ANNOUNCE_INTERVAL: "9".repeat(400) } }, /: not a duration$/],
    [{ file: { announceInterval: 1e308 } }, /^announceInterval 1e\+308 in file: out of range$/],
    // Negative.
    [{ file: { ttl: -1 } }, /^ttl -1 in file: not a TTL$/],
    [{ file: { peerExpiry: -5 } }, /^peerExpiry -5 in file: not a number of missed intervals$/],
    [{ file: { announceInterval: -1 } }, /^announceInterval -1 in file: out of range$/],
    [{ env: { PPM_ANNOUNCE_INTERVAL: "-1" } }, /^PPM_ANNOUNCE_INTERVAL=-1: not a duration$/],
    [{ file: { announceInterval: "-1s" } }, /not a duration$/],
    // Wrong types.
    [{ file: { port: true } }, /^port true in file: not a port$/],
    [{ file: { port: [7377] } }, /^port \[7377\] in file: not a port$/],
    [{ file: { port: { value: 7377 } } }, /^port {"value":7377} in file: not a port$/],
    [
      { file: { group: {} } },
      /^group {} in file: not an IPv4 multicast address \(give a string\)$/,
    ],
    [{ file: { logLevel: 1 } }, /^logLevel 1 in file: not a log level \(give a string\)$/],
    [{ file: { balance: "x" } }, /^balance "x" in file: not an object$/],
    [{ file: { balance: null } }, /^balance null in file: not an object$/],
    [{ file: { advertise: false } }, /^advertise false in file: not an IPv4 address/],
    [
      { flags: { controlSocket: 5 } },
      /^--control-socket 5: not an absolute path \(give a string\)$/,
    ],
    [{ flags: { port: null } }, /^--port null: not a port$/],
    // A key that is there must hold a value (a caller's record, not JSON).
    [{ file: { port: undefined } }, /^port undefined in file: not a port$/],
    // Keys that name Object.prototype's members are not settings.
    [{ file: JSON.parse('{"__proto__": {"port": 1}}') }, /unknown setting "__proto__"$/],
    [{ file: { constructor: 1 } }, /unknown setting "constructor"$/],
    [{ file: { toString: "x" } }, /unknown setting "toString"$/],
    [{ flags: JSON.parse('{"__proto__": "1"}') }, /^unknown option --__proto__/],
    [{ flags: { hasOwnProperty: "x" } }, /^unknown option --has-own-property/],
    // Over-long strings.
    [{ env: { PPM_NODE_NAME: "n".repeat(10_000) } }, /: not a node name$/],
    [{ file: { group: "2".repeat(100_000) } }, /: not an IPv4 multicast address$/],
    [{ file: { interface: "x".repeat(100_000) } }, /: not an interface name/],
    [{ flags: { logLevel: "info".repeat(10_000) } }, /: not a log level$/],
    [{ env: { PPM_CONTROL_SOCKET: "/" + "é".repeat(54) } }, /: longer than 107 bytes/],
  ];
  for (const [over, re] of cases) {
    const e = usageError(() => resolveConfig(inputs(over)));
    assertMatch(e.message, re, JSON.stringify(over).slice(0, 80));
    assert(e.fix.length > 0, `a fix for ${JSON.stringify(over).slice(0, 80)}`);
  }
  assertEquals(Object.prototype.hasOwnProperty.call(Object.prototype, "port"), false);
  const long = usageError(() =>
    resolveConfig(inputs({ flags: { controlSocket: "/" + "x".repeat(200) } }))
  );
  assertMatch(long.fix, /absolute path of at most 107 bytes/);
});

Deno.test("config: the first fault in a source's own order is the one reported", () => {
  const first = (over: Partial<ConfigInputs>) => usageError(() => resolveConfig(inputs(over)));
  assertMatch(first({ file: { ttl: 0, port: 0 } }).message, /^ttl 0/);
  assertMatch(first({ file: { port: 0, ttl: 0 } }).message, /^port 0/);
  assertMatch(first({ file: { prot: 1, port: 0 } }).message, /unknown setting "prot"/);
  assertMatch(first({ file: { port: 0, prot: 1 } }).message, /^port 0/);
  assertMatch(first({ flags: { ttl: "x", port: "y" } }).message, /^--ttl x/);
  assertMatch(first({ flags: { bogus: 1, port: "y" } }).message, /^unknown option --bogus/);
  // Variables in the order of the settings.
  assertMatch(first({ env: { PPM_TTL: "0", PPM_PORT: "y" } }).message, /^PPM_PORT=y/);
});

Deno.test("config: a balance object with hostile keys is passed on as it is, nothing polluted", () => {
  const balance = JSON.parse('{"__proto__": {"polluted": true}, "constructor": 1}');
  const c = resolveConfig(inputs({ file: { balance } }));
  assert(c.balance === balance, "the same object");
  assertEquals(({} as Record<string, unknown>).polluted, undefined);
});

Deno.test("config: the resolved configuration fits PpmConfigSchema, whatever its sources", () => {
  const env: Record<string, string> = { PPM_PORT: "9000", PPM_ANNOUNCE_INTERVAL: "250ms" };
  const file = { interface: "br0", balance: { busyLoad: 1 }, logLevel: " debug " };
  const flags = { advertise: "10.0.0.5", ttl: "4" };
  for (const over of [{}, { env }, { file }, { flags }, { env, file, flags }]) {
    const c = resolveConfig(inputs(over));
    assertEquals(v.parse(PpmConfigSchema, c), c);
  }
  assertEquals(SETTINGS.map((s) => s.name), Object.keys(PpmConfigSchema.entries));
});
