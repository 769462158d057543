/**
 * Standard-stream relays that outlive their connection and their agent
 * (core/relay, core/agent/relays.ts), on this host with real processes,
 * FIFOs and authenticated loopback connections:
 *
 * - the keeper keeps a process writing into its FIFO alive when the reader
 *   (the agent) goes, and a relay opened again from the FIFOs sends the
 *   rest, in order;
 * - a relay whose connection breaks goes on, byte for byte, on the next
 *   connection, taken up through `relay-resume` by the source's parked relay;
 * - records and resume requests with hostile values are refused.
 */
import { join } from "node:path";
import { ArrivedRelays, ParkedRelays } from "../../core/agent/relays.ts";
import { asMessage } from "../../core/migrate/messages.ts";
import { O, open } from "../../ffi/libc.ts";
import { ArrivedRelay, fifosIn } from "../../core/relay/arrived.ts";
import { keeperId, startKeeper } from "../../core/relay/keeper.ts";
import { KeptRelay } from "../../core/relay/kept.ts";
import { Replay } from "../../core/relay/replay.ts";
import {
  badRecord,
  loadRecords,
  newRelayToken,
  type RelayRecord,
} from "../../core/relay/record.ts";
import { startTicks } from "../../core/host/proc_stat.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { sleep, within, withServer } from "./transport_support.ts";

/** A writer of `n` numbered lines to stdout, one each `ms` (its stdout and stderr: FIFOs). */
function writer(fifoOut: string, fifoErr: string, n: number, ms: number): Deno.ChildProcess {
  const script = `exec >'${fifoOut}' 2>'${fifoErr}'; i=1; while [ $i -le ${n} ]; do ` +
    `echo "line $i"; i=$((i+1)); sleep ${ms / 1000}; done; echo done >&2`;
  return new Deno.Command("bash", {
    args: ["-c", script],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

function lines(n: number): string {
  return Array.from({ length: n }, (_, i) => `line ${i + 1}\n`).join("");
}

async function waitFor(what: string, ok: () => boolean | Promise<boolean>, ms = 15_000) {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

Deno.test({
  name: "keeper: the process keeps writing when its reader goes; a reopened relay sends the rest",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "ppm-relay-" });
    try {
      // The first reader: `head -c 4` takes 4 bytes and goes, like an agent that stops.
      const relay = await ArrivedRelay.create(dir, 4242, false);
      const { stdout, stderr } = relay.fifos;
      const first = new Deno.Command("bash", {
        // Opens the FIFOs in the writer's order; reads exactly one line and goes.
        args: [
          "-c",
          `exec 4<'${stdout}' 3<'${stderr}'; dd bs=1 count=7 status=none <&4; sleep 0.5`,
        ],
        stdout: "piped",
        stderr: "null",
      }).spawn();
      const w = writer(stdout, stderr, 60, 20);
      let keeper = 0;
      try {
        await waitFor("the writer to run", () => startTicks(w.pid) !== "");
        await sleep(100);
        keeper = await startKeeper(w.pid, relay.fifos);
        await waitFor("the keeper", () => {
          try {
            return Deno.readTextFileSync(`/proc/${keeper}/comm`).trim() === "ppm-keeper";
          } catch {
            return false;
          }
        });
        const got = new TextDecoder().decode((await first.output()).stdout);
        assertEquals(got, "line 1\n");
        // No reader now but the keeper: the writer goes on (no SIGPIPE) while the FIFO has room.
        await sleep(300);
        assertEquals(startTicks(w.pid) !== "", true, "the writer died without a reader");

        // A new "agent" opens the FIFOs again at once and relays the rest.
        const out = join(dir, "out");
        const outFd = open(out, O.WRONLY | O.CREAT | O.TRUNC, 0o600);
        const errFd = open(join(dir, "err"), O.WRONLY | O.CREAT | O.TRUNC, 0o600);
        const kept = new KeptRelay({ 1: outFd, 2: errFd }, newRelayToken());
        const again = ArrivedRelay.reopen(
          fifosIn(relay.fifos.dir, false),
          keeperId(keeper),
          () => {},
        );
        await withServer({}, async (s) => {
          const dst = await s.connect();
          const src = await s.next();
          const [a, b] = await within(
            Promise.all([again.attach(dst), kept.run(src)]),
            "the relay to end",
            30_000,
          );
          assertEquals([a, b], ["ended", "ended"]);
        });
        assertEquals((await w.status).signal, null);
        assertEquals(await Deno.readTextFile(out), lines(60).slice("line 1\n".length));
        assertEquals(await Deno.readTextFile(join(dir, "err")), "done\n");
        // The keeper ended with the process.
        await waitFor("the keeper to end", () => startTicks(keeper) === "");
      } finally {
        try {
          w.kill("SIGKILL");
        } catch { /* ended */ }
        await w.status;
        await first.status.catch(() => {});
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "without a keeper the same writer dies of SIGPIPE (what the keeper is for)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "ppm-relay-" });
    try {
      const relay = await ArrivedRelay.create(dir, 4243, false);
      const { stdout, stderr } = relay.fifos;
      const first = new Deno.Command("bash", {
        args: ["-c", `exec 4<'${stdout}' 3<'${stderr}'; dd bs=1 count=7 status=none <&4`],
        stdout: "null",
        stderr: "null",
      }).spawn();
      const w = writer(stdout, stderr, 60, 20);
      await first.status;
      const st = await within(w.status, "the writer to die", 10_000);
      assertEquals(st.signal, "SIGPIPE");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a broken connection: the source parks the relay, the destination takes it up again",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "ppm-relay-" });
    const logs: string[] = [];
    const log = (_l: string, s: string) => logs.push(s);
    try {
      const relay = await ArrivedRelay.create(dir, 4244, false);
      const out = join(dir, "out");
      const outFd = open(out, O.WRONLY | O.CREAT | O.TRUNC, 0o600);
      const kept = new KeptRelay({ 1: outFd }, newRelayToken());
      const parked = new ParkedRelays(log, 60_000);
      await withServer({
        onConnection: async (c) => {
          const first = asMessage(await c.recv(5000), "relay-resume");
          if (first) await parked.resume(c, first);
        },
      }, async (s) => {
        // The migration connection: destination (client) → source (server side of this test).
        const viaServer = withServer({}, async (m) => {
          const dst = await m.connect();
          const src = await m.next();
          const firstRun = relay.attach(dst);
          const w = writer(relay.fifos.stdout, relay.fifos.stderr, 100, 10);
          // As after a restore: the process holds its ends, then the relay lets go of its own.
          await waitFor("the writer's ends", () => {
            try {
              return Deno.readLinkSync(`/proc/${w.pid}/fd/2`) === relay.fifos.stderr;
            } catch {
              return false;
            }
          });
          relay.opened();
          const keeper = await startKeeper(w.pid, relay.fifos);
          let srcEnd: Promise<string> = kept.run(src);
          await waitFor("some output", async () => (await Deno.readTextFile(out)).length > 50);
          // The link breaks mid-stream.
          src.close("test: the link broke");
          assertEquals(await within(srcEnd, "the source to see the break"), "broken");
          srcEnd = new Promise((resolve) => {
            parked.park(
              kept,
              "client-node",
              (c, has) => kept.run(c, has).then(resolve),
              () => resolve("expired"),
            );
          });
          assertEquals(await within(firstRun, "the destination to see the break"), "broken");
          // The destination's agent reconnects and asks for it by its token.
          const rec: RelayRecord = {
            pid: w.pid,
            startTicks: startTicks(w.pid),
            token: kept.token,
            from: "server-node",
            dir: relay.fifos.dir,
            stdin: false,
            keeper: keeperId(keeper),
          };
          const arrived = new ArrivedRelays({
            connect: () => s.connect(),
            upstream: new Map(),
            log,
            retryMs: 100,
          });
          arrived.follow(rec, relay);
          await within(arrived.settled(w.pid), "the relay to end", 30_000);
          assertEquals(await srcEnd, "ended");
          assertEquals((await w.status).signal, null);
        });
        await viaServer;
      });
      assertEquals(await Deno.readTextFile(out), lines(100));
      assert(logs.some((l) => /took up the relay/.test(l)), logs.join("\n"));
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test("relay-resume from another node, or with an unknown token, is refused alike", async () => {
  const logs: string[] = [];
  const parked = new ParkedRelays((_l, s) => logs.push(s), 60_000);
  const fd = open("/dev/null", O.WRONLY);
  const kept = new KeptRelay({ 1: fd }, newRelayToken());
  let resumed = 0;
  parked.park(kept, "node-b", () => resumed++, () => {});
  const ask = (token: string) => ({ op: "relay-resume" as const, token, pid: 5, has: {} });
  const answers: unknown[] = [];
  const conn = (peer: string) => ({
    peer,
    send: (m: unknown) => (answers.push(m), Promise.resolve()),
    recv: () => Promise.resolve(undefined),
    streamSink: () => () => Promise.resolve(),
    endStream: () => Promise.resolve(),
    streamSource: () => (async function* () {})(),
    close: () => {},
  });
  await parked.resume(conn("node-c"), ask(kept.token));
  await parked.resume(conn("node-b"), ask(newRelayToken()));
  assertEquals(answers, [
    { op: "relay-resumed", ok: false, reason: "no such relay here" },
    { op: "relay-resumed", ok: false, reason: "no such relay here" },
  ]);
  assertEquals([resumed, parked.size], [0, 1]);
  await parked.resume(conn("node-b"), ask(kept.token));
  assertEquals([resumed, parked.size], [1, 0]);
  kept.close();
  parked.closeAll();

  // Hostile requests are not requests at all.
  for (
    const bad of [
      null,
      "relay-resume",
      { ...ask(kept.token), token: "AB".repeat(16) },
      { ...ask(kept.token), pid: -1 },
      { ...ask(kept.token), has: { 2: 5 } },
      { ...ask(kept.token), has: { 4: -1 } },
      { ...ask(kept.token), has: { 4: 2 ** 60 } },
      { ...ask(kept.token), has: { "04": 1 } },
      { ...ask(kept.token), has: [1] },
      { ...ask(kept.token), has: undefined },
      { ...ask(kept.token), token: `${kept.token}\n` },
    ]
  ) assertEquals(asMessage(bad, "relay-resume"), undefined, JSON.stringify(bad));
});

Deno.test("relay records: hostile values are refused, and such files removed", async () => {
  const root = await Deno.makeTempDir({ prefix: "ppm-run-" });
  const dir = join(root, "relays");
  await Deno.mkdir(dir);
  const good: RelayRecord = {
    pid: 4100,
    startTicks: "123456",
    token: newRelayToken(),
    from: "node1",
    dir: join(root, "in-4100-abc123"),
    stdin: true,
    keeper: { pid: 4101, startTicks: "123460" },
    arrival: {
      name: "sleeper",
      origin: { node: "node1", pid: 4100 },
      moves: 1,
      at: "2026-12-05T10:00:00Z",
    },
  };
  const arr = good.arrival!;
  try {
    assertEquals(badRecord(good, root), "");
    const hostile: [Partial<RelayRecord> | null, RegExp][] = [
      [null, /object/],
      [{ ...good, pid: 1 }, /pid/],
      [{ ...good, pid: 2 ** 53 }, /pid/],
      [{ ...good, startTicks: "12 34" }, /startTicks/],
      [{ ...good, token: "../../etc" }, /token/],
      [{ ...good, from: "node1; rm -rf /" }, /node name/],
      [{ ...good, from: "-rf" }, /node name/],
      [{ ...good, dir: "/etc" }, /directory/],
      [{ ...good, dir: join(root, "in-4100-abc/../../etc") }, /directory/],
      [{ ...good, dir: join(root, "..", "in-4100-abc") }, /directory/],
      [{ ...good, dir: join(root, "relays") }, /directory/],
      [{ ...good, stdin: "yes" as unknown as boolean }, /stdin/],
      [{ ...good, keeper: { pid: 0, startTicks: "" } }, /keeper/],
      [{ ...good, keeper: { pid: 7, startTicks: "x" } }, /keeper/],
      [{ ...good, arrival: { ...arr, name: "x".repeat(65) } }, /arrival/],
      [{ ...good, arrival: { ...arr, origin: { node: "a b", pid: 5 } } }, /arrival/],
      [{ ...good, arrival: { ...arr, moves: 0 } }, /arrival/],
      [{ ...good, arrival: { ...arr, at: "yesterday" } }, /arrival/],
      [{ ...good, arrival: null as unknown as RelayRecord["arrival"] }, /arrival/],
    ];
    for (const [r, why] of hostile) assertMatch(badRecord(r, root), why, JSON.stringify(r));

    await Deno.writeTextFile(join(dir, "4100.json"), JSON.stringify(good));
    await Deno.writeTextFile(
      join(dir, "4200.json"),
      JSON.stringify({ ...good, pid: 4200, dir: "/" }),
    );
    await Deno.writeTextFile(join(dir, "4300.json"), JSON.stringify(good)); // not its PID
    await Deno.writeTextFile(join(dir, "4400.json"), "{not json");
    await Deno.writeTextFile(join(dir, "4500.json"), " ".repeat(70_000));
    await Deno.writeTextFile(join(dir, "notes.txt"), "left alone");
    const { records, bad } = loadRecords(dir, root);
    assertEquals(records.map((r) => r.pid), [4100]);
    assertEquals(bad.length, 4, bad.join("\n"));
    const left = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assertEquals(left, ["4100.json", "notes.txt"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("replay: what the other end lacks, within the kept window; hostile offsets give nothing", () => {
  const r = new Replay(10);
  const enc = (s: string) => new TextEncoder().encode(s);
  const dec = (cs: Uint8Array[]) => cs.map((c) => new TextDecoder().decode(c)).join("");
  r.record(enc("abcd"));
  r.record(enc("efgh"));
  assertEquals(dec(r.since(2).chunks), "cdefgh");
  assertEquals(r.since(8).chunks, []);
  r.record(enc("ijkl")); // the last 10 bytes still need "abcd"
  assertEquals(r.since(0).lost, 0);
  r.record(enc("mnop")); // 16 bytes: "abcd" goes
  assertEquals(r.end, 16);
  assertEquals(r.since(0), { chunks: r.since(4).chunks, lost: 4 });
  assertEquals(dec(r.since(5).chunks), "fghijklmnop");
  for (const bad of [-1, 17, 2 ** 60, NaN, 1.5]) {
    assertEquals(r.since(bad), { chunks: [], lost: 0 });
  }
  r.rebase(1000);
  assertEquals([r.end, r.since(999).chunks.length], [1000, 0]);
  r.record(enc("xy"));
  assertEquals(dec(r.since(1000).chunks), "xy");
});

Deno.test("relay-resumed answers with hostile offsets are not answers", () => {
  assert(asMessage({ op: "relay-resumed", ok: true, has: { 2: 5, 3: 0 } }, "relay-resumed"));
  assert(
    asMessage({ op: "relay-resumed", ok: false, reason: "no such relay here" }, "relay-resumed"),
  );
  for (
    const bad of [
      null,
      { op: "relay-resumed" },
      { op: "relay-resumed", ok: "yes" },
      { op: "relay-resumed", ok: true, has: { 4: 1 } },
      { op: "relay-resumed", ok: true, has: { 2: -1 } },
      { op: "relay-resumed", ok: true, has: { 2: 2 ** 60 } },
      { op: "relay-resumed", ok: true, has: { 2: 1, 3: 1, 5: 1 } },
      { op: "relay-resumed", ok: true, has: "2" },
    ]
  ) assertEquals(asMessage(bad, "relay-resumed"), undefined, JSON.stringify(bad));
});
