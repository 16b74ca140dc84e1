import { describe, expect, it } from 'vitest';
import { testRng } from './rng.js';

describe('testRng', () => {
  it('replays from its seed and is fresh without one', () => {
    const a = testRng();
    const b = testRng(a.seed);
    expect(Array.from(b.normals(20))).toEqual(Array.from(a.normals(20)));
    // PEER_TEST_SEED pins every unseeded rng (to replay a failure).
    if (!process.env.PEER_TEST_SEED) expect(testRng().seed === testRng().seed && testRng().seed === testRng().seed).toBe(false);
  });

  it('normals, uniforms and int have the right distributions', () => {
    const r = testRng();
    const n = 100_000;
    const xs = r.normals(n, 2);
    const mean = xs.reduce((s, v) => s + v, 0) / n;
    const variance = xs.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1);
    expect(Math.abs(mean)).toBeLessThan((6 * 2) / Math.sqrt(n));
    expect(Math.abs(variance - 4)).toBeLessThan(6 * 4 * Math.sqrt(2 / n));
    const us = r.uniforms(n, -1, 3);
    expect(us.every((u) => u >= -1 && u < 3)).toBe(true);
    expect(Math.abs(us.reduce((s, v) => s + v, 0) / n - 1)).toBeLessThan(6 * Math.sqrt(16 / 12 / n));
    const counts = [0, 0, 0];
    for (let i = 0; i < 30_000; i++) counts[r.int(3)]!++;
    for (const c of counts) expect(Math.abs(c / 30_000 - 1 / 3)).toBeLessThan(6 * Math.sqrt(2 / 9 / 30_000));
  });
});
