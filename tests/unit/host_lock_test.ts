import { assertEquals, assertRejects } from "../support/assert.ts";
import { hostLockPath, withHostLock } from "../../core/host/lock.ts";

Deno.test("withHostLock: holders of one lock take turns, across processes too", async () => {
  const name = `test-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const order: string[] = [];
  const a = withHostLock(name, async () => {
    order.push("a in");
    await new Promise((r) => setTimeout(r, 300));
    order.push("a out");
  });
  await new Promise((r) => setTimeout(r, 50));
  // Another process asks for the same lock: it gets it only once `a` let go.
  const code = `import { withHostLock } from ${
    JSON.stringify(
      new URL("../../core/host/lock.ts", import.meta.url).href,
    )
  }; await withHostLock(${JSON.stringify(name)}, async () => console.log("child in"));`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdout: "piped",
  }).output();
  const b = withHostLock(name, () => {
    order.push("b in");
    return Promise.resolve();
  });
  await Promise.all([a, b]);
  const out = await child;
  assertEquals(new TextDecoder().decode(out.stdout).trim(), "child in");
  assertEquals(order, ["a in", "a out", "b in"]);
  await Deno.remove(hostLockPath(name));
});

Deno.test("withHostLock: a name is a plain word, never a path", async () => {
  for (const bad of ["../x", "a/b", "", "x".repeat(101), "a b", "a\nb"]) {
    await assertRejects(() => withHostLock(bad, () => Promise.resolve()));
  }
});
