/**
 * Prints {@link measureCipher}'s rates as one JSON line (the bench runs it
 * in a guest).
 *
 * @module
 */
import { measureCipher } from "./lib/cipher.ts";

console.log(JSON.stringify(measureCipher()));
