/**
 * The agent's side of the deputies (deputy.c): one unix stream socket that
 * every deputy on this node connects to, in a directory any user may enter
 * (the deputies run with their processes' credentials), the socket itself
 * mode 0666. Who may talk on it is decided by the kernel's word, not the
 * peer's: a connection is kept only when SO_PEERCRED names a process the
 * agent expects a deputy in ({@link DeputyLink.expect}) and that process
 * has not ended (its pidfd, opened at `expect`, says whether it has: a
 * later process with the same PID is never taken for it).
 *
 * The protocol (lines of ASCII; deputy.c's header has it in full): the
 * deputy says `hello PID` first, then `signal N` for each signal it gets;
 * the agent tells it `exit CODE` or `killed SIG` once the process ended
 * where it runs now. Everything else is hostile input: a first line that
 * is not a hello closes the connection; a longer line than
 * {@link LINE_MAX}, one holding a NUL, an unknown one, a second hello or a
 * signal number out of 1..64 is ignored (and logged, the first few per
 * connection); past {@link MAX_BAD} of them the connection is closed.
 *
 * The deputies outlive the agent: when the link closes (an agent restart)
 * they connect again, every second, to the next link at the same path,
 * keeping the signals they get meanwhile. Each deputy is watched with a
 * pidfd: one that ends without being told is reported ({@link
 * DeputyEvents.onGone}: killed with SIGKILL, say), one that was told
 * resolves the promise of {@link DeputyLink.exit} or
 * {@link DeputyLink.killed}.
 *
 * One loop serves it all: a poll(2) on a worker thread over the listener,
 * the connections, the pidfds and a pipe that wakes it when something
 * changed; every wait in it is bounded.
 *
 * @module
 */
import { dirname } from "node:path";
import { E, ErrnoError, errnoName, O, pidfdOpen, POLL, pollMany } from "../../ffi/libc.ts";
import { closeFd, pipe2, readSome, writeSome } from "../../ffi/fds.ts";
import {
  acceptNow,
  AF,
  bindUnix,
  closeSocket,
  listenSocket,
  MSG,
  peerCred,
  readableNow,
  sendSome,
  sendWithFds,
  SOCK,
  socket,
} from "../../ffi/socket.ts";
import { EXIT, PpmError } from "../errors.ts";
import { deputySocketPath, ensureSharedDir } from "../paths.ts";

/** The longest line either way, its newline included (deputy.c's LINE_MAX_BYTES). */
export const LINE_MAX = 64;

/** Ignored lines after which a connection is closed. */
export const MAX_BAD = 100;

/** Ignored lines logged per connection. */
const LOGGED_BAD = 5;

/** The longest one poll waits before the loop looks at its state again. */
const POLL_MS = 1000;

/** What the link tells of its deputies. */
export interface DeputyEvents {
  /** Deputy `pid` got signal `sig` (1..64): to be sent on to the process where it runs now. */
  onSignal?(pid: number, sig: number): void;
  /** Deputy `pid` ended without being told to (SIGKILL, say). */
  onGone?(pid: number): void;
  /** Deputy `pid` connected and said hello (the first time, or again after a drop). */
  onConnect?(pid: number): void;
  /** What was refused or ignored, for the agent's log. */
  log?(msg: string): void;
}

/** One connection, from a process the link expects. */
interface Conn {
  fd: number;
  pid: number;
  hello: boolean;
  /** The line being read, and whether it is being skipped (too long, or a NUL in it). */
  line: Uint8Array<ArrayBuffer>;
  len: number;
  skip: boolean;
  /** Bytes to send. */
  out: Uint8Array;
  /** Lines ignored so far. */
  bad: number;
}

/** A waiter with its deadline. */
interface Waiter {
  resolve(): void;
  reject(e: unknown): void;
  timer: ReturnType<typeof setTimeout>;
}

/** A process the link expects a deputy in. */
interface Deputy {
  pid: number;
  pidfd: number;
  conn?: Conn;
  /** What it was told (`exit 7\n`), sent again on each connection until it ends. */
  told?: string;
  /** The descriptors it was told to close, told again on each connection (closing is idempotent). */
  closes: number[];
  /** Waiting for its end, after `told`. */
  ends: Waiter[];
  /** Waiting for its hello. */
  hellos: Waiter[];
  /** Waiting for it to run the restore stub (`home`). */
  homes: Waiter[];
}

/** What one slot of the poll stands for. */
type Slot =
  | { kind: "wake" | "listen"; fd: number }
  | { kind: "conn"; fd: number; c: Conn }
  | { kind: "pidfd"; fd: number; d: Deputy };

const latin1 = new TextDecoder("latin1");

/**
 * A deputy told to go home ended before its link heard it go (the restore
 * stub it ran ended at once, or it ended first): it is gone, and is not
 * reported as killed ({@link DeputyEvents.onGone}).
 */
export class HomeEnded extends PpmError {
  constructor(readonly pid: number) {
    super(
      `the deputy of process ${pid} ended as it went home`,
      "the restore stub it ran ended, or it ended before it could run it",
      "its parent saw it end; the process goes on where it runs",
    );
  }
}

/** The agent's listener for its deputies; see the module's text. */
export class DeputyLink {
  private readonly deputies = new Map<number, Deputy>();
  private closed = false;
  private readonly loop: Promise<void>;

  private constructor(
    /** The socket's path. */
    readonly path: string,
    private readonly fd: number,
    private readonly ino: number | null,
    private readonly wakeR: number,
    private readonly wakeW: number,
    private readonly events: DeputyEvents,
  ) {
    this.loop = this.run();
  }

  /**
   * Listens on `path` (by default `deputySocketPath()`, in a directory made
   * by `ensureSharedDir`): a socket a dead agent left there is replaced.
   *
   * @throws PpmError when the directory cannot be trusted, something else
   *   than a socket is at `path`, or the socket cannot be made
   */
  static listen(path: string = deputySocketPath(), events: DeputyEvents = {}): DeputyLink {
    ensureSharedDir(dirname(path));
    const cannot = `cannot listen for deputies on ${path}`;
    try {
      if (!Deno.lstatSync(path).isSocket) {
        throw new PpmError(cannot, "something else than a socket is there", `remove ${path}`);
      }
      Deno.removeSync(path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const fd = socket(AF.UNIX, SOCK.STREAM);
    let ino: number | null;
    try {
      bindUnix(fd, path);
      // Any user's deputy connects; SO_PEERCRED decides who is heard.
      Deno.chmodSync(path, 0o666);
      listenSocket(fd, 128);
      ino = Deno.lstatSync(path).ino;
    } catch (e) {
      closeSocket(fd);
      throw new PpmError(cannot, (e as Error).message, "", EXIT.FAILURE, { cause: e });
    }
    const [wakeR, wakeW] = pipe2(O.NONBLOCK);
    return new DeputyLink(path, fd, ino, wakeR, wakeW, events);
  }

  /**
   * Expects a deputy in process `pid` (call it before the process becomes
   * one): its connection will be taken, and its end watched from now on.
   *
   * @throws PpmError when there is no process `pid`, or the link is closed
   */
  expect(pid: number): void {
    this.open();
    if (this.deputies.has(pid)) return;
    let pidfd: number;
    try {
      pidfd = pidfdOpen(pid);
    } catch (e) {
      const gone = e instanceof ErrnoError && e.errno === E.ESRCH;
      throw new PpmError(
        `cannot watch a deputy in process ${pid}`,
        gone ? "there is no such process" : (e as Error).message,
        "",
        EXIT.FAILURE,
        { cause: e },
      );
    }
    this.deputies.set(pid, { pid, pidfd, ends: [], hellos: [], homes: [], closes: [] });
    this.wake();
  }

  /** Stops expecting a deputy in `pid`: its connection is closed, its waiters told. */
  forget(pid: number): void {
    const d = this.deputies.get(pid);
    if (!d) return;
    this.remove(
      d,
      false,
      new PpmError(`the deputy of process ${pid} is no longer watched`, "", ""),
    );
    this.wake();
  }

  /** Whether deputy `pid` is connected and said hello. */
  isConnected(pid: number): boolean {
    return this.deputies.get(pid)?.conn?.hello === true;
  }

  /**
   * Resolves once deputy `pid` is connected and said hello.
   *
   * @throws PpmError when it ends first, is forgotten, or `timeoutMs` passes
   */
  waitConnected(pid: number, timeoutMs = 10_000): Promise<void> {
    const d = this.known(pid);
    if (d.conn?.hello) return Promise.resolve();
    return this.wait(d.hellos, timeoutMs, () =>
      new PpmError(
        `the deputy of process ${pid} did not connect within ${timeoutMs / 1000} s`,
        `nothing said hello on ${this.path} from process ${pid}`,
        "see whether the process still runs (ps), and the agent's log",
        EXIT.TIMEOUT,
      ));
  }

  /**
   * Tells deputy `pid` to exit with `code` (0..255), now or when it next
   * connects; resolves once it ended.
   *
   * @throws PpmError when it has not ended within `timeoutMs`, or is forgotten
   */
  exit(pid: number, code: number, timeoutMs = 10_000): Promise<void> {
    if (!Number.isInteger(code) || code < 0 || code > 255) {
      throw new RangeError(`exit code ${code} is not in 0..255`);
    }
    return this.tell(pid, `exit ${code}\n`, timeoutMs);
  }

  /**
   * Tells deputy `pid` to end by signal `sig` (1..64), as the process did
   * where it ran; resolves once it ended.
   *
   * @throws PpmError when it has not ended within `timeoutMs`, or is forgotten
   */
  killed(pid: number, sig: number, timeoutMs = 10_000): Promise<void> {
    if (!Number.isInteger(sig) || sig < 1 || sig > 64) {
      throw new RangeError(`signal ${sig} is not in 1..64`);
    }
    return this.tell(pid, `killed ${sig}\n`, timeoutMs);
  }

  /**
   * Tells deputy `pid` to close its descriptor `fd` (3 and up; one it was
   * given: a relayed pipe or socket whose relay ended), now or when it next
   * connects; nothing waits for it. A deputy not expected is not told.
   */
  closeKept(pid: number, fd: number): void {
    if (!Number.isInteger(fd) || fd < 3 || fd > 99999) {
      throw new RangeError(`descriptor ${fd} is not in 3..99999`);
    }
    const d = this.deputies.get(pid);
    if (!d || this.closed || d.closes.includes(fd)) return;
    d.closes.push(fd);
    if (d.conn?.hello) this.send(d.conn, `close ${fd}\n`);
    this.wake();
  }

  /**
   * Tells deputy `pid` that its process comes home (deputy.c `home`): it
   * gets `fds` (the grant, the spec, the restore stub; copies: these stay
   * open here) and runs the stub in its own task. Resolves once it did:
   * its connection closed (execveat closes it) while it lives on. The
   * deputy is not watched any more then (its link is gone; the restore
   * drives the process).
   *
   * @throws PpmError when it is not connected now, said it could not run
   *   the stub (`home-failed`, it goes on as the deputy), ended, or did
   *   not go within `timeoutMs`
   */
  home(pid: number, fds: readonly [number, number, number], timeoutMs = 10_000): Promise<void> {
    let d: Deputy;
    try {
      d = this.known(pid);
      const c = d.conn;
      if (!c?.hello || c.out.length) {
        throw new PpmError(
          `the deputy of process ${pid} cannot be told to make way now`,
          c?.hello ? "a line to it is still being sent" : "it is not connected",
          "try again in a moment",
          EXIT.BUSY,
        );
      }
      if (
        sendWithFds(c.fd, new TextEncoder().encode("home\n"), fds, MSG.NOSIGNAL | MSG.DONTWAIT) !==
          5
      ) {
        throw new PpmError(
          `the deputy of process ${pid} cannot be told to make way now`,
          "its connection takes no more now",
          "try again in a moment",
          EXIT.BUSY,
        );
      }
    } catch (e) {
      return Promise.reject(e);
    }
    this.wake();
    return this.wait(d.homes, timeoutMs, () =>
      new PpmError(
        `the deputy of process ${pid} did not run the restore stub within ${timeoutMs / 1000} s`,
        "it was told to (home) and neither did it nor said why not",
        "see the agent's log; the process goes on where it runs",
        EXIT.TIMEOUT,
      )).then(() => {
        if (this.deputies.get(pid) === d) this.forget(pid);
      });
  }

  /**
   * Stops listening and closes every connection, without telling the
   * deputies anything: they connect again to the next link on this path.
   * Waiters are rejected. The socket file goes, unless another link has
   * taken its path since.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.wake();
    await this.loop;
    for (const d of [...this.deputies.values()]) {
      this.remove(d, false, new PpmError("the deputy link closed", "", ""));
    }
    closeSocket(this.fd);
    closeFd(this.wakeR);
    closeFd(this.wakeW);
    try {
      if (Deno.lstatSync(this.path).ino === this.ino) Deno.removeSync(this.path);
    } catch { /* gone already */ }
  }

  private open(): void {
    if (this.closed) throw new PpmError("the deputy link is closed", "", "");
  }

  private known(pid: number): Deputy {
    this.open();
    const d = this.deputies.get(pid);
    if (!d) {
      throw new PpmError(
        `no deputy is expected in process ${pid}`,
        "the link was not told to expect one, or it ended",
        "",
      );
    }
    return d;
  }

  private tell(pid: number, line: string, timeoutMs: number): Promise<void> {
    let d: Deputy;
    try {
      d = this.known(pid);
    } catch (e) {
      return Promise.reject(e);
    }
    d.told = line;
    if (d.conn?.hello) this.send(d.conn, line);
    this.wake();
    return this.wait(d.ends, timeoutMs, () =>
      new PpmError(
        `the deputy of process ${pid} did not end within ${timeoutMs / 1000} s`,
        d.conn?.hello
          ? `it was told "${line.trim()}"`
          : "it is not connected (it connects again every second)",
        `end it: kill -KILL ${pid} (its parent then sees it killed)`,
        EXIT.TIMEOUT,
      ));
  }

  private wait(list: Waiter[], timeoutMs: number, late: () => PpmError): Promise<void> {
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        resolve: () => {
          clearTimeout(w.timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(w.timer);
          reject(e);
        },
        timer: setTimeout(() => {
          const i = list.indexOf(w);
          if (i >= 0) list.splice(i, 1);
          reject(late());
        }, timeoutMs),
      };
      list.push(w);
    });
  }

  private wake(): void {
    try {
      writeSome(this.wakeW, new Uint8Array([1]));
    } catch { /* closed */ }
  }

  private log(msg: string): void {
    this.events.log?.(msg);
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      const slots: Slot[] = [{ kind: "wake", fd: this.wakeR }, { kind: "listen", fd: this.fd }];
      for (const d of this.deputies.values()) {
        if (d.conn) slots.push({ kind: "conn", fd: d.conn.fd, c: d.conn });
        slots.push({ kind: "pidfd", fd: d.pidfd, d });
      }
      const pfds = new Uint8Array(8 * slots.length);
      const v = new DataView(pfds.buffer);
      slots.forEach((s, i) => {
        v.setInt32(i * 8, s.fd, true);
        const out = s.kind === "conn" && s.c.out.length ? POLL.OUT : 0;
        v.setInt16(i * 8 + 4, POLL.IN | out, true);
      });
      const n = await pollMany(pfds, POLL_MS);
      if (this.closed) break;
      if (n <= 0) continue;
      // The connections before the pidfds: what a deputy said before it ended is heard first.
      for (const pass of [false, true]) {
        slots.forEach((s, i) => {
          const revents = v.getInt16(i * 8 + 6, true);
          if (!revents || (s.kind === "pidfd") !== pass) return;
          try {
            this.handle(s, revents);
          } catch (e) {
            this.log(`deputy link: ${(e as Error).message}`);
          }
        });
      }
    }
  }

  private handle(s: Slot, revents: number): void {
    switch (s.kind) {
      case "wake":
        while ((readSome(this.wakeR, new Uint8Array(64)) ?? 0) > 0) { /* drained */ }
        return;
      case "listen":
        return this.accept();
      case "conn":
        if (revents & POLL.OUT) this.flush(s.c);
        if (revents & (POLL.IN | POLL.HUP | POLL.ERR | POLL.NVAL)) this.receive(s.c);
        return;
      case "pidfd":
        return this.ended(s.d);
    }
  }

  private accept(): void {
    for (let i = 0; i < 64; i++) {
      const fd = acceptNow(this.fd);
      if (fd === null) return;
      let pid = 0, uid = -1;
      try {
        ({ pid, uid } = peerCred(fd));
      } catch { /* refused below */ }
      const d = this.deputies.get(pid);
      if (!d || readableNow(d.pidfd)) {
        this.log(
          `deputy link: a connection from process ${pid} (uid ${uid}), where no deputy is expected: closed`,
        );
        closeSocket(fd);
        continue;
      }
      if (d.conn) {
        this.log(`deputy ${pid} connected again: its previous connection is closed`);
        this.drop(d.conn);
      }
      d.conn = {
        fd,
        pid,
        hello: false,
        line: new Uint8Array(LINE_MAX),
        len: 0,
        skip: false,
        out: new Uint8Array(0),
        bad: 0,
      };
    }
  }

  private drop(c: Conn): void {
    closeSocket(c.fd);
    const d = this.deputies.get(c.pid);
    if (d?.conn === c) d.conn = undefined;
  }

  private current(c: Conn): boolean {
    return this.deputies.get(c.pid)?.conn === c;
  }

  private receive(c: Conn): void {
    const buf = new Uint8Array(4096);
    for (let round = 0; round < 16 && this.current(c); round++) {
      let n: number | null;
      try {
        n = readSome(c.fd, buf);
      } catch {
        n = 0; // reset: as good as closed
      }
      if (n === null) return;
      if (n === 0) {
        this.drop(c);
        // Told to go home: execveat closed its connection, and the process lives on.
        const d = this.deputies.get(c.pid);
        if (d?.homes.length && !readableNow(d.pidfd)) {
          for (const w of d.homes.splice(0)) w.resolve();
        }
        return;
      }
      for (let i = 0; i < n && this.current(c); i++) {
        const b = buf[i];
        if (b === 10) {
          this.line(c, c.skip ? null : latin1.decode(c.line.subarray(0, c.len)));
          c.len = 0;
          c.skip = false;
        } else if (c.skip) {
          continue;
        } else if (b === 0 || c.len + 1 >= LINE_MAX) {
          c.skip = true;
        } else {
          c.line[c.len++] = b;
        }
      }
    }
  }

  /** A line without its newline; null for one too long or with a NUL in it. */
  private line(c: Conn, text: string | null): void {
    const d = this.deputies.get(c.pid)!;
    const what = text === null
      ? `a line over ${LINE_MAX} bytes or with a NUL in it`
      : `the line ${JSON.stringify(text.slice(0, 80))}`;
    if (!c.hello) {
      const m = /^hello ([1-9][0-9]{0,9})$/.exec(text ?? "");
      if (!m) {
        this.log(`deputy ${c.pid}: its first line is not a hello (${what}): closed`);
        this.drop(c);
        return;
      }
      if (Number(m[1]) !== c.pid) {
        // Its own PID namespace may number it otherwise; the kernel's word (SO_PEERCRED) counts.
        this.log(`deputy ${c.pid} calls itself ${m[1]} (another PID namespace?)`);
      }
      c.hello = true;
      for (const fd of d.closes) this.send(c, `close ${fd}\n`);
      if (d.told) this.send(c, d.told);
      for (const w of d.hellos.splice(0)) w.resolve();
      this.events.onConnect?.(c.pid);
      return;
    }
    const m = /^signal ([1-9][0-9]?)$/.exec(text ?? "");
    if (m && Number(m[1]) <= 64) {
      this.events.onSignal?.(c.pid, Number(m[1]));
      return;
    }
    const f = /^home-failed ([1-9][0-9]{0,3})$/.exec(text ?? "");
    if (f && d.homes.length) {
      const why = new PpmError(
        `the deputy of process ${c.pid} could not run the restore stub`,
        `execveat: ${errnoName(Number(f[1]))}`,
        "it goes on as the deputy; see whether the stub is installed where its user may run it",
      );
      for (const w of d.homes.splice(0)) w.reject(why);
      return;
    }
    this.bad(c, text?.startsWith("hello ") ? "a second hello" : what);
  }

  private bad(c: Conn, what: string): void {
    c.bad++;
    if (c.bad <= LOGGED_BAD) this.log(`deputy ${c.pid} sent ${what}: ignored`);
    if (c.bad > MAX_BAD) {
      this.log(`deputy ${c.pid} sent more than ${MAX_BAD} lines that mean nothing: closed`);
      this.drop(c);
    }
  }

  private send(c: Conn, line: string): void {
    const add = new TextEncoder().encode(line);
    const out = new Uint8Array(c.out.length + add.length);
    out.set(c.out);
    out.set(add, c.out.length);
    c.out = out;
    this.flush(c);
  }

  private flush(c: Conn): void {
    while (c.out.length && this.current(c)) {
      let n: number | null;
      try {
        n = sendSome(c.fd, c.out, MSG.NOSIGNAL | MSG.DONTWAIT);
      } catch {
        this.drop(c); // it reconnects, and is told again
        return;
      }
      if (n === null) return;
      c.out = c.out.subarray(n);
    }
  }

  private ended(d: Deputy): void {
    if (this.deputies.get(d.pid) !== d) return; // forgotten meanwhile
    // Told to go home: it ran the restore stub (which ended), or ended before it could.
    const homing = d.homes.length > 0;
    for (const w of d.homes.splice(0)) w.reject(new HomeEnded(d.pid));
    const why = new PpmError(
      `the deputy of process ${d.pid} ended`,
      "it ended before it connected",
      "",
    );
    this.remove(d, true, why);
    if (d.told === undefined && !homing) this.events.onGone?.(d.pid);
  }

  /**
   * Forgets `d`: its descriptors closed; its end waiters resolved when it
   * `ended`, else rejected with `why`, as its hello waiters are.
   */
  private remove(d: Deputy, ended: boolean, why: PpmError): void {
    if (this.deputies.get(d.pid) === d) this.deputies.delete(d.pid);
    closeFd(d.pidfd);
    if (d.conn) closeSocket(d.conn.fd);
    d.conn = undefined;
    for (const w of d.ends.splice(0)) ended ? w.resolve() : w.reject(why);
    for (const w of d.hellos.splice(0)) w.reject(why);
    for (const w of d.homes.splice(0)) w.reject(why);
  }
}
