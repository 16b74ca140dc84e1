import { describe, expect, it } from 'vitest';
import { testRng } from '@peer/test-utils';
import { UsageStats } from './usage-stats.js';

describe('UsageStats', () => {
  it('matches a plain float64 computation of usage, KL to uniform, top-1% share and histogram', () => {
    const rng = testRng();
    const n = 1000;
    const stats = new UsageStats(n, { histogramBins: 6, histogramRange: [0.01, 100] });
    const w = new Float64Array(n);
    const hits = new Float64Array(n);
    let retrievals = 0;
    for (let batch = 0; batch < 5; batch++) {
      const m = 300;
      // Skewed: a few popular experts, many rare, some never retrieved.
      const idx = Int32Array.from({ length: m }, () => (rng.float() < 0.3 ? rng.int(20) : rng.int(800)));
      const g = Float32Array.from({ length: m }, () => (rng.float() < 0.05 ? 0 : rng.float()));
      stats.record(idx, g);
      idx.forEach((i, k) => {
        w[i]! += g[k]!;
        hits[i]! += 1;
      });
      retrievals += m;
    }
    const r = stats.report();
    let total = 0;
    for (const x of w) total += x;
    let used = 0;
    let kl = Math.log(n);
    for (const x of w) {
      if (x > 0) {
        used++;
        kl += (x / total) * Math.log(x / total);
      }
    }
    const top = [...w].sort((a, b) => b - a).slice(0, 10).reduce((a, b) => a + b, 0) / total;
    expect(r.count).toBe(n);
    expect(r.usage).toBe(used / n);
    expect(r.unevenness).toBeCloseTo(kl, 10);
    expect(r.top1PercentShare).toBeCloseTo(top, 12);
    expect(Array.from(r.hits)).toEqual(Array.from(hits));
    expect(r.totalWeight).toBeCloseTo(total, 9);
    expect(r.retrievals).toBe(retrievals);
    // Histogram of z * N on log-spaced bins, counted plainly.
    const edges = [0.01, 0.01 * 10 ** (2 / 3), 0.01 * 10 ** (4 / 3), 1, 10 ** (2 / 3), 10 ** (4 / 3), 100];
    r.histogram.edges.forEach((e, i) => expect(e).toBeCloseTo(edges[i]!, 9));
    const counts = new Array(6).fill(0);
    let below = 0;
    let above = 0;
    for (const x of w) {
      if (x === 0) continue;
      const rel = (x / total) * n;
      if (rel < 0.01) below++;
      else if (rel >= 100) above++;
      else counts[edges.findIndex((e, i) => rel >= e && rel < edges[i + 1]!)]++;
    }
    expect(r.histogram.counts).toEqual(counts);
    expect(r.histogram.zeros).toBe(n - used);
    expect(r.histogram.below).toBe(below);
    expect(r.histogram.above).toBe(above);
    expect(r.histogram.zeros + r.histogram.below + r.histogram.above + counts.reduce((a, b) => a + b, 0)).toBe(n);
  });

  it('gives 0 unevenness and 1% top share for perfectly even use, and resets', () => {
    const stats = new UsageStats(200);
    stats.record(Int32Array.from({ length: 200 }, (_, i) => i), new Float32Array(200).fill(0.5));
    const r = stats.report();
    expect(r.usage).toBe(1);
    expect(Math.abs(r.unevenness)).toBeLessThan(1e-12);
    expect(r.top1PercentShare).toBeCloseTo(0.01, 12);
    stats.record(Int32Array.of(0), Float32Array.of(100));
    expect(stats.report().unevenness).toBeGreaterThan(0.5);
    stats.reset();
    const empty = stats.report();
    expect(empty.usage).toBe(0);
    expect(empty.unevenness).toBeNaN();
    expect(empty.retrievals).toBe(0);
  });

  it('refuses bad input with one clear error', () => {
    const stats = new UsageStats(10);
    expect(() => stats.record(Int32Array.of(1, 10), Float32Array.of(1, 1))).toThrow(/indices\[1\] = 10 is out of range \[0, 10\)/);
    expect(() => stats.record(Int32Array.of(1, 2), Float32Array.of(1, -0.5))).toThrow(/weights\[1\] = -0.5/);
    expect(() => stats.record(Int32Array.of(1, 2), Float32Array.of(1, NaN))).toThrow(/weights\[1\] = NaN/);
    expect(() => stats.record(Int32Array.of(1), Float32Array.of(1, 2))).toThrow(/1 indices but 2 weights/);
    expect(() => new UsageStats(0)).toThrow(/numExperts must be a positive integer, got 0/);
    expect(stats.report().retrievals).toBe(0);
  });

  it('measures head overlap as a brute-force count over tokens and heads does', () => {
    const rng = testRng();
    const n = 40;
    for (const [h, k] of [[2, 3], [4, 5], [8, 2]] as const) {
      const stats = new UsageStats(n, { heads: { count: h, perHead: k } });
      let overlapping = 0;
      let total = 0;
      for (let call = 0; call < 4; call++) {
        const tokens = 1 + rng.int(30);
        // each head picks k distinct experts, as a top-k does
        const idx = new Int32Array(tokens * h * k);
        for (let t = 0; t < tokens; t++) {
          for (let a = 0; a < h; a++) {
            const picked = new Set<number>();
            while (picked.size < k) picked.add(rng.int(rng.float() < 0.5 ? 6 : n));
            [...picked].forEach((e, j) => (idx[(t * h + a) * k + j] = e));
          }
        }
        stats.record(idx, Float32Array.from(idx, () => rng.float()));
        for (let t = 0; t < tokens; t++) {
          for (let a = 0; a < h; a++) {
            for (let j = 0; j < k; j++) {
              const e = idx[(t * h + a) * k + j];
              let shared = false;
              for (let b = 0; b < h; b++) if (b !== a) for (let i = 0; i < k; i++) shared ||= idx[(t * h + b) * k + i] === e;
              if (shared) overlapping++;
              total++;
            }
          }
        }
      }
      expect(stats.report().headOverlap).toBe(overlapping / total);
    }
    // heads that copy each other overlap completely; disjoint ones not at all; one head: no overlap reported
    const copy = new UsageStats(10, { heads: { count: 2, perHead: 2 } });
    copy.record(Int32Array.of(1, 2, 2, 1, 5, 6, 7, 8), new Float32Array(8).fill(1));
    expect(copy.report().headOverlap).toBe(0.5);
    copy.reset();
    expect(copy.report().headOverlap).toBeNaN();
    expect(new UsageStats(10, { heads: { count: 1, perHead: 4 } }).report().headOverlap).toBeUndefined();
    expect(new UsageStats(10).report().headOverlap).toBeUndefined();
    expect(() => copy.record(Int32Array.of(1, 2, 3), new Float32Array(3))).toThrow('UsageStats.record: 3 retrievals is not a whole number of tokens of 4 (heads x per head)');
    expect(() => new UsageStats(10, { heads: { count: 2, perHead: 0 } })).toThrow(/heads must be \{ count, perHead \} of positive integers/);
  });

  it('with skipNonFinite leaves out retrievals with a non-finite weight and counts them; negative weights still throw', () => {
    const stats = new UsageStats(4, { skipNonFinite: true });
    stats.record(Int32Array.of(0, 1, 2, 1), Float32Array.of(1, NaN, Infinity, 3));
    const r = stats.report();
    expect(Array.from(r.hits)).toEqual([1, 1, 0, 0]);
    expect(Array.from(r.weights)).toEqual([1, 3, 0, 0]);
    expect(r.retrievals).toBe(2);
    expect(r.skipped).toBe(2);
    expect(() => stats.record(Int32Array.of(0), Float32Array.of(-1))).toThrow(/weights\[0\] = -1/);
  });
});
