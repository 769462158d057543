/**
 * A host process to inject system calls into, as a restore does at its
 * end: `fd_kinds ITERATIONS target` (or another program's target mode)
 * stops itself (SIGSTOP); it is seized,
 * given an injector (calls run from its vDSO's `syscall` instruction,
 * scratch memory below its stack pointer), and let go with its registers as
 * they were; once continued it reports what it finds at fd_kinds's numbers.
 *
 * @module
 */
import { parseMaps } from "../../core/dump/proc.ts";
import { findSyscallInsn, type Injector, injector } from "../../core/ptrace/inject.ts";
import { getReg, Tracee } from "../../core/ptrace/tracee.ts";
import {
  buildFdKinds,
  procState,
  PROGRAMS_OUT,
  type Running,
  startProgram,
  waitUntil,
} from "./fd_kinds.ts";
import { buildProgram } from "./programs.ts";

/** A stopped fd_kinds target, seized. */
export interface Target {
  /** The program. */
  run: Running;
  /** Its tracee. */
  t: Tracee;
  /** System calls in it. */
  inj: Injector;
  /**
   * Lets it go (registers as they were), delivers `signals`, continues it;
   * resolves with its output once it reported, or ended.
   */
  report(signals?: Deno.Signal[]): Promise<string>;
}

/** Whether process `pid` has ended (a zombie or gone). */
function ended(pid: number): boolean {
  try {
    return procState(pid) === "Z";
  } catch {
    return true;
  }
}

/** A program to start as a target (default: fd_kinds). */
export interface TargetProgram {
  /** Its name in tests/programs/. */
  name: string;
  /** Its arguments (a `target` mode that stops itself). */
  args: string[];
  /** What it prints once it has run to its end after being continued. */
  done: string;
}

const FD_KINDS: TargetProgram = { name: "fd_kinds", args: ["1", "target"], done: "done\n" };

/** Starts `program` (fd_kinds by default) as a target and seizes it once it stopped itself. */
export async function startTarget(program: TargetProgram = FD_KINDS): Promise<Target> {
  const bin = program === FD_KINDS
    ? await buildFdKinds()
    : await buildProgram(program.name, PROGRAMS_OUT);
  const run = await startProgram(bin, program.args);
  try {
    await waitUntil("the target to stop itself", () => procState(run.pid) === "T");
    const t = Tracee.freeze(run.pid, { sysgood: true });
    const regs = t.getRegs();
    const maps = parseMaps(Deno.readTextFileSync(`/proc/${run.pid}/maps`));
    const vdso = maps.find((m) => m.name === "[vdso]")!;
    const at = await findSyscallInsn(run.pid, vdso.start, vdso.end);
    const inj = injector(t, at, regs, getReg(regs, "rsp"), maps);
    return {
      run,
      t,
      inj,
      report: async (signals = []) => {
        t.setRegs(regs);
        t.resume();
        for (const s of signals) Deno.kill(run.pid, s);
        Deno.kill(run.pid, "SIGCONT");
        await waitUntil(
          "the target's report",
          () => run.out().includes(program.done) || ended(run.pid),
          60_000,
        );
        return run.out();
      },
    };
  } catch (e) {
    run.end();
    throw e;
  }
}
