/**
 * The cluster secret: 32 random bytes shared by every node, kept in a file
 * that only root (or the user ppm runs as) owns and only its owner can read
 * or write. Node-to-node messages and connections are authenticated with
 * keys derived from it; connections are also encrypted, under keys that mix
 * it with an ephemeral key exchange (docs/transport.md).
 *
 * File format: 64 lowercase hex characters and a newline. The file is opened
 * without following a symbolic link in its last component (O_NOFOLLOW), must
 * be a regular file, owned by root or by the effective user, with no group or
 * other permission bits; a new one is created exclusively (O_CREAT|O_EXCL|
 * O_NOFOLLOW) with mode 0600. See docs/secret.md.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import fs from "node:fs";
import process from "node:process";
import { dirname } from "node:path";
import { EXIT, PpmError } from "../errors.ts";
import { ensureDirSync } from "../paths.ts";

/** Bytes of secret. */
export const SECRET_BYTES = 32;

/** The largest secret file read (the format needs 65 bytes). */
const MAX_SECRET_FILE_BYTES = 1024;

/** A loaded cluster secret. */
export interface ClusterSecret {
  /** The raw key. */
  key: Uint8Array;
  /** Where it came from. */
  path: string;
}

/** `s` quoted for a POSIX shell when it needs it, so a printed fix can be pasted. */
function sh(s: string): string {
  return /^[A-Za-z0-9_/.,:+@%=-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/** The effective uid of this process (0 for root). */
function euid(): number {
  return process.geteuid?.() ?? Deno.uid() ?? 0;
}

/** The exact commands that make `path` a good secret file, for this process's user. */
export function secretFileFix(path: string): string {
  const f = sh(path);
  const uid = euid();
  return uid === 0
    ? `chown root:root ${f}; chmod 600 ${f}`
    : `chmod 600 ${f}; and, as root: chown root:root ${f} (or chown ${uid} ${f})`;
}

/** The error code of a failed node:fs call ("ENOENT", ...). */
function codeOf(e: unknown): string {
  return (e as { code?: string })?.code ?? "";
}

/**
 * Writes a new secret to `path` (its directory created, mode 0700, when
 * missing): created exclusively (O_CREAT|O_EXCL|
 * O_NOFOLLOW, so neither an existing file nor a symbolic link, even a
 * dangling one, is ever written through) with mode 0600, written and synced.
 *
 * @throws PpmError (EXIT.BUSY) when something exists at `path`; (EXIT.PERMISSION)
 *   when it cannot be created
 */
export function generateSecret(path: string): Promise<void> {
  return Promise.resolve().then(() => writeNewSecret(path));
}

/** {@link generateSecret}, synchronously. */
export function writeNewSecret(path: string): void {
  const hex = Buffer.from(randomBytes(SECRET_BYTES)).toString("hex");
  const C = fs.constants;
  ensureDirSync(dirname(path));
  let fd: number;
  try {
    fd = fs.openSync(path, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
  } catch (e) {
    if (codeOf(e) === "EEXIST") {
      let link = false;
      try {
        link = fs.lstatSync(path).isSymbolicLink();
      } catch { /* gone since */ }
      throw new PpmError(
        `cannot write a new cluster secret to ${path}`,
        link ? "a symbolic link is there (it is never written through)" : "the file exists",
        "remove it first (it may be the secret the cluster uses), or pick another path",
        EXIT.BUSY,
      );
    }
    throw new PpmError(
      `cannot write a new cluster secret to ${path}`,
      (e as Error).message,
      "check that this user may create files in that directory",
      EXIT.PERMISSION,
    );
  }
  try {
    fs.fchmodSync(fd, 0o600); // whatever the umask
    fs.writeSync(fd, hex + "\n");
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    try {
      fs.unlinkSync(path);
    } catch { /* leave it */ }
    throw new PpmError(
      `cannot write a new cluster secret to ${path}`,
      (e as Error).message,
      "check the disk (space, errors) and retry",
    );
  }
  fs.closeSync(fd);
}

/** Parses secret file text; throws on anything but 64 hex characters. */
export function parseSecret(text: string, path = "secret"): Uint8Array {
  const hex = text.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new PpmError(
      `the cluster secret ${path} is malformed`,
      "it must hold 64 hexadecimal characters",
      "create one with `ppm secret generate -o FILE`",
      EXIT.USAGE,
    );
  }
  return new Uint8Array(Buffer.from(hex, "hex"));
}

/**
 * Loads the secret at `path`. The file is opened without following a
 * symbolic link (O_NOFOLLOW) and without blocking (a FIFO does not hang
 * ppm), and refused unless it is a regular file owned by root or by the
 * effective user, with no group or other permission bits (mode 0600 or
 * 0400). Each refusal says what is wrong and the commands that fix it.
 *
 * @throws PpmError: EXIT.MISSING when there is no file, EXIT.PERMISSION for
 *   a file that fails a check or cannot be read, EXIT.USAGE when malformed
 */
export function loadSecret(path: string): Promise<ClusterSecret> {
  return Promise.resolve().then(() => readSecretFile(path));
}

/** {@link loadSecret}, synchronously. */
export function readSecretFile(path: string): ClusterSecret {
  const fix = secretFileFix(path);
  const C = fs.constants;
  let fd: number;
  try {
    fd = fs.openSync(path, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
  } catch (e) {
    switch (codeOf(e)) {
      case "ENOENT":
      case "ENOTDIR":
        throw new PpmError(
          `no cluster secret at ${path}`,
          "the file does not exist",
          "create one with `ppm secret generate -o FILE` and copy it to every node (mode 0600)",
          EXIT.MISSING,
        );
      case "ELOOP":
        throw new PpmError(
          `the cluster secret ${path} is a symbolic link`,
          "ppm reads the secret only from the file itself, never through a link " +
            "that someone could point elsewhere",
          `put the file itself at ${sh(path)} instead of the link, then: ${fix}`,
          EXIT.PERMISSION,
        );
      case "EACCES":
      case "EPERM":
        throw new PpmError(
          `cannot read the cluster secret ${path}`,
          "permission denied",
          "run ppm as root, or as the user that owns the file",
          EXIT.PERMISSION,
        );
      default:
        throw new PpmError(
          `cannot read the cluster secret ${path}`,
          (e as Error).message,
          "",
          EXIT.PERMISSION,
        );
    }
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) {
      const kind = st.isDirectory()
        ? "a directory"
        : st.isFIFO()
        ? "a FIFO"
        : st.isSocket()
        ? "a socket"
        : "a device";
      throw new PpmError(
        `the cluster secret ${path} is not a regular file`,
        `it is ${kind}`,
        "point secretFile (or --secret-file) at the secret file itself " +
          "(ppm secret generate -o FILE makes one)",
        EXIT.PERMISSION,
      );
    }
    const me = euid();
    if (st.uid !== 0 && st.uid !== me) {
      throw new PpmError(
        `the cluster secret ${path} is owned by uid ${st.uid}`,
        `only root${me === 0 ? "" : ` or uid ${me} (this user)`} may own it: ` +
          "its owner can read it, or replace it with a secret of its choosing",
        fix,
        EXIT.PERMISSION,
      );
    }
    if ((st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o7777).toString(8).padStart(4, "0");
      throw new PpmError(
        `the cluster secret ${path} has mode ${mode}: its group or others have permissions`,
        "whoever can read it can impersonate any node; whoever can write it can replace it",
        fix,
        EXIT.PERMISSION,
      );
    }
    if (st.size > MAX_SECRET_FILE_BYTES) {
      throw new PpmError(
        `the cluster secret ${path} is malformed`,
        `it has ${st.size} bytes; a secret file has 65 (64 hexadecimal characters and a newline)`,
        "create one with `ppm secret generate -o FILE`",
        EXIT.USAGE,
      );
    }
    const buf = new Uint8Array(MAX_SECRET_FILE_BYTES + 1);
    let n = 0;
    for (let r; n < buf.length && (r = fs.readSync(fd, buf, n, buf.length - n, null)) > 0;) n += r;
    return { key: parseSecret(new TextDecoder().decode(buf.subarray(0, n)), path), path };
  } finally {
    fs.closeSync(fd);
  }
}

/** A key for one purpose ("announce", "connect"), derived from the secret. */
export function deriveKey(secret: Uint8Array, purpose: string): Uint8Array {
  return new Uint8Array(createHmac("sha256", secret).update(`ppm/${purpose}`).digest());
}

/** HMAC-SHA256 of the concatenated parts. */
export function hmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const h = createHmac("sha256", key);
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

/** Constant-time comparison of two MACs. */
export function macEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
