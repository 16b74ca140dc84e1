import { describe, expect, it } from 'vitest';
import { testRng } from '@peer/test-utils';
import { UsageAccumulator, usageReport } from './usage-report.js';

describe('usage report', () => {
  it('computes usage, KL to uniform and top-1% share as defined in the paper', () => {
    const rng = testRng();
    const n = 250;
    const weights = Float64Array.from({ length: n }, () => (rng.float() < 0.2 ? 0 : rng.uniform(0, 3)));
    const hits = Float64Array.from(weights, (w) => (w > 0 ? 1 + rng.int(5) : 0));
    const r = usageReport(weights, hits);
    const total = weights.reduce((a, b) => a + b, 0);
    let kl = 0;
    for (const w of weights) if (w > 0) kl += (w / total) * Math.log(w / total / (1 / n));
    expect(r.count).toBe(n);
    expect(r.usage).toBe(weights.filter((w) => w > 0).length / n);
    expect(r.unevenness).toBeCloseTo(kl, 10);
    const top3 = [...weights].sort((a, b) => b - a).slice(0, 3); // ceil(1% of 250) = 3
    expect(r.top1PercentShare).toBeCloseTo(top3.reduce((a, b) => a + b, 0) / total, 12);
  });

  it('gives 0 unevenness for uniform weights and log N for one target', () => {
    expect(usageReport(new Float64Array(64).fill(2), new Float64Array(64)).unevenness).toBeCloseTo(0, 12);
    const one = new Float64Array(64);
    one[5] = 1;
    const r = usageReport(one, new Float64Array(64));
    expect(r.unevenness).toBeCloseTo(Math.log(64), 12);
    expect(r.usage).toBe(1 / 64);
    expect(r.top1PercentShare).toBe(1);
  });

  it('accumulates only between start and stop', () => {
    const acc = new UsageAccumulator(4);
    acc.add([1], [5]);
    acc.start();
    acc.add([0, 2, 2], [0.5, 0.25, 0.25]);
    acc.add([3], [0]);
    const r = acc.stop();
    expect(Array.from(r.weights)).toEqual([0.5, 0, 0.5, 0]);
    expect(Array.from(r.hits)).toEqual([1, 0, 2, 1]);
    expect(r.usage).toBe(0.5);
    expect(() => acc.stop()).toThrow('stopUsage() called without startUsage()');
  });

  it('rejects negative weights naming the index', () => {
    expect(() => usageReport(Float64Array.of(1, -1), new Float64Array(2))).toThrow('usageReport: weights[1] = -1, router weights must be >= 0');
  });
});
