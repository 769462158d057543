/**
 * The cluster secret: 32 random bytes shared by every node, kept in a file
 * only its owner can read. Node-to-node messages and connections are
 * authenticated with HMAC-SHA256 under keys derived from it.
 *
 * File format: 64 lowercase hex characters and a newline.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { EXIT, PpmError } from "../errors.ts";

/** Bytes of secret. */
export const SECRET_BYTES = 32;

/** A loaded cluster secret. */
export interface ClusterSecret {
  /** The raw key. */
  key: Uint8Array;
  /** Where it came from. */
  path: string;
}

/** Writes a new secret to `path` with mode 0600; refuses to overwrite. */
export async function generateSecret(path: string): Promise<void> {
  const hex = Buffer.from(randomBytes(SECRET_BYTES)).toString("hex");
  try {
    await Deno.writeTextFile(path, hex + "\n", { createNew: true, mode: 0o600 });
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) {
      throw new PpmError(
        `cannot write ${path}`,
        "the file exists",
        "remove it first, or pick another path",
        EXIT.BUSY,
      );
    }
    throw new PpmError(`cannot write ${path}`, (e as Error).message, "", EXIT.PERMISSION);
  }
  await Deno.chmod(path, 0o600);
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

/** Loads the secret at `path`, refusing files that others can read. */
export async function loadSecret(path: string): Promise<ClusterSecret> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(path);
  } catch {
    throw new PpmError(
      `no cluster secret at ${path}`,
      "the file does not exist",
      "create one with `ppm secret generate -o FILE` and copy it to every node (mode 0600)",
      EXIT.MISSING,
    );
  }
  if (st.mode !== null && (st.mode & 0o077) !== 0) {
    throw new PpmError(
      `the cluster secret ${path} is readable by others (mode ${(st.mode & 0o777).toString(8)})`,
      "anyone who reads it can impersonate a node",
      `chmod 600 ${path}`,
      EXIT.PERMISSION,
    );
  }
  return { key: parseSecret(await Deno.readTextFile(path), path), path };
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
