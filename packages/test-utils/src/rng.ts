// Fresh random inputs for tests. Seeds are printed by failing assertions so a failure can be replayed.
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import type { RandomGenerator } from 'pure-rand/types/RandomGenerator';

export interface TestRng {
  readonly seed: number;
  /** Uniform in [0, 1). */
  float(): number;
  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number;
  /** Standard normal. */
  normal(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** `n` normal samples scaled by `std`, as float64. */
  normals(n: number, std?: number): Float64Array;
  /** `n` uniform samples in [lo, hi), as float64. */
  uniforms(n: number, lo: number, hi: number): Float64Array;
}

/** A seeded test RNG. Without a seed, a fresh one (from `PEER_TEST_SEED` or the clock). */
export function testRng(seed?: number): TestRng {
  const s = seed ?? (process.env.PEER_TEST_SEED ? Number(process.env.PEER_TEST_SEED) : (Date.now() ^ (Math.random() * 0x7fffffff)) | 0);
  const gen: RandomGenerator = xoroshiro128plus(s);
  const float = () => uniformFloat64(gen);
  const normal = () => {
    let u = 0;
    while (u === 0) u = float();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * float());
  };
  return {
    seed: s,
    float,
    uniform: (lo, hi) => lo + (hi - lo) * float(),
    normal,
    int: (n) => Math.floor(float() * n),
    normals: (n, std = 1) => Float64Array.from({ length: n }, () => std * normal()),
    uniforms: (n, lo, hi) => Float64Array.from({ length: n }, () => lo + (hi - lo) * float()),
  };
}
