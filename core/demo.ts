/**
 * ppm's main job, shown end to end on a built-in virtual cluster: boot two
 * Debian guests, load the module and start the agent on each, start a
 * process on node1 that prints a counter, migrate it to node2 while it
 * runs, and show that the counter goes on, without a gap, in the very file
 * it was writing on node1.
 *
 * @module
 */
import { join } from "node:path";
import { EXIT, PpmError } from "./errors.ts";
import { stateDir } from "./paths.ts";
import { ensurePackages } from "./host/packages.ts";
import { generateSecret } from "./security/secret.ts";
import { guestExec } from "./vcluster/client.ts";
import { type ClusterState, down, up } from "./vcluster/cluster.ts";
import { guestPath, parseSpec } from "./vcluster/spec.ts";

/** Options of {@link runDemo}. */
export interface DemoOptions {
  /** Cluster name (default "demo"). */
  name?: string;
  /** Leave the cluster running afterwards. */
  keep?: boolean;
  /** Where the narration goes. */
  log?: (s: string) => void;
}

/** The counter the demo migrates: one process (python3), one line every 0.2 s. */
const COUNTER =
  `python3 -u -c 'import time\nfor i in range(400):\n    print("count", i)\n    time.sleep(0.2)'`;

async function sh(
  st: ClusterState,
  node: number,
  script: string,
  log: (s: string) => void,
  quiet = false,
) {
  const prefix = (b: Uint8Array) =>
    log(
      new TextDecoder().decode(b).replace(/\n$/, "").split("\n").map((l) => `   node${node}| ${l}`)
        .join("\n"),
    );
  const r = await guestExec(st.runDir, node, ["sh", "-c", script], {
    cwd: "/",
    timeoutMs: 300_000,
    onStdout: quiet ? undefined : prefix,
    onStderr: prefix,
  });
  if (r.code !== 0) {
    throw new PpmError(
      `the demo failed on node${node}`,
      `\`${script.slice(0, 60)}\` exited ${r.code}`,
      "",
      EXIT.FAILURE,
    );
  }
  return r.stdout;
}

/** Runs the demo; throws a PpmError when a step fails (the cluster is torn down unless `keep`). */
export async function runDemo(opts: DemoOptions = {}): Promise<void> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const spec = parseSpec({ name: opts.name ?? "demo", nodes: 2, kernel: "6.1" });
  const secret = join(stateDir(), "demo-secret");
  await Deno.remove(secret).catch(() => {});
  await generateSecret(secret);
  await ensurePackages(["python3"], "the demo's counter", (s) => log(`   ${s}`));
  log(`== booting a two-node virtual cluster "${spec.name}" (Debian 6.1 guests under QEMU)`);
  const st = await up(spec, { progress: (s) => log(`   ${s}`) });
  try {
    for (const n of [1, 2]) {
      log(`== node${n}: ppm module load, then ppm daemon`);
      await sh(st, n, "ppm module load", log);
      await sh(
        st,
        n,
        `ppm daemon --secret-file ${
          guestPath(secret)
        } --node-name node${n} > /tmp/agent.log 2>&1 &`,
        log,
      );
    }
    log("== waiting until the agents see each other (ppm peers on node1)");
    await sh(
      st,
      1,
      "i=0; until ppm peers 2>/dev/null | grep -q 'node2 *alive' || [ $i -ge 60 ]; do sleep 1; i=$((i+1)); done; ppm peers",
      log,
    );
    log("== node1: a counter, writing to /tmp/counter.txt");
    const pid =
      (await sh(st, 1, `cd /tmp; ${COUNTER} > /tmp/counter.txt 2>&1 & echo $!`, log, true))
        .trim();
    await sh(st, 1, "sleep 3; tail -2 /tmp/counter.txt", log);
    log(`== node1: ppm module status; ppm migrate ${pid} --to node2`);
    await sh(st, 1, `ppm module status | head -3; ppm migrate ${pid} --to node2`, log);
    log(`== node2 now runs process ${pid}:`);
    await sh(st, 2, `ps -o pid,args | grep '^ *${pid} ' || true; ppm module status | head -3`, log);
    log("== node1: the counter goes on in the same file, from node2, with no gap:");
    await sh(
      st,
      1,
      "sleep 4; tail -3 /tmp/counter.txt; " +
        'awk \'{ if ($2 != n) { print "GAP at " n; bad=1 } n=$2+1 } END { if (bad) exit 1; print "no gap: " n " lines in order" }\' /tmp/counter.txt && ppm ps',
      log,
    );
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
