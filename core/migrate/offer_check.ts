/**
 * An offer, checked as hostile input before anything uses it (its schema is
 * offer_schema.ts): an authenticated peer can still be wrong, old or
 * compromised, and an offer's PID ends up in paths and its sizes in
 * admission arithmetic.
 *
 * @module
 */
import { EXIT, PpmError } from "../errors.ts";
import { expectMessage, type Offer } from "./messages.ts";

/** `v` as an Offer, or a PpmError("refused", "a malformed offer: ...") naming the field that is wrong. */
export function checkOffer(v: unknown): Offer {
  try {
    return expectMessage(v, "offer");
  } catch (e) {
    const why = `a malformed offer: ${(e as PpmError).why}`;
    throw new PpmError("refused", why, "", EXIT.FAILURE, { cause: e });
  }
}
