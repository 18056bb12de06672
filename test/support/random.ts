/*
 * Small seeded pseudo-random generators of uniforms in [0, 1), for tests that need the same
 * "random" sequence on every run. Two algorithms, because existing tests were calibrated on
 * each (changing one would change which inputs those tests see): keep using the one a test uses.
 */

/** xorshift32 (Marsaglia): the zero-downtime tests' generator. A seed of 0 is taken as 1. */
export function xorshift32(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

/** mulberry32: the statistics tests' generator. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
