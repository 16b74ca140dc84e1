// The usage histogram against a plain count: each expert's share times N, placed by scanning the
// log-spaced edges one by one.
import { testRng } from '@peer/test-utils';
import { describe, expect, it } from 'vitest';
import { usageHistogram } from './usage-histogram.js';

function plainHistogram(weights: number[], bins: number, lo: number, hi: number) {
  const n = weights.length;
  const total = weights.reduce((a, b) => a + b, 0);
  const edges = Array.from({ length: bins + 1 }, (_, b) => lo * (hi / lo) ** (b / bins));
  const counts = new Array<number>(bins).fill(0);
  let zeros = 0;
  let below = 0;
  let above = 0;
  for (const w of weights) {
    if (w === 0) {
      zeros++;
      continue;
    }
    const rel = (w / total) * n;
    if (rel < edges[0]!) below++;
    else if (rel >= edges[bins]!) above++;
    else {
      let b = 0;
      while (!(rel >= edges[b]! && rel < edges[b + 1]!)) b++;
      counts[b]!++;
    }
  }
  return { edges, counts, zeros, below, above };
}

describe('usageHistogram', () => {
  it('matches a plain count on random weights with unused experts and outliers', () => {
    const rng = testRng(7);
    const n = 5000;
    const u = rng.uniforms(n, 0, 1);
    const g = rng.normals(n, 2);
    // log-normal weights spanning many decades, 20% zeros, a few huge ones
    const weights = Array.from({ length: n }, (_, i) => (u[i]! < 0.2 ? 0 : Math.exp(3 * g[i]!)));
    for (const [bins, lo, hi] of [
      [24, 1e-3, 1e3],
      [10, 0.1, 10],
    ] as const) {
      const h = usageHistogram(Float64Array.from(weights), { bins, range: [lo, hi] });
      const ref = plainHistogram(weights, bins, lo, hi);
      h.edges.forEach((e, i) => expect(e).toBeCloseTo(ref.edges[i]!, 9));
      expect(h.counts).toEqual(ref.counts);
      expect([h.zeros, h.below, h.above]).toEqual([ref.zeros, ref.below, ref.above]);
      expect(h.zeros + h.below + h.above + h.counts.reduce((a, b) => a + b, 0)).toBe(n);
      expect(h.below + h.above).toBeGreaterThan(0); // the test reaches both ends
    }
  });

  it('uniform weights all land in the bin holding 1; no weight at all counts every expert as unused', () => {
    const h = usageHistogram(new Float64Array(100).fill(0.25), { bins: 6, range: [0.01, 100] });
    // edges 0.01, 0.0464, 0.215, 1, 4.64, ...: 1 is the left edge of bin 3
    expect(h.counts).toEqual([0, 0, 0, 100, 0, 0]);
    expect(usageHistogram(new Float64Array(8)).zeros).toBe(8);
  });

  it('rejects bad options', () => {
    expect(() => usageHistogram([1], { bins: 0 })).toThrow(/bins must be a positive integer, got 0/);
    expect(() => usageHistogram([1], { range: [1, 1] })).toThrow(/range must be \[lo, hi\]/);
  });
});
