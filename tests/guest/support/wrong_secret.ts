/**
 * Run in a guest: connects to HOST:PORT with a freshly made (wrong) cluster
 * secret and prints the refusal as JSON. Exit 0 when refused, 1 if not.
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import { PpmError } from "../../../core/errors.ts";
import { connectPeer } from "../../../core/transport/conn.ts";

const [host, port] = Deno.args;
try {
  const c = await connectPeer({
    host,
    port: Number(port),
    secret: new Uint8Array(randomBytes(32)),
    node: "intruder",
  });
  c.close();
  console.log(JSON.stringify({ refused: false }));
  Deno.exit(1);
} catch (e) {
  console.log(JSON.stringify({ refused: true, why: e instanceof PpmError ? e.why : String(e) }));
}
