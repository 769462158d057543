/**
 * ppm's version.
 *
 * @module
 */

/** The version of this ppm. */
export const VERSION = "0.1.0";
