/**
 * Text forms of the balancing records for `ppm ps` and `ppm balance --once`
 * (their --json forms are the records themselves).
 *
 * @module
 */
import type { BalanceReport } from "../core/agent/balancer.ts";
import type { MoveReason, ProcessEntry } from "../core/agent/processes.ts";
import type { Decision, DecisionRecord, ProcessView } from "../core/balance/types.ts";

const f2 = (n: number) => Number.isFinite(n) ? n.toFixed(2) : String(n);
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

/** One decision record in a few lines: why, the loads, the margin rule, cost and benefit. */
export function decisionLines(r: DecisionRecord, indent = "  "): string[] {
  const lines = [
    `${indent}why: ${r.why}`,
    `${indent}loads: here ${f2(r.local.load)} -> ${
      f2(r.local.loadAfter)
    }; ${r.target.id} announced ${f2(r.target.announcedLoad)} (${
      f2(r.target.announcementAge)
    } s old), expected ${f2(r.target.expectedLoad)} -> ${f2(r.target.loadAfter)}`,
  ];
  if (r.mode === "load") lines.push(`${indent}margin: ${r.margin.text}`);
  lines.push(
    `${indent}cost: ${f2(r.cost.cpuSeconds)} CPU-s (${f2(r.cost.transferSeconds)} s to send ${
      mib(r.process.memory)
    })`,
    `${indent}benefit: ${f2(r.benefit.cpuSeconds)} CPU-s (rate ${f2(r.benefit.rateHere)} -> ${
      f2(r.benefit.rateThere)
    } over ${f2(r.benefit.horizonSeconds)} s); ratio ${f2(r.ratio)}`,
  );
  if (r.damping) {
    lines.push(
      `${indent}damping: ${r.damping.senders} senders share room ${f2(r.damping.room)} -> p ${
        f2(r.damping.probability)
      }, draw ${f2(r.damping.draw)}`,
    );
  }
  return lines;
}

/** Why a process moved, in one line and the record's lines. */
export function whyLines(why: MoveReason | undefined, indent = "  "): string[] {
  if (!why) return [];
  if (why.kind === "manual") return [`${indent}moved by hand (${why.by})`];
  return [
    `${indent}moved by the balancer (${why.mode}) at ${iso(why.record.at)}:`,
    ...decisionLines(why.record, indent + "  "),
  ];
}

function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}

function exitText(e: ProcessEntry): string {
  if (!e.exit) return "";
  const how = e.exit.code !== undefined
    ? `exit ${e.exit.code}`
    : e.exit.signal !== undefined
    ? `signal ${e.exit.signal}`
    : "status unknown";
  return `  ended on ${e.exit.node}: ${how}`;
}

/** `ppm ps`: one line per process, then why it last moved (or, for a deputy, what it is). */
export function renderPs(list: ProcessEntry[]): string {
  if (list.length === 0) return "no managed or migrated processes";
  return list.map((e) => {
    const head = `${e.origin.node}:${e.origin.pid} -> ${e.current.node}:${e.current.pid}  ${
      e.direction.padEnd(7)
    } ${e.managed ? "managed" : "unmanaged"}  ${e.name}  moves ${e.moves}${
      e.movedAt ? `  ${e.movedAt}` : ""
    }${exitText(e)}`;
    return [head, ...deputyLines(e), ...whyLines(e.why)].join("\n");
  }).join("\n");
}

function deputyLines(e: ProcessEntry): string[] {
  if (!e.deputy) return [];
  return [
    `  its deputy stands in here as PID ${e.deputy.pid} since ${e.deputy.since}${
      e.deputy.connected ? "" : " (not connected to the agent)"
    }; the process runs on ${e.current.node}`,
  ];
}

function candidateLines(d: Decision): string[] {
  return d.record.processes.map((p) =>
    `      ${String(p.pid).padStart(7)} ${mib(p.memory).padStart(9)} net ${
      f2(p.net ?? NaN).padStart(7)
    } CPU-s  ${p.verdict}`
  );
}

function viewLine(p: ProcessView, now: number): string {
  return `  ${String(p.pid).padStart(7)} ${p.managed ? "managed  " : "unmanaged"} demand ${
    f2(p.demand)
  }  ${mib(p.memory)}  age ${f2(now - p.startedAt)} s  here ${
    f2(now - p.arrivedAt)
  } s  moves ${p.moves}${p.busy ? "  (migrating)" : ""}`;
}

/** `ppm balance --once`: the round, the peers, each decision with its candidates, the outcomes. */
export function renderReport(r: BalanceReport): string {
  const rd = r.round;
  const out = [
    `${r.node}${r.dryRun ? " (dry run)" : ""}: ${rd.why}`,
    `  load ${f2(rd.load)} -> ${
      f2(rd.loadAfter)
    }; budget ${rd.budget}; decided ${rd.decided}; ${rd.stop}`,
    "peers:",
    ...(rd.peers.length
      ? rd.peers.map((p) =>
        `  ${p.id.padEnd(12)} load ${f2(p.load)} expected ${f2(p.expected)} (${
          f2(p.age)
        } s old): ${p.verdict}${p.received ? `; sent ${p.received}` : ""}`
      )
      : ["  none known"]),
    "processes:",
    ...(r.processes.length ? r.processes.map((p) => viewLine(p, rd.at)) : ["  none managed here"]),
  ];
  const skipped = Object.entries(rd.skipped).map(([k, n]) => `${n} ${k}`).join(", ");
  if (skipped) out.push(`  not candidates: ${skipped}`);
  r.decisions.forEach((d, i) => {
    const o = r.outcomes.find((x) => x.pid === d.pid && x.to === d.to);
    const result = r.dryRun
      ? "would move"
      : o?.ok
      ? `moved (PID ${o.newPid} there)`
      : `failed: ${o?.error ?? "not tried"}`;
    out.push(`decision ${i + 1}: process ${d.pid} -> ${d.to} (${d.mode}): ${result}`);
    out.push(...decisionLines(d.record, "    "));
    out.push("    candidates:", ...candidateLines(d));
    const rej = Object.entries(d.record.rejected).map(([k, n]) => `${n} ${k}`).join(", ");
    if (rej) out.push(`    rejected: ${rej}`);
  });
  return out.join("\n");
}
