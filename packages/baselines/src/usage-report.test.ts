import { describe, expect, it } from 'vitest';
import { testRng } from '@peer/test-utils';
import { UsageAccumulator } from './usage-report.js';

describe('UsageAccumulator', () => {
  it('accumulates only between start and stop, with the paper metrics', () => {
    const acc = new UsageAccumulator(4);
    acc.add(Int32Array.of(1), Float32Array.of(5));
    expect(acc.active).toBe(false);
    acc.start();
    acc.add(Int32Array.of(0, 2, 2), Float32Array.of(0.5, 0.25, 0.25));
    acc.add(Int32Array.of(3), Float32Array.of(0));
    const r = acc.stop();
    expect(Array.from(r.weights)).toEqual([0.5, 0, 0.5, 0]);
    expect(Array.from(r.hits)).toEqual([1, 0, 2, 1]);
    expect(r.usage).toBe(0.5);
    // z = (1/2, 0, 1/2, 0): KL to uniform = log 4 + 2 * (1/2) log(1/2) = log 2
    expect(r.unevenness).toBeCloseTo(Math.log(2), 12);
    expect(r.top1PercentShare).toBeCloseTo(0.5, 12);
    expect(() => acc.stop()).toThrow('stopUsage() called without startUsage()');
  });

  it('restarts from zero', () => {
    const rng = testRng();
    const acc = new UsageAccumulator(10);
    acc.start();
    acc.add(Int32Array.of(rng.int(10)), Float32Array.of(1));
    acc.start();
    const w = rng.uniform(0.1, 1);
    acc.add(Int32Array.of(7), Float32Array.of(w));
    const r = acc.stop();
    expect(r.weights.reduce((a, b) => a + b, 0)).toBeCloseTo(w, 6);
    expect(r.usage).toBe(0.1);
  });
});
