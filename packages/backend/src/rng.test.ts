import { testRng } from '@peer/test-utils';
import { describe, expect, it } from 'vitest';
import { Rng } from './rng.js';

const N = 200_000;

function meanVar(xs: ArrayLike<number>): { mean: number; variance: number } {
  let m = 0;
  for (let i = 0; i < xs.length; i++) m += xs[i]!;
  m /= xs.length;
  let v = 0;
  for (let i = 0; i < xs.length; i++) v += (xs[i]! - m) ** 2;
  return { mean: m, variance: v / (xs.length - 1) };
}

function draw(n: number, f: () => number): Float64Array {
  return Float64Array.from({ length: n }, f);
}

const freshSeed = () => testRng().int(2 ** 31);

describe('Rng', () => {
  it('the same seed gives the same stream; different seeds differ', () => {
    const seed = freshSeed();
    const a = new Rng(seed);
    const b = new Rng(seed);
    const mixed = (r: Rng) => [r.float(), r.normal(), r.int(1000), r.uniform(-3, 5), r.normal(), r.normal(), r.float()];
    for (let i = 0; i < 100; i++) expect(mixed(b)).toEqual(mixed(a));
    const c = new Rng(seed + 1);
    expect(draw(10, () => c.float())).not.toEqual(draw(10, () => new Rng(seed).float()));
    // Large seeds are folded, not truncated: 2^32 + s differs from s.
    expect(new Rng(2 ** 32 + 7).float()).not.toBe(new Rng(7).float());
  });

  it('state() then new Rng(state) continues exactly, including mid-way through normals', () => {
    const r = new Rng(freshSeed());
    for (let i = 0; i < 37; i++) r.normal(); // odd count: a spare Box-Muller sample is pending
    const restored = new Rng(r.state());
    expect(draw(500, () => restored.normal())).toEqual(draw(500, () => r.normal()));
    expect(draw(500, () => restored.int(17))).toEqual(draw(500, () => r.int(17)));
    // The state is plain data: it survives JSON.
    const again = new Rng(JSON.parse(JSON.stringify(r.state())) as number[]);
    expect(again.float()).toBe(r.float());
  });

  it('normal() has mean 0 and variance 1 within statistical bounds', () => {
    const r = new Rng(freshSeed());
    const { mean, variance } = meanVar(draw(N, () => r.normal()));
    // 6 standard errors: mean se = 1/sqrt(N), variance se = sqrt(2/N).
    expect(Math.abs(mean)).toBeLessThan(6 / Math.sqrt(N));
    expect(Math.abs(variance - 1)).toBeLessThan(6 * Math.sqrt(2 / N));
    // Tails: P(|z| > 2) = 0.0455, binomial se sqrt(p(1-p)/N).
    const xs = draw(N, () => r.normal());
    const tail = xs.filter((x) => Math.abs(x) > 2).length / N;
    expect(Math.abs(tail - 0.0455)).toBeLessThan(6 * Math.sqrt((0.0455 * 0.9545) / N));
  });

  it('float() is uniform on [0, 1): mean 1/2, variance 1/12, never 1', () => {
    const r = new Rng(freshSeed());
    const xs = draw(N, () => r.float());
    expect(Math.min(...xs.subarray(0, 50_000))).toBeGreaterThanOrEqual(0);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    const { mean, variance } = meanVar(xs);
    expect(Math.abs(mean - 0.5)).toBeLessThan(6 * Math.sqrt(1 / 12 / N));
    // Var of the sample variance of U(0,1): (1/80 - 1/144) / N.
    expect(Math.abs(variance - 1 / 12)).toBeLessThan(6 * Math.sqrt((1 / 80 - 1 / 144) / N));
    // 53 random bits: the low bits vary too.
    expect(new Set(xs.subarray(0, 1000).map((x) => (x * 2 ** 53) % 2)).size).toBe(2);
  });

  it('int(n) is uniform over [0, n) (chi-square) and rejects bad n', () => {
    const r = new Rng(freshSeed());
    for (const n of [2, 7, 10, 1000]) {
      const counts = new Float64Array(n);
      const draws = 200 * n;
      let outside = 0;
      for (let i = 0; i < draws; i++) {
        const k = r.int(n);
        if (!(Number.isInteger(k) && k >= 0 && k < n)) outside++;
        else counts[k]!++;
      }
      expect(outside).toBe(0);
      const expected = draws / n;
      const chi2 = counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
      // Chi-square with n - 1 degrees of freedom: its 1 - 1e-6 quantile (Wilson-Hilferty, z = 4.75).
      const df = n - 1;
      const limit = df * (1 - 2 / (9 * df) + 4.75 * Math.sqrt(2 / (9 * df))) ** 3;
      expect(chi2).toBeLessThan(limit);
    }
    expect(() => r.int(0)).toThrow('int(n) needs a positive integer, got 0');
    expect(() => r.int(2.5)).toThrow(/got 2.5/);
  });

  it('fork() gives independent streams: distinct from the parent and each other, uncorrelated', () => {
    const parent = new Rng(freshSeed());
    const a = parent.fork();
    const b = parent.fork();
    const n = 20_000;
    const xs = [draw(n, () => parent.float()), draw(n, () => a.float()), draw(n, () => b.float())];
    for (let i = 0; i < 3; i++) {
      for (let j = i + 1; j < 3; j++) {
        const x = xs[i]!;
        const y = xs[j]!;
        // No shared values at all (they would be if one stream were a shifted copy of another).
        const seen = new Set(x);
        expect(y.filter((v) => seen.has(v)).length).toBe(0);
        let sxy = 0;
        for (let k = 0; k < n; k++) sxy += (x[k]! - 0.5) * (y[k]! - 0.5);
        const corr = sxy / n / (1 / 12);
        expect(Math.abs(corr)).toBeLessThan(6 / Math.sqrt(n));
      }
    }
    // Forking is deterministic too.
    const seed = freshSeed();
    const p1 = new Rng(seed);
    const p2 = new Rng(seed);
    expect(p1.fork().float()).toBe(p2.fork().float());
  });

  it('uniform, fillNormal, fillUniform and shuffle', () => {
    const r = new Rng(freshSeed());
    const us = draw(10_000, () => r.uniform(-2, 3));
    expect(us.every((u) => u >= -2 && u < 3)).toBe(true);
    expect(Math.abs(meanVar(us).mean - 0.5)).toBeLessThan(6 * Math.sqrt(25 / 12 / 10_000));

    const f = r.fillNormal(new Float32Array(N), 3, 0.5);
    const mv = meanVar(f);
    expect(Math.abs(mv.mean - 3)).toBeLessThan(6 * 0.5 / Math.sqrt(N));
    expect(Math.abs(mv.variance - 0.25)).toBeLessThan(6 * 0.25 * Math.sqrt(2 / N));

    const g = r.fillUniform(new Float64Array(1000), 4, 5);
    expect(g.every((x) => x >= 4 && x < 5)).toBe(true);

    const items = Array.from({ length: 50 }, (_, i) => i);
    const shuffled = r.shuffle([...items]) as number[];
    expect([...shuffled].sort((x, y) => x - y)).toEqual(items);
    expect(shuffled).not.toEqual(items);
    // Every position is equally likely for an element: first-slot frequencies over many shuffles.
    const firstCounts = new Float64Array(5);
    for (let t = 0; t < 20_000; t++) firstCounts[(r.shuffle(Int32Array.from([0, 1, 2, 3, 4])) as Int32Array)[0]!]!++;
    for (const c of firstCounts) expect(Math.abs(c / 20_000 - 0.2)).toBeLessThan(6 * Math.sqrt(0.16 / 20_000));
  });

  it('rejects bad seeds and states with the value in the message', () => {
    expect(() => new Rng(1.5)).toThrow('seed must be a safe integer, got 1.5');
    expect(() => new Rng([1, 2, 3])).toThrow('rng state must be 4 integers, got [1,2,3]');
  });
});
