import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { benchLayerStep } from './bench-layer-step.js';

describe('benchLayerStep', () => {
  it('times full training steps and reports consistent numbers without leaking tensors', async () => {
    const before = tf.memory().numTensors;
    const steps: number[] = [];
    const r = await benchLayerStep({ layer: { dim: 16, numExperts: 64, heads: 2, topK: 4, dimKey: 8 }, tokens: 24, steps: 3, onStep: (_, ms) => steps.push(ms) });
    expect(tf.memory().numTensors).toBe(before);
    expect(r).toMatchObject({ layer: 'peer', backend: tf.getBackend(), num_experts: 64, dim: 16, heads: 2, topk: 4, dim_key: 8, tokens: 24, steps: 3 });
    expect(r.step_ms).toHaveLength(3);
    expect(steps.map((v) => Math.round(v * 10) / 10)).toEqual(r.step_ms);
    const sorted = [...r.step_ms].sort((a, b) => a - b);
    expect(r.ms_per_step_median).toBe(sorted[1]);
    // tokens/s comes from the unrounded median; ms_per_step_median is rounded to 0.1 ms.
    const relError = Math.abs((r.tokens_per_second * r.ms_per_step_median) / (24 * 1000) - 1);
    // Both numbers are rounded to 0.1: each rounding adds up to 0.05 / value of relative error.
    expect(relError).toBeLessThanOrEqual(0.05 / r.ms_per_step_median + 0.05 / r.tokens_per_second + 1e-9);
    expect(r.table_bytes).toBe(2 * 64 * 16 * 4);
    expect(r.optimizer_state_bytes).toBe(2 * r.table_bytes);
    expect(r.peak_rss_bytes).toBeGreaterThan(r.table_bytes);
    expect(r.rss_ratio).toBeCloseTo(r.peak_rss_bytes / (r.table_bytes + r.optimizer_state_bytes), 2);
    expect(r.ms_per_step_median).toBeGreaterThan(0);
  });

  it('rejects bad options with one clear error', async () => {
    await expect(benchLayerStep({ layer: { dim: 16, numExperts: 64, heads: 2, topK: 4 }, tokens: 1 })).rejects.toThrow('tokens must be an integer >= 2, got 1');
    await expect(benchLayerStep({ layer: { dim: 16, numExperts: 64, heads: 2, topK: 4 }, steps: 0 })).rejects.toThrow('steps must be a positive integer, got 0');
  });
});
