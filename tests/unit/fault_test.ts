/** PPM_FAULT: only known points, and a point not armed does nothing. */
import { fault, FAULT_POINTS } from "../../core/fault.ts";
import { assertEquals, assertMatch } from "../support/assert.ts";

Deno.test("fault: points not armed do nothing", async () => {
  if (Deno.env.get("PPM_FAULT")) return; // someone armed this test run on purpose
  for (const p of FAULT_POINTS) await fault(p);
});

Deno.test("fault: an unknown point in PPM_FAULT is refused with the list of points", async () => {
  const code = `import { armedFaults } from "${
    new URL("../../core/fault.ts", import.meta.url).href
  }"; try { armedFaults(); } catch (e) { console.log(e.message); }`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    env: { PPM_FAULT: "restore,bogus" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assertMatch(text, /unknown fault point bogus/);
  assertMatch(text, /crash-before-commit/);
  assertEquals(out.code, 0);
});

Deno.test("fault: an armed restore point throws a clear error", async () => {
  const code = `import { fault } from "${
    new URL("../../core/fault.ts", import.meta.url).href
  }"; try { await fault("restore"); console.log("passed"); } catch (e) { console.log(e.message); }`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    env: { PPM_FAULT: "restore" },
    stdout: "piped",
  }).output();
  assertMatch(new TextDecoder().decode(out.stdout), /injected fault restore/);
});
