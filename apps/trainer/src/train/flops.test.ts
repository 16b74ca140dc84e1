import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../config/resolve.js';
import { UsageError } from '../errors.js';
import { buildModel } from '../run/build-model.js';
import { flopsPerStep, formatCount, stepsForBudget, tokensPerStep } from './flops.js';

describe('FLOP accounting', () => {
  // tiny: D = 32, L = 2 blocks, S = 32, V = 256 (bytes), batch B = 4; block 0 dense FFW (F = 64),
  // block 1 PEER (N = 16^2, h = 2 heads, k = 4, dk = 16). Forward multiply-adds per token, 2 FLOPs each.
  const D = 32, L = 2, S = 32, V = 256, F = 64, B = 4;
  const attention = 2 * D * (3 * D) /* fused q, k, v */ + 2 * S * D /* q . k over S keys, all heads */ + 2 * S * D /* weights x values */ + 2 * D * D; /* output */
  const dense = 2 * D * F + 2 * F * D; // W1, W2
  const logits = 2 * D * V; // tied output projection
  const h = 2, k = 4, dk = 16, sqrtN = 16;
  const peer = 2 * D * (h * 2 * dk) /* query */ + 2 * h * 2 * sqrtN * dk /* sub-key scores */ + h * k * k /* k^2 candidate sums */ + 2 * (2 * h * k * D); /* u.x and v */

  it('matches a hand count for the tiny PEER model, and a budget buys floor(F / FLOPs per step) steps', () => {
    const { config } = resolveConfig({ preset: 'tiny' });
    const perToken = L * attention + dense + peer + logits;
    expect(perToken).toBe(56352);
    const model = buildModel(config);
    try {
      expect(model.flopsPerToken()).toBe(perToken);
      const tokens = tokensPerStep(config.data);
      expect(tokens).toBe(B * S);
      const step = flopsPerStep(model.flopsPerToken(), tokens);
      // training = forward + backward (2x forward)
      expect(step).toBe(3 * perToken * B * S);
      expect(stepsForBudget(10 * step, step)).toBe(10);
      expect(stepsForBudget(10.999 * step, step)).toBe(10);
      expect(stepsForBudget(step, step)).toBe(1);
      // parameters: embedding, 2 blocks of norms + attention, final norm, dense FFW with biases, PEER
      const blocks = L * (2 * 2 * D + 4 * D * D);
      const denseParams = D * F + F + F * D + D;
      const peerQuery = D * h * 2 * dk + 2 * h * 2 * dk; // Wq + BatchNorm gamma, beta
      const subKeys = h * 2 * sqrtN * dk;
      const total = V * D + blocks + 2 * D + denseParams + peerQuery + subKeys + 2 * sqrtN * sqrtN * D;
      const active = total - 2 * sqrtN * sqrtN * D + 2 * h * k * D;
      expect(model.paramCounts()).toEqual({ total, activePerToken: active, embedding: V * D });
    } finally {
      model.dispose();
    }
  });

  it('matches a hand count for the dense variant', () => {
    const { config } = resolveConfig({ preset: 'tiny', flags: { ffw: 'dense' }, sets: ['model.ffw.hidden=64'] });
    const model = buildModel(config);
    try {
      expect(model.flopsPerToken()).toBe(L * (attention + dense) + logits);
      expect(model.flopsPerToken()).toBe(57344);
    } finally {
      model.dispose();
    }
  });

  it('refuses a budget below one step, naming the key and both numbers', () => {
    expect(() => stepsForBudget(1e6, 2e6)).toThrow(UsageError);
    expect(() => stepsForBudget(1e6, 2e6)).toThrow('train.flops = 1.000e+6 is less than one training step of this model (2.000e+6 FLOPs)');
  });

  it('formats counts', () => {
    expect(formatCount(57344)).toBe('57.3k');
    expect(formatCount(6e18)).toBe('6.00E');
    expect(formatCount(12)).toBe('12');
  });
});
