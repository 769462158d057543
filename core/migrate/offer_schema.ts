/**
 * The offer, as a valibot schema: what the destination must provide, asked
 * before anything is frozen. Checked as hostile input before anything uses
 * it: an authenticated peer can still be wrong, old or compromised, and an
 * offer's PID ends up in paths and its sizes in admission arithmetic.
 *
 * @module
 */
import * as v from "valibot";
import { AbsPath, int, list, Pid, text } from "../untrusted.ts";

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** An IPv4 address and port of one of the process's sockets. */
const Endpoint = v.object({
  addr: v.pipe(v.string(), v.maxLength(15), v.regex(IPV4, "expected an IPv4 address")),
  port: int(0, 65535),
});

/** One of the process's IPv4 sockets (core/redirect/redirect_plan.ts `FlowSocket`). */
const FlowSocket = v.object({
  kind: v.picklist(["tcp", "tcp-pending", "tcp-listen", "udp"]),
  local: Endpoint,
  remote: v.pipe(v.nullish(Endpoint), v.transform((x) => x ?? undefined)),
});

/** A 64-bit unsigned integer, as a bigint (a safe integer number is taken too). */
const U64 = v.pipe(
  v.union([v.bigint(), v.pipe(v.number(), v.integer())]),
  v.transform((x) => BigInt(x)),
  v.minValue(0n),
  v.maxValue((1n << 64n) - 1n),
);

/** What a file was (core/image/schema.ts `FileId`). */
const FileIdSchema = v.object({
  mode: int(0, 0o177777),
  uid: int(0, 0xffffffff),
  gid: int(0, 0xffffffff),
  size: int(0, Number.MAX_SAFE_INTEGER),
  mtimeMs: int(0, Number.MAX_SAFE_INTEGER),
  dev: U64,
  ino: U64,
});

/** A file the process has, with what it was (core/restore/compat.ts `ExpectedFile`). */
const ExpectedFileSchema = v.object({
  path: AbsPath,
  id: v.optional(FileIdSchema),
  flags: v.optional(int(0, 0xffffffff)),
  role: text(64),
  hashChecked: v.optional(v.boolean()),
});

/** A mapped file's identity: its content's hash. */
const MappedFile = v.object({
  path: AbsPath,
  size: int(0, Number.MAX_SAFE_INTEGER),
  sha256: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/, "expected a SHA-256 in hex")),
});

/** How a migrated process's stdin is provided at the destination. */
export const StdinModeSchema = v.picklist(["closed", "null", "relay"]);

/** What the destination must provide, asked before anything is frozen. */
export const OfferSchema = v.object({
  op: v.literal("offer"),
  /** The process's PID (restored with the same PID). */
  pid: Pid,
  /** Its name. */
  comm: text(64),
  /** The TIDs of its other threads (each restored with its TID); absent: none. */
  tids: v.nullish(list(Pid, 4095), () => []),
  /** Kernel release of the source. */
  kernel: text(256),
  /** CPU flags of the source. */
  cpuFlags: list(text(64), 1024),
  /** Module ABI version. */
  abi: int(0, 1 << 20),
  /** Identity of every mapped file. */
  files: list(MappedFile, 65536),
  /** Anonymous memory to send, bytes (for progress and throughput). */
  estimatedBytes: int(0, Number.MAX_SAFE_INTEGER),
  /** Source node name. */
  from: text(256),
  /** Where the process started (for `ppm ps`). */
  origin: v.object({ node: text(256), pid: Pid }),
  /** Times it moved before. */
  moves: int(0, 1 << 20),
  /** Its stdin: closed, /dev/null, or relayed from the source (stream 4). */
  stdin: StdinModeSchema,
  /** The source node's address, as the process's peers know it ("" without sockets). */
  fromAddr: v.optional(text(64), ""),
  /** Its IPv4 sockets (their ports must be free at the destination); absent: none. */
  sockets: v.nullish(list(FlowSocket, 65536), () => []),
  /** Its working directory (it must exist at the destination). */
  cwd: AbsPath,
  /**
   * Its working directory, open files and mapped files with what they are
   * (type, owner, mode, size, mtime): the destination checks them before
   * anything is frozen.
   */
  expected: v.optional(list(ExpectedFileSchema, 65536)),
  /**
   * Pre-copy rounds come first, on stream 5 (core/migrate/precopy.ts); the
   * image then leaves to them the pages the process did not write since.
   */
  precopy: v.optional(v.boolean()),
  /**
   * The source can send the frozen pages on a page stream of this version
   * (core/transport/pagestream.ts); the destination's yes then says where.
   */
  pagestream: v.optional(v.literal(1)),
});
