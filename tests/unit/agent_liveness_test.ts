import { probeNode } from "../../core/agent/liveness.ts";
import { assertEquals } from "../support/assert.ts";

Deno.test("liveness: a listening port, and a closed one (the kernel resets)", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  const accepting = l.accept().then((c) => c.close()).catch(() => {});
  try {
    assertEquals(await probeNode("127.0.0.1", port, 2000), "listening");
  } finally {
    await accepting;
    l.close();
  }
  // The port is closed now: the kernel answers with a reset.
  assertEquals(await probeNode("127.0.0.1", port, 2000), "refused");
});

// Silence (a dead node, a cut link) is covered by the socket guest test that cuts a link.
