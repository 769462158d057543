/**
 * The vessel: the restore stub started ahead, while a migrating process
 * still runs at its source (stub/vessel.h). It holds the process's PID and
 * reserves the address space around its own few mappings; the pre-copy
 * rounds' pages are written into it where they belong (the page stream's
 * receiver, process_vm_writev), so at the freeze the restore keeps those
 * mappings with their pages (PPM_VMA_KEEP) instead of copying the whole
 * memory from a plan while the process waits.
 *
 * Once the image is here, the vessel is given the stub's spec and goes on
 * as a launched stub does (restore.ts `into`); until then, ending it is
 * this module's business, and it ends by itself when this process dies
 * (end of file on its stdin).
 *
 * @module
 */
import { join } from "node:path";
import { kill, waitpid, WNOHANG } from "../../ffi/libc.ts";
import { EXIT, PpmError } from "../errors.ts";
import { processEnded } from "../host/proc_stat.ts";
import { stubError, type StubFiles } from "./launch.ts";
import { ensureStub, STUB_EXIT } from "./stub.ts";

/** How long a vessel may take to reserve its rooms, and to take its spec, ms. */
export const VESSEL_READY_MS = 10_000;

/** User space ends at 2^47. */
const TASK_SIZE = 1n << 47n;

/**
 * The rooms of a vessel's report ("room START END" in hex, then "ready
 * PID"); undefined until its ready line. Anything out of shape throws.
 */
export function parseVesselReport(
  text: string,
  pid: number,
): [bigint, bigint][] | undefined {
  const rooms: [bigint, bigint][] = [];
  // Only whole lines: the vessel may be writing the next one.
  const lines = text.split("\n");
  lines.pop();
  for (const line of lines) {
    if (line === "") continue;
    const room = line.match(/^room ([0-9a-f]{1,16}) ([0-9a-f]{1,16})$/);
    if (room) {
      const a = BigInt(`0x${room[1]}`), b = BigInt(`0x${room[2]}`);
      if (a >= b || b > TASK_SIZE || a % 4096n || b % 4096n) {
        throw new Error(`the vessel reports a bad room: ${line}`);
      }
      rooms.push([a, b]);
    } else if (line === `ready ${pid}`) {
      return rooms;
    } else {
      throw new Error(`the vessel reports ${JSON.stringify(line.slice(0, 80))}`);
    }
  }
  return undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A restore stub started ahead with a migrating process's PID. */
export class Vessel {
  /** Its PID: the process's. */
  readonly pid: number;
  /** The address ranges it reserved, where pages may be written, [start, end). */
  readonly rooms: [bigint, bigint][];
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #state: "waiting" | "taken" | "ended" = "waiting";

  private constructor(pid: number, rooms: [bigint, bigint][], stdin: WritableStreamDefaultWriter) {
    this.pid = pid;
    this.rooms = rooms;
    this.#stdin = stdin;
  }

  /**
   * Starts a vessel with PID `pid`, its report in the work directory
   * `dir`; returns once it reserved its rooms.
   *
   * @throws PpmError when the PID is taken or not permitted, or the vessel
   *   failed or took too long (it is ended then)
   */
  static async launch(pid: number, dir: string, readyMs = VESSEL_READY_MS): Promise<Vessel> {
    const out = join(dir, "vessel");
    const launcher = new Deno.Command(await ensureStub(), {
      args: ["--vessel", String(pid), out],
      env: { GLIBC_TUNABLES: "glibc.pthread.rseq=0" },
      clearEnv: true,
      stdin: "piped",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    const stdin = launcher.stdin.getWriter();
    const st = await launcher.status;
    if (st.code !== STUB_EXIT.OK) {
      await stdin.close().catch(() => {});
      throw new PpmError(
        "cannot start the restore ahead",
        st.code === STUB_EXIT.PID_TAKEN
          ? `PID ${pid} is taken here`
          : `the vessel's launcher failed (exit ${st.code})`,
        "",
        st.code === STUB_EXIT.PID_TAKEN ? EXIT.BUSY : EXIT.FAILURE,
      );
    }
    const vessel = new Vessel(pid, [], stdin);
    const deadline = Date.now() + readyMs;
    try {
      for (;;) {
        const text = await Deno.readTextFile(out).catch(() => "");
        const rooms = parseVesselReport(text, pid);
        if (rooms) return new Vessel(pid, rooms, stdin);
        if (processEnded(pid)) throw new Error("it ended");
        if (Date.now() > deadline) throw new Error(`not ready within ${readyMs / 1000} s`);
        await sleep(10);
      }
    } catch (e) {
      await vessel.end();
      throw e instanceof PpmError
        ? e
        : new PpmError("cannot start the restore ahead", `the vessel: ${(e as Error).message}`, "");
    }
  }

  /** Whether `pages` pages at `start` lie in one of its rooms. */
  holds(start: bigint, pages: number): boolean {
    const end = start + BigInt(pages) * 4096n;
    return this.rooms.some(([a, b]) => start >= a && end <= b);
  }

  /**
   * Gives it the stub's spec (`stub`, written by launch.ts prepareStub): it
   * goes on as a launched stub's child does; resolves once it wrote its PID
   * (the caller attaches to it then). From here on it is the restore's.
   *
   * @throws PpmError when it ended or took too long (it is ended then)
   */
  async become(stub: StubFiles, readyMs = VESSEL_READY_MS): Promise<void> {
    if (this.#state !== "waiting") throw new Error("the vessel was taken or ended already");
    this.#state = "taken";
    const deadline = Date.now() + readyMs;
    try {
      await this.#stdin.write(new TextEncoder().encode(`${stub.spec}\n`));
      await this.#stdin.close().catch(() => {});
      for (;;) {
        const got = await Deno.readTextFile(stub.pidOut).then((s) => s.trim(), () => "");
        if (got === String(this.pid)) return;
        if (processEnded(this.pid)) throw new Error(await stubError(stub));
        if (Date.now() > deadline) throw new Error(`not ready within ${readyMs / 1000} s`);
        await sleep(10);
      }
    } catch (e) {
      this.#state = "waiting";
      await this.end();
      throw new PpmError("cannot restore", `the vessel: ${(e as Error).message}`, "");
    }
  }

  /** Ends it and collects its exit, unless the restore took it. */
  async end(): Promise<void> {
    if (this.#state !== "waiting") return;
    this.#state = "ended";
    this.#stdin.close().catch(() => {});
    try {
      kill(this.pid, 9);
    } catch { /* gone */ }
    // SIGKILL is not blocked: its exit comes at once (bounded: 2 s).
    for (let i = 0; i < 200; i++) {
      try {
        const [got] = waitpid(this.pid, WNOHANG);
        if (got === this.pid) return;
      } catch {
        return; // not ours to collect, or collected
      }
      await sleep(10);
    }
  }
}
