/**
 * Checks that a run produced well-formed results: the JSON file against
 * its schema, the chart as well-formed SVG with its three series, the
 * markdown report with its sections. It says nothing about speed: CI's
 * quick run uses it so that the benchmark cannot rot. Pure.
 *
 * @module
 */
import { SERIES_NAMES } from "./chart.ts";
import { MPI_SECTION } from "./report.ts";
import { criuCannotReasons, isMpi } from "./summary.ts";
import { type BenchResults, SCHEMA, SCHEMAS, TOOLS } from "./types.ts";

/** Options of {@link validateResults}. */
export interface ValidateOptions {
  /**
   * Also require that every workload has a ppm and a CRIU migration in a
   * common round (an MPI workload: a ppm migration, and a CRIU one or a note
   * that CRIU cannot), and that the link was measured (what a usable run has).
   */
  complete?: boolean;
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const finite = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
const nonNeg = (v: unknown): v is number => finite(v) && v >= 0;

function checkEnvironment(e: unknown, problems: string[]): void {
  if (!isObj(e)) {
    problems.push("environment: missing");
    return;
  }
  const need: [string, string[]][] = [
    ["machine", ["cpuModel", "kernel"]],
    ["guest", ["kernel", "qemu", "accel"]],
    ["ppm", ["version", "commit"]],
    ["criu", ["version"]],
  ];
  for (const [k, fields] of need) {
    const o = e[k];
    if (!isObj(o)) {
      problems.push(`environment.${k}: missing`);
      continue;
    }
    for (const f of fields) {
      if (typeof o[f] !== "string" || (o[f] as string).trim() === "") {
        problems.push(`environment.${k}.${f}: not a non-empty string`);
      }
    }
  }
  if (isObj(e.machine) && !(finite(e.machine.cores) && e.machine.cores >= 1)) {
    problems.push("environment.machine.cores: not a positive number");
  }
}

/**
 * Problems of a parsed results file (empty when it is well-formed), each
 * naming the field and what is wrong with it.
 */
export function validateResults(data: unknown, opts: ValidateOptions = {}): string[] {
  const p: string[] = [];
  if (!isObj(data)) return ["the results are not a JSON object"];
  if (!SCHEMAS.includes(data.schema as string)) {
    p.push(`schema: ${JSON.stringify(data.schema)}, expected ${SCHEMA}`);
  }
  if (!["full", "quick", "partial"].includes(data.mode as string)) {
    p.push("mode: not full, quick or partial");
  }
  for (const k of ["startedAt", "finishedAt"]) {
    if (typeof data[k] !== "string" || Number.isNaN(Date.parse(data[k] as string))) {
      p.push(`${k}: not an ISO time`);
    }
  }
  if (!(finite(data.rounds) && data.rounds >= 1)) p.push("rounds: not a positive number");
  checkEnvironment(data.environment, p);
  const ids = new Set<string>();
  const mpi = new Set<string>();
  if (!Array.isArray(data.workloads) || data.workloads.length === 0) {
    p.push("workloads: none");
  } else {
    data.workloads.forEach((w, i) => {
      if (!isObj(w) || typeof w.id !== "string" || !nonNeg(w.mib) || !nonNeg(w.connections)) {
        p.push(`workloads[${i}]: needs id, mib and connections`);
      } else {
        ids.add(w.id);
        // Optional: files written before threads were recorded lack it (one thread).
        if (
          w.threads !== undefined &&
          !(Number.isInteger(w.threads) && (w.threads as number) >= 1)
        ) p.push(`workloads[${i}].threads: not a positive integer`);
        if (w.ranks !== undefined) {
          if (!(Number.isInteger(w.ranks) && (w.ranks as number) >= 2)) {
            p.push(`workloads[${i}].ranks: not an integer ≥ 2`);
          } else mpi.add(w.id);
        }
      }
    });
  }
  if (!Array.isArray(data.samples)) p.push("samples: not a list");
  else {
    data.samples.forEach((s, i) => {
      const at = `samples[${i}]`;
      if (!isObj(s)) return p.push(`${at}: not an object`);
      if (s.kind !== "migrate" && s.kind !== "local") p.push(`${at}.kind: ${s.kind}`);
      if (typeof s.workload !== "string" || !ids.has(s.workload)) {
        p.push(`${at}.workload: ${JSON.stringify(s.workload)} is not a listed workload`);
      }
      if (!(TOOLS as readonly unknown[]).includes(s.tool)) p.push(`${at}.tool: ${s.tool}`);
      if (!(Number.isInteger(s.round) && (s.round as number) >= 0)) {
        p.push(`${at}.round: not an index`);
      }
      if (!(finite(s.freezeMs) && s.freezeMs > 0)) p.push(`${at}.freezeMs: not a positive time`);
      for (const k of ["bytes", "writtenBytes", "transferMs", "stallMs", "totalMs"]) {
        if (s[k] !== undefined && !nonNeg(s[k])) p.push(`${at}.${k}: not a number ≥ 0`);
      }
      checkJob(s, at, mpi, p);
      if (s.phasesMs !== undefined) {
        if (!isObj(s.phasesMs)) p.push(`${at}.phasesMs: not an object`);
        else {
          for (const [k, v] of Object.entries(s.phasesMs)) {
            if (!nonNeg(v)) p.push(`${at}.phasesMs.${k}: not a number ≥ 0`);
          }
        }
      }
    });
  }
  if (!Array.isArray(data.link)) p.push("link: not a list");
  else {
    data.link.forEach((l, i) => {
      if (!isObj(l) || !(finite(l.bytes) && l.bytes > 0) || !(finite(l.ms) && l.ms > 0)) {
        p.push(`link[${i}]: needs bytes > 0 and ms > 0`);
      }
    });
  }
  if (!Array.isArray(data.failures)) p.push("failures: not a list");
  else {
    data.failures.forEach((f, i) => {
      if (!isObj(f) || typeof f.error !== "string" || f.error.trim() === "") {
        p.push(`failures[${i}]: has no error text`);
      }
    });
  }
  if (!Array.isArray(data.notes) || data.notes.some((n) => typeof n !== "string")) {
    p.push("notes: not a list of strings");
  }
  if (opts.complete && p.length === 0) {
    const r = data as unknown as BenchResults;
    for (const w of r.workloads) {
      const rounds = (tool: string) =>
        new Set(
          r.samples.filter((s) => s.kind === "migrate" && s.workload === w.id && s.tool === tool)
            .map((s) => s.round),
        );
      const ppm = rounds("ppm"), criu = rounds("criu");
      if (isMpi(w) && !ppm.size) p.push(`${w.id}: no ppm migration of a rank`);
      else if (isMpi(w) && !criu.size && !criuCannotReasons(r.notes, w.id).length) {
        p.push(`${w.id}: neither a CRIU migration of a rank nor a note why CRIU cannot`);
      } else if (!isMpi(w) && ![...ppm].some((x) => criu.has(x))) {
        p.push(`${w.id}: no round has both a ppm and a CRIU migration`);
      }
    }
    if (r.link.length === 0) p.push("link: the raw TCP throughput was not measured");
  }
  return p;
}

/**
 * A sample's `job` (an MPI job's wall times): both times positive when it has one; a ppm
 * migration of an MPI workload must have one.
 */
function checkJob(s: Obj, at: string, mpi: ReadonlySet<unknown>, p: string[]): void {
  if (s.job === undefined) {
    if (mpi.has(s.workload) && s.tool === "ppm" && s.kind === "migrate") {
      p.push(`${at}.job: missing (an MPI job's wall times)`);
    }
    return;
  }
  if (!isObj(s.job)) return void p.push(`${at}.job: not an object`);
  for (const k of ["unmovedMs", "movedMs"]) {
    if (!(finite(s.job[k]) && (s.job[k] as number) > 0)) {
      p.push(`${at}.job.${k}: not a positive time`);
    }
  }
}

const VOID_OK = /\/\s*$/;

/**
 * Problems of an SVG document (empty when it is well-formed XML whose root
 * is `<svg>` and which names every series in `series`): tags balanced and
 * properly nested, attributes quoted, no stray `<`.
 */
export function validateSvg(
  svg: string,
  series: readonly string[] = Object.values(SERIES_NAMES),
): string[] {
  const p: string[] = [];
  const body = svg.replace(/^\s*<\?xml[^?]*\?>\s*/, "");
  if (!/^<svg[\s>]/.test(body)) p.push("does not start with <svg");
  if (!/<\/svg>\s*$/.test(body)) p.push("does not end with </svg>");
  const stack: string[] = [];
  const tag = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>/g;
  let last = 0;
  let roots = 0;
  for (let m = tag.exec(body), guard = 0; m && guard < 1_000_000; m = tag.exec(body), guard++) {
    const between = body.slice(last, m.index);
    if (between.includes("<")) {
      p.push(`malformed markup near offset ${last + between.indexOf("<")}`);
      break;
    }
    last = tag.lastIndex;
    const [, close, name, , selfClose] = m;
    if (close) {
      const open = stack.pop();
      if (open !== name) {
        p.push(`</${name}> closes <${open ?? "nothing"}>`);
        break;
      }
    } else if (!selfClose && !VOID_OK.test(m[0].slice(0, -1))) {
      if (stack.length === 0) roots++;
      stack.push(name);
    } else if (stack.length === 0) roots++;
  }
  if (body.slice(last).includes("<")) p.push("malformed markup after the last tag");
  if (stack.length) p.push(`unclosed <${stack.at(-1)}>`);
  if (roots !== 1) p.push(`${roots} root elements`);
  const text = svg.replace(/&gt;/g, ">").replace(/&lt;/g, "<").replace(/&amp;/g, "&");
  for (const s of series) {
    if (!text.includes(`>${s}<`)) p.push(`series ${JSON.stringify(s)} is not in the chart`);
  }
  return p;
}

/** Sections every report has. */
export const REPORT_SECTIONS = [
  "## Environment",
  "## 1. Migration freeze time",
  "## 2. Local checkpoint + restore",
  "## 3. Bytes on the wire",
  "## 4. The link",
  "## 5. Where the freeze goes",
  "## 6. The stall a TCP peer sees",
  "## Where ppm loses",
];

/**
 * Problems of a markdown report (empty when every section is there; with `mpi`, the run had an
 * MPI workload, and its section too).
 */
export function validateReport(md: string, opts: { mpi?: boolean } = {}): string[] {
  const sections = opts.mpi ? [...REPORT_SECTIONS, MPI_SECTION] : REPORT_SECTIONS;
  return sections.filter((s) => !md.includes(s)).map((s) => `report lacks "${s}"`);
}
