/**
 * ThreadGroup on the host, with real multi-threaded processes: every
 * thread stops, nothing runs while frozen, the process runs on after a
 * resume, a process that keeps starting threads is frozen whole, and kill
 * collects every thread.
 */
import { join } from "node:path";
import { listThreads, ThreadGroup } from "../../core/ptrace/group.ts";
import { runOk } from "../../core/host/run.ts";
import { buildProgram } from "../support/programs.ts";
import { assert, assertEquals } from "../support/assert.ts";

const OUT = join(Deno.env.get("TMPDIR") ?? "/tmp", "ppm-unit-programs");

function threadState(pid: number, tid: number): string {
  const stat = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/stat`);
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
}

async function waitUntil(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts `argv` with stdout to a file; resolves once `ready` was printed. */
async function start(argv: string[], out: string): Promise<Deno.ChildProcess> {
  const child = new Deno.Command("sh", {
    args: ["-c", 'exec "$@" > "$0"', out, ...argv],
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  await waitUntil(`${argv[0]} to start`, () => {
    try {
      return Deno.readTextFileSync(out).includes("ready ");
    } catch {
      return false;
    }
  });
  return child;
}

function end(child: Deno.ChildProcess): void {
  try {
    child.kill("SIGKILL");
  } catch { /* ended */ }
}

Deno.test({
  name: "ThreadGroup: every thread of a 5-thread process stops, nothing runs, then all run on",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const bin = await buildProgram("threads", OUT);
    const out = await Deno.makeTempFile({ prefix: "ppm-threads-" });
    const child = await start([bin, "400", "4"], out);
    try {
      await waitUntil("two ticks", () => Deno.readTextFileSync(out).includes("tick 1 "));
      const g = ThreadGroup.freeze(child.pid);
      let frozenAt = "";
      try {
        assertEquals(g.size, 5);
        assertEquals(g.all.map((t) => t.pid).sort((a, b) => a - b), listThreads(child.pid));
        for (const t of g.all) assertEquals(threadState(child.pid, t.pid), "t", `thread ${t.pid}`);
        frozenAt = Deno.readTextFileSync(out);
        await new Promise((r) => setTimeout(r, 400));
        assertEquals(Deno.readTextFileSync(out), frozenAt, "a tick was printed while frozen");
      } finally {
        g.resume();
      }
      const ticks = (s: string) => s.split("\n").filter((l) => l.startsWith("tick ")).length;
      await waitUntil(
        "ticks after the resume",
        () => ticks(Deno.readTextFileSync(out)) >= ticks(frozenAt) + 2,
      );
      for (const tid of listThreads(child.pid)) {
        assert(threadState(child.pid, tid) !== "t", `thread ${tid} is still stopped`);
      }
    } finally {
      end(child);
      await child.status;
      await Deno.remove(out).catch(() => {});
    }
  },
});

const SPAWNER = `
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static void *next(void *arg) {
  pthread_t t;
  (void)arg;
  usleep(200);
  if (pthread_create(&t, NULL, next, NULL) == 0) pthread_detach(t);
  return NULL;
}
int main(void) {
  pthread_t t;
  for (int i = 0; i < 6; i++)
    if (pthread_create(&t, NULL, next, NULL) == 0) pthread_detach(t);
  printf("ready %d\\n", getpid());
  fflush(stdout);
  for (;;) pause();
}
`;

Deno.test({
  name:
    "ThreadGroup: a process whose threads keep starting threads is frozen whole; kill collects all",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "ppm-spawner-" });
    const child = await (async () => {
      await Deno.writeTextFile(join(dir, "spawner.c"), SPAWNER);
      await runOk(
        "gcc",
        ["-O2", "-pthread", "-o", join(dir, "spawner"), join(dir, "spawner.c")],
        "spawner",
      );
      return await start([join(dir, "spawner")], join(dir, "out"));
    })();
    try {
      for (let round = 0; round < 5; round++) {
        const g = ThreadGroup.freeze(child.pid);
        try {
          const tids = listThreads(child.pid);
          // By TID: after a wrap of the PID space the leader's may be the highest.
          const frozen = g.all.map((t) => t.pid).sort((a, b) => a - b);
          assertEquals(frozen, tids, "a thread was left running");
          for (const tid of tids) assertEquals(threadState(child.pid, tid), "t");
        } finally {
          g.resume();
        }
      }
      const g = ThreadGroup.freeze(child.pid);
      g.kill();
      await waitUntil("the process to be gone", () => listThreads(child.pid).length === 0);
    } finally {
      end(child);
      await child.status.catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
