/** The module on the 6.12 kernel line (bookworm-backports): loads and answers PPM_IOC_INFO. */
import { PPM_ABI_VERSION } from "../../ffi/uapi.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { withCluster } from "../support/cluster.ts";

Deno.test({
  name: "guest 6.12: the module loads and answers PPM_IOC_INFO",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await withCluster({ name: "t612", nodes: 1, kernel: "6.12", memory: 1024 }, async (c) => {
      const load = await c.ppm(1, ["module", "load"]);
      assertEquals(load.code, 0, load.stderr);
      const s = JSON.parse(await c.ok(1, ["ppm", "module", "status", "--json"]));
      assertEquals([s.loaded, s.abi, s.device], [true, PPM_ABI_VERSION, true]);
      assertMatch(s.kernel, /^6\.12\./);
      assert(s.features.includes("info"), "PPM_IOC_INFO answered no features");
      assert(s.features.includes("redirect"), "the netfilter redirects are missing on 6.12");
      assertEquals((await c.ppm(1, ["module", "unload"])).code, 0);
    });
  },
});
