/**
 * An offer, checked field by field as hostile input before anything uses
 * it: an authenticated peer can still be wrong, old or compromised, and an
 * offer's PID ends up in paths and its sizes in admission arithmetic.
 *
 * @module
 */
import { EXIT, PpmError } from "../errors.ts";
import { arr, int, obj, path, str } from "../image/fields.ts";
import type { Offer } from "./protocol.ts";
import { expectedOf } from "./expected.ts";

const KINDS = ["tcp", "tcp-pending", "tcp-listen", "udp"];
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

function endpoint(v: unknown, what: string): { addr: string; port: number } {
  const o = obj(v, what);
  const addr = str(o, "addr", what, 15);
  if (!IPV4.test(addr)) throw new PpmError("refused", `a malformed offer: ${what} is not IPv4`);
  return { addr, port: int(o, "port", what, 0, 65535) };
}

/** `v` as an Offer, or a PpmError("refused", ...) naming the field that is wrong. */
export function checkOffer(v: unknown): Offer {
  try {
    const o = obj(v, "offer");
    if (o.op !== "offer") throw new PpmError("refused", "not an offer");
    const origin = obj(o.origin, "offer.origin");
    const stdin = str(o, "stdin", "offer", 8);
    if (!["closed", "null", "relay"].includes(stdin)) {
      throw new PpmError("refused", `a malformed offer: stdin is ${stdin}`);
    }
    return {
      op: "offer",
      pid: int(o, "pid", "offer", 1, 4194304),
      comm: str(o, "comm", "offer", 64),
      kernel: str(o, "kernel", "offer", 256),
      cpuFlags: arr(o.cpuFlags, "offer.cpuFlags", 1024).map((f, i) =>
        str({ f }, "f", `offer.cpuFlags[${i}]`, 64)
      ),
      abi: int(o, "abi", "offer", 0, 1 << 20),
      files: arr(o.files, "offer.files", 65536).map((f, i) => {
        const x = obj(f, `offer file ${i}`);
        const sha256 = str(x, "sha256", `offer file ${i}`, 64);
        if (!/^[0-9a-f]{64}$/.test(sha256)) {
          throw new PpmError("refused", `a malformed offer: file ${i} has no SHA-256`);
        }
        return {
          path: path(x, "path", `offer file ${i}`),
          size: int(x, "size", `offer file ${i}`, 0, Number.MAX_SAFE_INTEGER),
          sha256,
        };
      }),
      estimatedBytes: int(o, "estimatedBytes", "offer", 0, Number.MAX_SAFE_INTEGER),
      from: str(o, "from", "offer", 256),
      origin: {
        node: str(origin, "node", "offer.origin", 256),
        pid: int(origin, "pid", "offer.origin", 1, 4194304),
      },
      moves: int(o, "moves", "offer", 0, 1 << 20),
      stdin: stdin as Offer["stdin"],
      fromAddr: o.fromAddr === undefined ? "" : str(o, "fromAddr", "offer", 64),
      sockets: arr(o.sockets ?? [], "offer.sockets", 65536).map((s, i) => {
        const x = obj(s, `offer socket ${i}`);
        const kind = str(x, "kind", `offer socket ${i}`, 16);
        if (!KINDS.includes(kind)) {
          throw new PpmError("refused", `a malformed offer: socket ${i} is of kind ${kind}`);
        }
        return {
          kind: kind as Offer["sockets"][number]["kind"],
          local: endpoint(x.local, `offer socket ${i}.local`),
          ...(x.remote === undefined || x.remote === null
            ? {}
            : { remote: endpoint(x.remote, `offer socket ${i}.remote`) }),
        };
      }),
      cwd: path(o, "cwd", "offer"),
      expected: expectedOf(o.expected),
    };
  } catch (e) {
    if (e instanceof PpmError && e.what === "refused") throw e;
    const why = e instanceof PpmError
      ? `${e.what.replace(/^malformed image: /, "")}: ${e.why}`
      : String(e);
    throw new PpmError("refused", `a malformed offer: ${why}`, "", EXIT.FAILURE, { cause: e });
  }
}
