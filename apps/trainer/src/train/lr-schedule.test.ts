import { describe, expect, it } from 'vitest';
import { learningRate } from './lr-schedule.js';

describe('learningRate', () => {
  const s = { lr: 1e-3, minLr: 1e-4, warmupSteps: 4, totalSteps: 14 };

  it('ramps linearly during warmup, starting above zero', () => {
    expect(learningRate(0, s)).toBeCloseTo(1e-3 / 5, 15);
    expect(learningRate(3, s)).toBeCloseTo((4 * 1e-3) / 5, 15);
  });

  it('reaches the peak right after warmup and decays by a half cosine to minLr at the last step', () => {
    expect(learningRate(4, s)).toBeCloseTo(1e-3, 15);
    // midpoint of the decay: (4 + 13) / 2 = 8.5; at step 9 progress = 5/9
    const p = 5 / 9;
    expect(learningRate(9, s)).toBeCloseTo(1e-4 + 0.5 * (1 + Math.cos(Math.PI * p)) * 9e-4, 15);
    expect(learningRate(13, s)).toBeCloseTo(1e-4, 15);
    // past the end it stays at minLr
    expect(learningRate(20, s)).toBeCloseTo(1e-4, 15);
  });

  it('is monotone after warmup', () => {
    let prev = Infinity;
    for (let t = 4; t < 14; t++) {
      const lr = learningRate(t, s);
      expect(lr).toBeLessThanOrEqual(prev);
      prev = lr;
    }
  });

  it('handles runs no longer than the warmup', () => {
    expect(learningRate(0, { ...s, totalSteps: 1, warmupSteps: 0 })).toBe(1e-3);
    expect(learningRate(2, { ...s, totalSteps: 3 })).toBeCloseTo((3 * 1e-3) / 5, 15);
  });
});
