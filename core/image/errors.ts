/**
 * The error for unreadable or unwritable images.
 *
 * @module
 */

import { EXIT, type ExitCode, PpmError } from "../errors.ts";

/** The fix for a damaged image. */
export const FIX_CORRUPT = "the image is corrupted; take a new checkpoint";

/** The fix for an image that ends early. */
export const FIX_TRUNCATED =
  "the image is incomplete (the checkpoint or its transfer was cut short); take a new checkpoint";

/**
 * A checkpoint image that cannot be read (corrupted, truncated, of another
 * version) or a value that cannot be written. The message names the record
 * index and byte offset, e.g. "image record 12 (PAGES at offset 4198432):
 * checksum mismatch (stored 0x1234abcd, computed 0x0badf00d)".
 */
export class ImageError extends PpmError {
  /**
   * @param what where: "image header", "image record 12 (PAGES at offset 4198432)"
   * @param why what is wrong there
   * @param fix what to do about it
   * @param exitCode the CLI exit code
   * @param details extra text shown after the message
   */
  constructor(
    what: string,
    why: string,
    fix = FIX_CORRUPT,
    exitCode: ExitCode = EXIT.FAILURE,
    details = "",
  ) {
    super(what, why, fix, exitCode, details);
    this.name = "ImageError";
  }
}

/** `0x1234abcd`: a u32 in hex, for messages. */
export function hex32(n: number): string {
  return "0x" + (n >>> 0).toString(16).padStart(8, "0");
}
