/**
 * What a ppm that died mid-migration leaves behind, and the next agent's
 * clean-up: journal entries (hostile ones included), frozen connections and
 * drops undone unless the move was committing, restore plans of dead ppm
 * processes removed and those of living ones kept.
 */
import { parseEntry, recover, type RecoverOps } from "../../core/freeze/journal.ts";
import { startTicks } from "../../core/host/proc_stat.ts";
import { sweepWorkDirs } from "../../core/restore/restore.ts";
import { assert, assertEquals } from "../support/assert.ts";

/** A PID that no process has. */
const DEAD = 4_000_000;

function fakeOps(alivePpm: Set<number>) {
  const calls = { unrepair: [] as string[], removeDrop: [] as number[] };
  const ops: RecoverOps = {
    unrepair: (pid, fd) => {
      calls.unrepair.push(`${pid}:${fd}`);
      return true;
    },
    removeDrop: (id) => {
      calls.removeDrop.push(id);
      return true;
    },
    alive: (by) => alivePpm.has(by),
  };
  return { ops, calls };
}

Deno.test("journal: hostile entries are refused", () => {
  const good = {
    pid: 5,
    startTicks: "12",
    repaired: [3],
    dropIds: [1],
    by: 9,
    phase: "frozen",
  };
  assert(parseEntry(JSON.stringify(good)));
  for (
    const bad of [
      "",
      "null",
      "[]",
      "{",
      JSON.stringify({ ...good, pid: -1 }),
      JSON.stringify({ ...good, pid: 1.5 }),
      JSON.stringify({ ...good, startTicks: "1; rm -rf /" }),
      JSON.stringify({ ...good, repaired: [-1] }),
      JSON.stringify({ ...good, repaired: "3" }),
      JSON.stringify({ ...good, dropIds: new Array(70000).fill(1) }),
      JSON.stringify({ ...good, phase: "done" }),
      JSON.stringify({ ...good, by: "x" }),
    ]
  ) {
    assertEquals(parseEntry(bad), undefined, bad.slice(0, 80));
  }
});

Deno.test("journal: a dead ppm's freeze is undone; a committing one stays in doubt; a live ppm's is left", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const me = startTicks(Deno.pid);
    const write = (name: string, v: unknown) =>
      Deno.writeTextFileSync(`${dir}/${name}.json`, JSON.stringify(v));
    // A process that still runs (this one), frozen by a ppm that died.
    write("1", {
      pid: Deno.pid,
      startTicks: me,
      repaired: [7, 8],
      dropIds: [11, 12],
      by: DEAD,
      phase: "frozen",
    });
    // A process that is gone (another start time): only its drops go.
    write("2", {
      pid: Deno.pid,
      startTicks: "1",
      repaired: [9],
      dropIds: [13],
      by: DEAD,
      phase: "frozen",
    });
    // Committing when its ppm died: left alone, in doubt.
    write("3", {
      pid: Deno.pid,
      startTicks: me,
      repaired: [5],
      dropIds: [14],
      by: DEAD,
      phase: "committing",
    });
    // The ppm that froze it still runs: not touched, entry kept.
    write("4", {
      pid: Deno.pid,
      startTicks: me,
      repaired: [6],
      dropIds: [15],
      by: 77,
      phase: "frozen",
    });
    // Garbage: removed.
    Deno.writeTextFileSync(`${dir}/5.json`, "{not json");
    const { ops, calls } = fakeOps(new Set([77]));
    const got = recover(dir, ops).sort((a, b) => a.unrepaired - b.unrepaired);
    assertEquals(calls.removeDrop.sort(), [11, 12, 13]);
    assertEquals(calls.unrepair, [`${Deno.pid}:7`, `${Deno.pid}:8`]);
    assertEquals(got.filter((r) => r.inDoubt).length, 1);
    assertEquals(got.find((r) => r.unrepaired === 2)?.drops, 2);
    const left = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    // The one in doubt stays recorded until its process is gone.
    assertEquals(left, ["3.json", "4.json"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restore plans: a dead ppm's are removed, a living one's kept", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const dead = `${dir}/ppm-restore-${DEAD}-5-abc`;
    const reused = `${dir}/ppm-restore-${Deno.pid}-1-abc`; // this PID, another start time: ours anyway
    const live = `${dir}/ppm-restore-1-${startTicks(1)}-abc`;
    const other = `${dir}/not-ppm-${DEAD}`;
    for (const d of [dead, reused, live, other]) Deno.mkdirSync(d);
    Deno.writeTextFileSync(`${dead}/plan`, "x");
    const removed = sweepWorkDirs([dir]);
    assertEquals(removed, [dead]);
    for (const d of [reused, live, other]) Deno.statSync(d);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
