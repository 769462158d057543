/**
 * The files an offer says the process has (its working directory, open and
 * mapped files, with what they were), checked as hostile input.
 *
 * @module
 */
import { PpmError } from "../errors.ts";
import { path as pathField, str } from "../image/fields.ts";
import { checkId } from "../image/schema.ts";
import type { ExpectedFile } from "../restore/compat.ts";

/** The offer's expected files, checked as hostile input. */
export function expectedOf(v: unknown): ExpectedFile[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.length > 65536) {
    throw new PpmError("refused", "the offer's file list is not a list of at most 65536");
  }
  return v.map((x, i) => {
    const what = `offer file ${i}`;
    if (typeof x !== "object" || x === null) throw new PpmError("refused", `${what} is not a map`);
    const o = x as Record<string, unknown>;
    const flags = typeof o.flags === "number" && Number.isInteger(o.flags) ? o.flags : undefined;
    return {
      path: pathField(o, "path", what),
      id: checkId(o.id, what),
      flags,
      role: str(o, "role", what, 64),
      hashChecked: o.hashChecked === true,
    };
  });
}
