/**
 * The page stream: a migration's frozen pages go from the process to the
 * destination's restore plan through a small native helper
 * (pagestream/pagestream.c), never through JavaScript. Its own TCP
 * connection, sealed with AEGIS-128L (pagestream/aegis128l.h) under a
 * fresh key the destination makes and sends over the agents' encrypted
 * link; the helper's first frame proves it holds that key.
 *
 * {@link PageSender} on the source reads the pages JavaScript asks for
 * (runs the pagemap says must go), leaves out those that hold only zeros
 * and sends the rest; {@link PageReceiver} on the destination writes them
 * into the plan as runs (struct ppm_plan_run) as they arrive.
 *
 * @module
 */
import { join } from "node:path";
import { helperOnce, type HelperSource } from "../host/helper_binary.ts";
import { PROJECT_ROOT } from "../paths.ts";

/** The helper's sources. */
export const PAGESTREAM_DIR: string = join(PROJECT_ROOT, "core", "transport", "pagestream");
const DIR = PAGESTREAM_DIR;

/** The helper's exit codes (pagestream.c enum exit_code). */
export const PAGESTREAM_EXIT = { OK: 0, FAIL: 1, USAGE: 2, NO_AES: 3 } as const;

/** Most pages in one request of the sender. */
export const MAX_REQUEST_PAGES = 1024;

/** Bytes of the key and of the session id. */
export const PAGESTREAM_SECRET_BYTES = 16;

/** The helper's sources (a package ships them with the helper built: packaging/package.ts). */
export const PAGESTREAM_HELPER: HelperSource = {
  src: join(DIR, "pagestream.c"),
  headers: [join(DIR, "aegis128l.h")],
  name: "ppm-pagestream",
  what: "the page stream helper",
};

/** The helper's path, built first when needed. */
export const ensurePagestream: () => Promise<string> = helperOnce(PAGESTREAM_HELPER);

let usable: Promise<string | undefined> | undefined;

/**
 * Whether this node can run the page stream: the helper builds and passes
 * its AEGIS-128L test vectors (the CPU has AES instructions). Undefined
 * when it can; else why not (the migration then sends its pages in the
 * image stream). Asked once per process.
 */
export function pagestreamUnusable(): Promise<string | undefined> {
  usable ??= (async () => {
    try {
      const out = await new Deno.Command(await ensurePagestream(), {
        args: ["selftest"],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (out.code === 0) return undefined;
      return new TextDecoder().decode(out.stderr).trim() ||
        new TextDecoder().decode(out.stdout).trim();
    } catch (e) {
      return (e as Error).message;
    }
  })();
  return usable;
}

/** What a destination gives the source to send its pages (over the encrypted link). */
export interface PageStreamTicket {
  /** The helper's port at the destination. */
  port: number;
  /** The key, 16 bytes, as hex. */
  key: string;
  /** The session id, 16 bytes, as hex. */
  session: string;
}

function hex(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

function unhex(s: string): Uint8Array {
  if (!/^[0-9a-f]{32}$/.test(s)) throw new Error("a page stream secret is 32 hex digits");
  return new Uint8Array(s.match(/../g)!.map((x) => parseInt(x, 16)));
}

/** How the helper ended, as an error whose message says what it reported. */
async function failure(what: string, child: Deno.ChildProcess, err: Promise<string>) {
  const st = await child.status;
  const text = (await err).trim().split("\n").slice(-3).join("; ");
  return new Error(
    `${what}: ${text || `the helper ended (${st.signal ?? `exit ${st.code}`})`}`,
  );
}

/** Reads all of a helper's stderr. */
async function drain(stream: ReadableStream<Uint8Array>): Promise<string> {
  return await new Response(stream).text();
}

/** A run of pages the receiver wrote into the plan. */
export interface ReceivedRun {
  /** Address of its first page. */
  start: bigint;
  /** Its pages. */
  count: number;
}

/** What the receiver took, once the sender's end frame arrived. */
export interface Received {
  /** Frames (each one run in the plan). */
  frames: number;
  /** Pages. */
  pages: number;
  /** The mappings the sender said the plan recreates (checked against the image). */
  vmas: number;
  /** The plan offset after the last run. */
  end: number;
  /** The runs, in order. */
  runs: ReceivedRun[];
  /** Milliseconds spent receiving, checking and decrypting, writing the pages. */
  ms: { net: number; open: number; write: number };
}

/** The helper's figures: "stats NAME US NAME US ..." as milliseconds by name. */
function statsOf(text: string): Record<string, number> {
  const line = text.split("\n").find((l) => l.startsWith("stats "));
  const out: Record<string, number> = {};
  const words = line?.split(" ").slice(1) ?? [];
  for (let i = 0; i + 1 < words.length; i += 2) out[words[i]] = Number(words[i + 1]) / 1000;
  return out;
}

/** The receiving helper's command line. */
function receiverArgs(o: ReceiverOptions): string[] {
  return [
    "recv",
    ...["--bind", o.bind, "--from", o.from, "--plan", o.plan],
    ...["--plan-head", String(o.layout.head), "--plan-vma", String(o.layout.vma)],
    ...["--hello-timeout-ms", String(o.helloTimeoutMs ?? o.timeoutMs)],
    ...["--max-pages", String(o.maxPages), "--timeout-ms", String(o.timeoutMs)],
    ...(o.store
      ? [
        ...["--store", o.store.path, "--max-held", String(o.store.maxPages)],
        ...["--store-offset", String(o.store.offset ?? 0)],
        ...(o.store.vessel
          ? [
            ...["--vessel", String(o.store.vessel.pid)],
            ...o.store.vessel.rooms.flatMap(([a, b]) => [
              "--room",
              `${a.toString(16)}-${b.toString(16)}`,
            ]),
          ]
          : []),
      ]
      : []),
  ];
}

/** The lines of `stream`, one per call; undefined at its end. */
function lineReader(stream: ReadableStream<Uint8Array>): () => Promise<string | undefined> {
  const lines = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  return async () => {
    for (;;) {
      const i = buf.indexOf("\n");
      if (i >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        return line;
      }
      const r = await lines.read();
      if (r.done) return undefined;
      buf += r.value;
    }
  };
}

/**
 * The receiver's report, line by line: its runs, its pre-copy pages (told
 * to `onHeld` as they come), its figures, and its end; undefined when the
 * output ends without an end line.
 */
async function readReceived(
  nextLine: () => Promise<string | undefined>,
  store?: ReceiverOptions["store"],
): Promise<Received | undefined> {
  const runs: ReceivedRun[] = [];
  let stats: Record<string, number> = {};
  for (let line = await nextLine(); line !== undefined; line = await nextLine()) {
    const run = line.match(/^run (\d+) (\d+)$/);
    const held = line.match(/^held (\d+) (\d+) (\d+)$/);
    const placed = line.match(/^placed (\d+) (\d+)$/);
    const end = line.match(/^end (\d+) (\d+) (\d+) (\d+)$/);
    if (run) runs.push({ start: BigInt(run[1]), count: Number(run[2]) });
    else if (held) store?.onHeld(BigInt(held[1]), Number(held[2]), Number(held[3]));
    else if (placed) store?.onPlaced?.(BigInt(placed[1]), Number(placed[2]));
    else if (line.startsWith("stats ")) stats = statsOf(line);
    else if (end) {
      return {
        frames: Number(end[1]),
        pages: Number(end[2]),
        vmas: Number(end[3]),
        end: Number(end[4]),
        runs,
        ms: { net: stats.net ?? 0, open: stats.open ?? 0, write: stats.write ?? 0 },
      };
    }
  }
  return undefined;
}

/** Options of {@link PageReceiver.start}. */
export interface ReceiverOptions {
  /** This node's address to listen on (the agents' connection's local one). */
  bind: string;
  /** The source's address: connections from elsewhere are closed. */
  from: string;
  /** The plan file. */
  plan: string;
  /** Bytes of the plan's header, and of each mapping entry (the runs follow them). */
  layout: { head: number; vma: number };
  /** Most pages the sender may send. */
  maxPages: number;
  /** Bound of each wait, in ms. */
  timeoutMs: number;
  /** Bound of each wait until the freeze (pre-copy rounds pause between them), in ms. */
  helloTimeoutMs?: number;
  /**
   * The pre-copy store: the rounds' pages are appended to this file, at
   * most `maxPages` in all; `onHeld` learns where each run went.
   */
  store?: {
    path: string;
    /** Where in it the first page goes (a page multiple; default 0). */
    offset?: number;
    maxPages: number;
    onHeld: (start: bigint, count: number, offset: number) => void;
    /**
     * The restore stub started ahead (core/restore/vessel.ts): a run that
     * one of its rooms ([start, end)) holds whole is written into it, where
     * it belongs, and told to `onPlaced` instead.
     */
    vessel?: { pid: number; rooms: [bigint, bigint][] };
    onPlaced?: (start: bigint, count: number) => void;
  };
}

/** The destination's end: listens, takes the source's pages into the plan. */
export class PageReceiver {
  /** What the source needs to connect. */
  readonly ticket: PageStreamTicket;
  /** Settles once the sender's end frame arrived and every run is in the plan. */
  readonly done: Promise<Received>;
  #child: Deno.ChildProcess;

  private constructor(child: Deno.ChildProcess, ticket: PageStreamTicket, done: Promise<Received>) {
    this.#child = child;
    this.ticket = ticket;
    this.done = done;
  }

  /** Starts the helper; returns once it listens. */
  static async start(o: ReceiverOptions): Promise<PageReceiver> {
    const key = crypto.getRandomValues(new Uint8Array(PAGESTREAM_SECRET_BYTES));
    const session = crypto.getRandomValues(new Uint8Array(PAGESTREAM_SECRET_BYTES));
    const child = new Deno.Command(await ensurePagestream(), {
      args: receiverArgs(o),
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const err = drain(child.stderr);
    const w = child.stdin.getWriter();
    await w.write(key);
    await w.write(session);
    await w.close();
    const nextLine = lineReader(child.stdout);
    const port = Number((await nextLine())?.match(/^port (\d+)$/)?.[1]);
    if (!port) {
      child.kill("SIGKILL");
      throw await failure("the page stream cannot listen", child, err);
    }
    const done = (async () => {
      const got = await readReceived(nextLine, o.store);
      if (got && (await child.status).code === 0) return got;
      throw await failure("the page stream failed", child, err);
    })();
    done.catch(() => {});
    return new PageReceiver(child, { port, key: hex(key), session: hex(session) }, done);
  }

  /** Ends the helper (a migration given up). */
  stop(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch { /* ended */ }
  }
}

/** Options of {@link PageSender.start}. */
export interface SenderOptions {
  /** The destination's address. */
  to: string;
  /** What the destination gave. */
  ticket: PageStreamTicket;
  /** The process. */
  pid: number;
  /** Bound of each wait, in ms. */
  timeoutMs: number;
}

/** What a sender sent, and where its time went. */
export interface SentStats {
  /** Frames of the freeze. */
  frames: number;
  /** Pages of the freeze. */
  pages: number;
  /** Milliseconds reading pages, sealing, sending, waiting for requests (rounds included). */
  ms: { read: number; seal: number; net: number; wait: number };
}

/** The sender's requests (pagestream.c enum op). */
const OP = { PAGES: 1, HELD: 2, FREEZE: 3, END: 4 } as const;

/** A pre-copy round's request answered: which pages held zeros, or that none could be read. */
export interface HeldAnswer {
  /** The pages could not be read (unmapped meanwhile, say): none was sent. */
  unreadable: boolean;
  /** Per page: it held only zeros and was not sent. */
  zeros: boolean[];
}

/** The source's end: reads the pages asked for from the process and sends them. */
export class PageSender {
  #child: Deno.ChildProcess;
  #in: WritableStreamDefaultWriter<Uint8Array>;
  #out: ReadableStreamBYOBReader;
  #err: Promise<string>;
  #answers: Promise<void> = Promise.resolve();

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#in = child.stdin.getWriter();
    this.#out = child.stdout.getReader({ mode: "byob" });
    this.#err = drain(child.stderr);
  }

  /** Starts the helper, which connects and proves its key. */
  static async start(o: SenderOptions): Promise<PageSender> {
    const child = new Deno.Command(await ensurePagestream(), {
      args: [
        "send",
        "--to",
        o.to,
        "--port",
        String(o.ticket.port),
        "--pid",
        String(o.pid),
        "--timeout-ms",
        String(o.timeoutMs),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const s = new PageSender(child);
    await s.#in.write(unhex(o.ticket.key));
    await s.#in.write(unhex(o.ticket.session));
    return s;
  }

  /** The frozen part begins: `vmas`, the mappings the restore plan recreates. */
  async freeze(vmas: number): Promise<void> {
    await this.#in.write(request(OP.FREEZE, BigInt(vmas), 0));
  }

  async #read(n: number): Promise<Uint8Array> {
    let buf = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const r = await this.#out.read(buf.subarray(off));
      if (r.done || !r.value) throw await failure("the page stream failed", this.#child, this.#err);
      buf = new Uint8Array(r.value.buffer);
      off += r.value.length;
    }
    return buf;
  }

  #ask(op: number, start: bigint, pages: number): Promise<HeldAnswer> {
    if (pages < 1 || pages > MAX_REQUEST_PAGES) throw new RangeError(`${pages} pages`);
    const sent = this.#in.write(request(op, start, pages));
    const answer = this.#answers.then(async () => {
      await sent;
      const head = new DataView((await this.#read(12)).buffer);
      if (head.getUint32(0, true) !== op || head.getUint32(4, true) !== pages) {
        throw new Error("the page stream helper answered out of order");
      }
      const bits = await this.#read(Math.ceil(pages / 8));
      return {
        unreadable: head.getUint32(8, true) !== 0,
        zeros: Array.from({ length: pages }, (_, i) => (bits[i >> 3] & (1 << (i & 7))) !== 0),
      };
    });
    this.#answers = answer.then(() => {}, () => {});
    return answer;
  }

  /**
   * Asks for `pages` frozen pages from `start` (1..{@link MAX_REQUEST_PAGES},
   * after {@link freeze}); resolves with which of them held only zeros and
   * were not sent (one flag per page), in the order asked. Requests may be
   * made before the answers to earlier ones arrive.
   */
  async request(start: bigint, pages: number): Promise<boolean[]> {
    return (await this.#ask(OP.PAGES, start, pages)).zeros;
  }

  /**
   * Asks for `pages` pages of a pre-copy round from `start` (before
   * {@link freeze}), read as the process runs.
   */
  held(start: bigint, pages: number): Promise<HeldAnswer> {
    return this.#ask(OP.HELD, start, pages);
  }

  /**
   * Sends the end frame once every request is served; returns the frames
   * and pages sent (from the freeze on), and the milliseconds the helper
   * spent reading pages, sealing, sending, and waiting for requests.
   */
  async finish(): Promise<SentStats> {
    await this.#answers;
    await this.#in.write(request(OP.END, 0n, 0));
    const done = new DataView((await this.#read(16)).buffer);
    if (done.getUint32(0, true) !== 0xffffffff) {
      throw new Error("the page stream helper did not end");
    }
    await this.#in.close().catch(() => {});
    const st = await this.#child.status;
    if (st.code !== 0) throw await failure("the page stream failed", this.#child, this.#err);
    const ms = statsOf(await this.#err);
    return {
      frames: done.getUint32(4, true),
      pages: Number(done.getBigUint64(8, true)),
      ms: { read: ms.read ?? 0, seal: ms.seal ?? 0, net: ms.net ?? 0, wait: ms.wait ?? 0 },
    };
  }

  /** Ends the helper (a migration given up). */
  stop(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch { /* ended */ }
  }
}

/** A request to the sender: u64 argument, u32 pages, u32 op. */
function request(op: number, arg: bigint, pages: number): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(0, arg, true);
  dv.setUint32(8, pages, true);
  dv.setUint32(12, op, true);
  return b;
}

/** Bytes on the wire of a page stream that carried `frames` frames of `pages` pages in all. */
export function wireBytes(s: { frames: number; pages: number }): number {
  // Each frame: a 16-byte header and a 16-byte tag; the hello and the end: 32 bytes of payload each.
  return s.pages * 4096 + s.frames * 32 + 2 * (32 + 32);
}
