/**
 * Seeded pseudo-random numbers, so that a round's random choices depend only
 * on its inputs: the same node, round and seed give the same choices.
 *
 * @module
 */
import type { Rng } from "./types.ts";

/** A 32-bit seed from strings and numbers (FNV-1a over their text). */
export function seedFrom(...parts: (string | number)[]): number {
  let h = 0x811c9dc5;
  for (const part of parts) {
    const s = `${part}\u0000`;
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
  }
  return h >>> 0;
}

/** mulberry32: a small, fast generator of numbers in [0, 1) from a 32-bit seed. */
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The generator for one node's decision round: seeded by node id, round and a cluster seed. */
export function roundRng(nodeId: string, round: number, seed = 0): Rng {
  return mulberry32(seedFrom("ppm-balance", seed, nodeId, round));
}

/** An integer in [0, n) from `rng`; n must be ≥ 1. */
export function randomInt(rng: Rng, n: number): number {
  return Math.min(n - 1, Math.floor(rng() * n));
}

/** Shuffles `items` in place (Fisher-Yates) and returns it. */
export function shuffle<T>(rng: Rng, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randomInt(rng, i + 1);
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}
