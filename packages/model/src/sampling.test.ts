// Axes: V vocabulary.
import { describe, expect, it } from 'vitest';
import { Rng } from '@peer/backend';
import { expectClose, testRng } from '@peer/test-utils';
import { argmax, sampleToken, samplingProbabilities } from './sampling.js';

describe('sampling', () => {
  it('is greedy at temperature 0 (lowest index on ties)', () => {
    expect(argmax([1, 5, 5, 2])).toBe(1);
    expect(sampleToken([0.1, -3, 2.5, 2.4], { temperature: 0 }, new Rng(1))).toBe(2);
    expect(Array.from(samplingProbabilities([3, 1, 3], { temperature: 0 }))).toEqual([1, 0, 0]);
  });

  it('gives softmax(logits / temperature) over the top k', () => {
    const logits = [2, 0.5, -1, 1.5, 0];
    const p = samplingProbabilities(logits, { temperature: 0.7, topK: 3 });
    const kept = [0, 3, 1];
    const z = kept.reduce((s, i) => s + Math.exp(logits[i]! / 0.7), 0);
    const expected = logits.map((l, i) => (kept.includes(i) ? Math.exp(l / 0.7) / z : 0));
    expectClose(p, expected, { rtol: 1e-12 });
    expectClose(samplingProbabilities(logits, { temperature: 2 }), logits.map((l) => Math.exp(l / 2) / logits.reduce((s, m) => s + Math.exp(m / 2), 0)), { rtol: 1e-12 });
  });

  it('draws with the stated probabilities (frequencies of 20,000 draws)', () => {
    const t = testRng();
    const logits = Array.from({ length: 6 }, () => t.normal());
    const p = samplingProbabilities(logits, { temperature: 1, topK: 4 });
    const rng = new Rng(t.int(1 << 30));
    const n = 20_000;
    const counts = new Float64Array(6);
    for (let i = 0; i < n; i++) counts[sampleToken(logits, { temperature: 1, topK: 4 }, rng)]!++;
    p.forEach((pi, i) => {
      if (pi === 0) expect(counts[i]).toBe(0);
      // 5 standard deviations of a binomial count.
      else expect(Math.abs(counts[i]! - n * pi)).toBeLessThan(5 * Math.sqrt(n * pi * (1 - pi)) + 1);
    });
  });

  it('is reproducible from the seed', () => {
    const logits = [0.3, 0.1, 0.2, 0.4];
    const draw = (seed: number) => {
      const rng = new Rng(seed);
      return Array.from({ length: 50 }, () => sampleToken(logits, { temperature: 1 }, rng));
    };
    expect(draw(7)).toEqual(draw(7));
    expect(draw(7)).not.toEqual(draw(8));
  });
});
