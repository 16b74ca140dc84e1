import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../config/resolve.js';
import { UsageError } from '../errors.js';
import { buildModel } from '../run/build-model.js';
import { flopsPerStep, formatCount, stepsForBudget, tokensPerStep } from './flops.js';

describe('FLOP accounting', () => {
  it('matches a hand count for the tiny dense model, and a budget buys floor(F / FLOPs per step) steps', () => {
    const { config } = resolveConfig({ preset: 'tiny' });
    // tiny: D = 32, L = 2 blocks, H = 2 heads, S = 32, V = 256 (bytes), dense FFW hidden F = 64; batch B = 4.
    const D = 32, L = 2, S = 32, V = 256, F = 64, B = 4;
    // Forward multiply-adds per token, each counted as 2 FLOPs:
    const qkv = 2 * D * (3 * D); // fused query/key/value projection
    const scores = 2 * S * D; // q . k against S keys, all heads together (H * S * D/H)
    const mix = 2 * S * D; // attention weights times values
    const proj = 2 * D * D; // attention output projection
    const ffw = 2 * D * F + 2 * F * D; // W1 and W2
    const logits = 2 * D * V; // output projection (tied embedding)
    const perToken = L * (qkv + scores + mix + proj + ffw) + logits;
    expect(perToken).toBe(57344);

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
