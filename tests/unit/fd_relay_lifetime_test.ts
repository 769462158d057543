/**
 * How long the source keeps a migration's connection when descriptors are
 * relayed on it (core/agent/outbound.ts `follow`): not a grace after the
 * output relay ended, but as long as the descriptor relays run; once the
 * news of the process's end came, they stop reading and are waited for
 * (bounded) while what the process wrote comes in.
 */
import { follow, type MoverDeps } from "../../core/agent/outbound.ts";
import { ProcessTable } from "../../core/agent/processes.ts";
import { FdRelay, FdRelaySet, fdStreams, relayRole } from "../../core/relay/fds.ts";
import { close, readFdWithin, writeFd } from "../../ffi/libc.ts";
import { pipe2 } from "../../ffi/fds.ts";
import { SOCK, socketPair } from "../../ffi/socket.ts";
import { channelPair } from "../support/mem_channel.ts";
import { waitUntil } from "../support/fd_kinds.ts";
import { assert, assertEquals } from "../support/assert.ts";

const enc = new TextEncoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function deps(exitGraceMs: number, logs: string[] = []): MoverDeps {
  return {
    table: new ProcessTable("node1"),
    log: (l: string, s: string) => logs.push(`${l}: ${s}`),
    exitGraceMs,
  } as unknown as MoverDeps;
}

async function readAll(fd: number): Promise<string> {
  const buf = new Uint8Array(4096);
  let out = "";
  for (const end = Date.now() + 10_000; Date.now() < end;) {
    const n = await readFdWithin(fd, buf, 100);
    if (n === null) continue;
    if (n === 0) return out;
    out += new TextDecoder().decode(buf.subarray(0, n));
  }
  throw new Error(`no end of file; got ${JSON.stringify(out)}`);
}

Deno.test("follow: no deputy, no stdio relay: the connection stays open past the grace while a descriptor relay runs, and closes once it ended", async () => {
  const [src, dst] = channelPair();
  const [peerRead, homeWrite] = pipe2();
  const [r2, w2] = pipe2();
  const fds = new FdRelaySet([
    new FdRelay(homeWrite, relayRole("pipe-write", "source"), fdStreams(0, "source")),
  ]);
  fds.run(src);
  const there = new FdRelay(
    r2,
    relayRole("pipe-write", "destination"),
    fdStreams(0, "destination"),
  );
  const far = there.run(dst);
  follow(deps(50), src, "node2", 42, 42, { fds }, undefined);
  await sleep(400); // 8 graces
  assert(!src.isClosed(), "the connection was closed under a running relay");
  await writeFd(w2, enc.encode("still relayed\n"));
  close(w2); // the process closes its end
  assertEquals(await readAll(peerRead), "still relayed\n");
  await waitUntil("the connection closed", () => src.isClosed());
  await far;
  close(peerRead);
});

Deno.test("follow: the news of the end stops the reading; the connection closes once what the process wrote came in", async () => {
  const [src, dst] = channelPair();
  const [peer, home] = socketPair(SOCK.STREAM);
  const [agent2, proc2] = socketPair(SOCK.STREAM);
  const fds = new FdRelaySet([
    new FdRelay(home, relayRole("unix-stream", "source"), fdStreams(0, "source")),
  ]);
  fds.run(src);
  const far = new FdRelay(
    agent2,
    relayRole("unix-stream", "destination"),
    fdStreams(0, "destination"),
  )
    .run(dst);
  follow(deps(10_000), src, "node2", 42, 42, { fds }, undefined);
  await dst.send({ op: "exited", pid: 42, node: "node2", code: 0 });
  await sleep(300);
  assert(!src.isClosed(), "closed before what the process wrote came in");
  await writeFd(proc2, enc.encode("last words\n"));
  close(proc2);
  assertEquals(await readAll(peer), "last words\n");
  await waitUntil("the connection closed", () => src.isClosed());
  await far;
  close(peer);
});

Deno.test("follow: after the news of the end, relays that never end are cut after the grace, said in the log", async () => {
  const [src, dst] = channelPair();
  const [peerRead, homeWrite] = pipe2();
  const [r2, w2] = pipe2(); // w2 stays open: a child of the process there still holds it
  const fds = new FdRelaySet([
    new FdRelay(homeWrite, relayRole("pipe-write", "source"), fdStreams(0, "source")),
  ]);
  fds.run(src);
  const far = new FdRelay(r2, relayRole("pipe-write", "destination"), fdStreams(0, "destination"))
    .run(dst);
  const logs: string[] = [];
  follow(deps(200, logs), src, "node2", 42, 42, { fds }, undefined);
  await dst.send({ op: "exited", pid: 42, node: "node2", code: 0 });
  await waitUntil("the connection closed", () => src.isClosed());
  assert(logs.some((l) => /descriptor relays did not/.test(l)), logs.join("\n"));
  await fds.done;
  await far;
  close(w2);
  close(peerRead);
});
