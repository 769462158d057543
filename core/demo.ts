/**
 * ppm's main job, shown end to end on a built-in virtual cluster: boot two
 * Debian guests, load the module on each through `ppm module load`, and
 * show `ppm module status` from every node. Later steps of the project grow
 * this into a live migration.
 *
 * @module
 */
import { guestExec } from "./vcluster/client.ts";
import { down, up } from "./vcluster/cluster.ts";
import { EXIT, PpmError } from "./errors.ts";
import { parseSpec } from "./vcluster/spec.ts";

/** Options of {@link runDemo}. */
export interface DemoOptions {
  /** Cluster name (default "demo"). */
  name?: string;
  /** Leave the cluster running afterwards. */
  keep?: boolean;
  /** Where the narration goes. */
  log?: (s: string) => void;
}

/** Runs the demo; throws a PpmError when a step fails (the cluster is torn down unless `keep`). */
export async function runDemo(opts: DemoOptions = {}): Promise<void> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const spec = parseSpec({ name: opts.name ?? "demo", nodes: 2, kernel: "6.1" });
  log(`== booting a two-node virtual cluster "${spec.name}" (Debian 6.1 guests under QEMU)`);
  const st = await up(spec, { progress: (s) => log(`   ${s}`) });
  try {
    for (const n of st.nodes) {
      const stream = {
        onStdout: (b: Uint8Array) => log(prefix(n.name, b)),
        onStderr: (b: Uint8Array) => log(prefix(n.name, b)),
      };
      log(`== ${n.name}: ppm module load`);
      const load = await guestExec(st.runDir, n.index, ["ppm", "module", "load"], {
        cwd: "/",
        timeoutMs: 180_000,
        ...stream,
      });
      if (load.code !== 0) {
        throw new PpmError(
          `the demo failed on ${n.name}`,
          `ppm module load exited ${load.code}`,
          "",
          EXIT.FAILURE,
        );
      }
    }
    for (const n of st.nodes) {
      log(`== ${n.name}: ppm module status`);
      const stream = {
        onStdout: (b: Uint8Array) => log(prefix(n.name, b)),
        onStderr: (b: Uint8Array) => log(prefix(n.name, b)),
      };
      const s = await guestExec(st.runDir, n.index, ["ppm", "module", "status"], {
        cwd: "/",
        timeoutMs: 180_000,
        ...stream,
      });
      if (s.code !== 0) {
        throw new PpmError(
          `the demo failed on ${n.name}`,
          `ppm module status exited ${s.code}`,
          "",
          EXIT.FAILURE,
        );
      }
    }
    log(`== the module is loaded on ${st.nodes.map((n) => n.name).join(" and ")}`);
  } finally {
    if (opts.keep) {
      log(
        `== cluster "${spec.name}" left running: ppm vcluster exec --name ${spec.name} node1 -- CMD; ppm vcluster down --name ${spec.name}`,
      );
    } else {
      log(`== tearing the cluster down`);
      await down(spec.name);
    }
  }
}

function prefix(node: string, b: Uint8Array): string {
  return new TextDecoder().decode(b).replace(/\n$/, "").split("\n").map((l) => `   ${node}| ${l}`)
    .join("\n");
}
