/**
 * The arguments of `deno task bench`. Pure.
 *
 * @module
 */
import { MAX_ROUNDS } from "./measure.ts";
import { ROUNDS, WORKLOADS } from "./workloads.ts";

/** Parsed arguments. */
export interface BenchArgs {
  /** One workload, two rounds (what CI runs). */
  quick: boolean;
  /** Print the results as JSON on stdout instead of the markdown report. */
  json: boolean;
  /** Where the results go. */
  out: string;
  /** Rounds per workload and tool. */
  rounds: number;
  /** Print the usage and stop. */
  help: boolean;
  /** Only these workloads (a partial run), in the order of WORKLOADS; empty: all. */
  workloads: string[];
}

/** The usage text. */
export const USAGE = `usage: deno task bench [--quick] [--json] [--rounds N] [--out DIR]
                        [--workloads ID,ID...]

Boots a two-node virtual cluster (kernel 6.1, QEMU; three nodes when mpi-64,
an MPI job, is measured), measures ppm against CRIU and against the raw link,
interleaved round by round, and writes
DIR/<time>.{json,md,svg} (default DIR: bench/results; a full run also
rewrites DIR/latest.md). Needs root. See docs/bench.md.

  --quick      one workload (1 MiB), ${ROUNDS.quick} rounds: checks the benchmark works
  --json       print the results as JSON (default: the markdown report)
  --rounds N   rounds per workload and tool (default ${ROUNDS.full}, quick ${ROUNDS.quick})
  --out DIR    where the results go
  --workloads ID,ID...
               only these workloads (${WORKLOADS.map((w) => w.id).join(", ")}):
               a partial run, files named <time>-partial.*, latest.md left alone`;

/** Parses argv; throws with what is wrong and the usage. */
export function parseArgs(argv: readonly string[], defaultOut: string): BenchArgs {
  const a: BenchArgs = {
    quick: false,
    json: false,
    out: defaultOut,
    rounds: 0,
    help: false,
    workloads: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${x} needs a value\n\n${USAGE}`);
      return v;
    };
    if (x === "--quick") a.quick = true;
    else if (x === "--json") a.json = true;
    else if (x === "--help" || x === "-h") a.help = true;
    else if (x === "--out") a.out = value();
    else if (x === "--workloads") {
      const ids = value().split(",").filter((id) => id !== "");
      const unknown = ids.filter((id) => !WORKLOADS.some((w) => w.id === id));
      if (!ids.length || unknown.length) {
        throw new Error(
          `--workloads takes ids from ${WORKLOADS.map((w) => w.id).join(", ")}; ` +
            `got ${JSON.stringify(unknown.length ? unknown.join(",") : "")}\n\n${USAGE}`,
        );
      }
      a.workloads = ids;
    } else if (x === "--rounds") {
      const v = value();
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n >= MAX_ROUNDS) {
        throw new Error(`--rounds must be an integer from 1 to ${MAX_ROUNDS - 1}, got ${v}`);
      }
      a.rounds = n;
    } else throw new Error(`unknown argument ${JSON.stringify(x)}\n\n${USAGE}`);
  }
  if (a.quick && a.workloads.length) {
    throw new Error(`--quick and --workloads do not go together\n\n${USAGE}`);
  }
  if (!a.rounds) a.rounds = a.quick ? ROUNDS.quick : ROUNDS.full;
  return a;
}
