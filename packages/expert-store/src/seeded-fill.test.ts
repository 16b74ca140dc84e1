import { describe, expect, it } from 'vitest';
import { Rng } from '@peer/backend';
import { testRng } from '@peer/test-utils';
import { fillNormalSeeded, fillUniformSeeded } from './seeded-fill.js';

// Standard normal CDF from a plain series/continued-fraction-free erf (Abramowitz-Stegun 7.1.26 is
// too coarse for 2e5 samples; this uses the Taylor series, exact to ~1e-15 for |x| < 6).
function normalCdf(x: number): number {
  const z = x / Math.SQRT2;
  if (Math.abs(z) > 4.5) return z > 0 ? 1 : 0;
  let term = z;
  let sum = z;
  for (let k = 1; k < 200; k++) {
    term *= (-z * z) / k;
    const add = term / (2 * k + 1);
    sum += add;
    if (Math.abs(add) < 1e-17) break;
  }
  return 0.5 * (1 + (2 / Math.sqrt(Math.PI)) * sum);
}

/** Kolmogorov-Smirnov distance of the sample from `cdf`. */
function ksDistance(sample: Float32Array, cdf: (x: number) => number): number {
  const xs = Float64Array.from(sample).sort();
  let d = 0;
  for (let i = 0; i < xs.length; i++) {
    const f = cdf(xs[i]!);
    d = Math.max(d, Math.abs(f - i / xs.length), Math.abs((i + 1) / xs.length - f));
  }
  return d;
}

describe('seeded fills', () => {
  const n = 200_000;
  // Kolmogorov: P(sqrt(n) D > c) ~ 2 exp(-2 c^2), so c = 2.0 alarms falsely in 6.7e-4 of the runs
  // (per check, two checks a run); c = sqrt(ln(2 / alpha) / 2) = 2.69 for alpha = 1e-6 still
  // catches a 3% error in the scale or a shift of 0.02 std (D about 0.007 > 0.006).
  const ksLimit = Math.sqrt(Math.log(2 / 1e-6) / 2) / Math.sqrt(n);

  it('draws normal(0, std) samples (moments and Kolmogorov-Smirnov against the normal CDF)', () => {
    const seed = testRng().int(1 << 30);
    const std = 0.37;
    const out = fillNormalSeeded(new Float32Array(n + 1), new Rng(seed), std);
    let mean = 0;
    for (const x of out) mean += x;
    mean /= out.length;
    let variance = 0;
    for (const x of out) variance += (x - mean) ** 2;
    variance /= out.length;
    expect(Math.abs(mean), `seed ${seed}`).toBeLessThan((5 * std) / Math.sqrt(n));
    expect(Math.abs(Math.sqrt(variance) / std - 1), `seed ${seed}`).toBeLessThan(0.01);
    expect(ksDistance(out, (x) => normalCdf(x / std)), `seed ${seed}`).toBeLessThan(ksLimit);
  });

  it('draws uniform samples in [lo, hi)', () => {
    const seed = testRng().int(1 << 30);
    const out = fillUniformSeeded(new Float32Array(n), new Rng(seed), -0.25, 0.75);
    let min = Infinity;
    let max = -Infinity;
    for (const x of out) {
      min = Math.min(min, x);
      max = Math.max(max, x);
    }
    expect(min).toBeGreaterThanOrEqual(-0.25);
    expect(max).toBeLessThan(0.75);
    expect(ksDistance(out, (x) => Math.min(1, Math.max(0, x + 0.25))), `seed ${seed}`).toBeLessThan(ksLimit);
  });

  it('is reproducible from the seed, and different seeds give different streams', () => {
    const a = fillNormalSeeded(new Float32Array(1000), new Rng(42), 1);
    const b = fillNormalSeeded(new Float32Array(1000), new Rng(42), 1);
    const c = fillNormalSeeded(new Float32Array(1000), new Rng(43), 1);
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(a.some((x, i) => x !== c[i])).toBe(true);
    const u1 = fillUniformSeeded(new Float32Array(100), new Rng(7), 0, 1);
    const u2 = fillUniformSeeded(new Float32Array(100), new Rng(7), 0, 1);
    expect(Array.from(u1)).toEqual(Array.from(u2));
  });
});
