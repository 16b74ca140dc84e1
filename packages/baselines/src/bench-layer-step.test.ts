import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { timeLayerStep } from '@peer/feed-forward';
import { BASELINE_KINDS, baselineBenchConfig, benchBaselineLayer, createBaselineLayer } from './bench-layer-step.js';
import { hostValues } from './pkm-host.test-util.js';
import { ProductKeyMemory } from './pkm.js';

describe('timeLayerStep', () => {
  it('runs full training steps: dense variables and the sparse table move, nothing leaks', async () => {
    const layer = new ProductKeyMemory({ dim: 8, memories: 64, heads: 2, topK: 4, valueOptimizer: { lr: 0.1 } });
    const dense = layer.trainableVariables().map((v) => Float32Array.from(v.dataSync()));
    const values = Float32Array.from(hostValues(layer).data);
    const before = tf.memory().numTensors;
    const r = await timeLayerStep(layer, { tokens: 16, steps: 2, warmup: 1 });
    expect(tf.memory().numTensors).toBe(before);
    expect(r).toMatchObject({ layer: 'pkm', dim: 8, tokens: 16, steps: 2, flops_per_token: layer.flopsPerToken(), total_params: layer.totalParams() });
    expect(r.step_ms).toHaveLength(2);
    expect(r.ms_per_step_median).toBeGreaterThan(0);
    // tokens/s comes from the unrounded median; ms_per_step_median is rounded to 0.1 ms.
    const relError = Math.abs((r.tokens_per_second * r.ms_per_step_median) / (16 * 1000) - 1);
    // Both numbers are rounded to 0.1: each rounding adds up to 0.05 / value of relative error.
    expect(relError).toBeLessThanOrEqual(0.05 / r.ms_per_step_median + 0.05 / r.tokens_per_second + 1e-9);
    expect(r.peak_rss_bytes).toBeGreaterThan(0);
    layer.trainableVariables().forEach((v, i) => expect(Array.from(v.dataSync())).not.toEqual(Array.from(dense[i]!)));
    expect(Array.from(hostValues(layer).data)).not.toEqual(Array.from(values));
    expect(layer.valueGrad.size).toBe(0);
    layer.dispose();
  });

  it('builds every baseline at matched active parameters for D = 256', () => {
    const ffw = createBaselineLayer('dense', baselineBenchConfig('dense', 256));
    const target = ffw.activeParamsPerToken();
    expect(target).toBe(2 * 256 * 1024 + 1024 + 256);
    ffw.dispose();
    for (const kind of ['moe', 'moe-ec'] as const) {
      const layer = createBaselineLayer(kind, baselineBenchConfig(kind, 256));
      expect(Math.abs(layer.activeParamsPerToken() / target - 1), kind).toBeLessThan(0.01);
      layer.dispose();
    }
    // PKM's config is checked by arithmetic only: building it allocates 1024^2 rows.
    const c = baselineBenchConfig('pkm', 256);
    const F = 8 * 2 * 24;
    expect(c).toMatchObject({ memories: 1024 * 1024, heads: 8, topK: 32, dimKey: 24 });
    expect(256 * F + 2 * F + 8 * 2 * 1024 * 24 + 8 * 32 * 256).toBe(557824);
    expect(BASELINE_KINDS).toEqual(['dense', 'moe', 'moe-ec', 'pkm']);
  });

  it('benchBaselineLayer applies overrides and rejects an unknown kind or field', async () => {
    const r = await benchBaselineLayer({ layer: 'moe', dim: 8, overrides: { experts: 3, hidden: 5 }, tokens: 12, steps: 1, warmup: 0 });
    expect(r.config).toEqual({ dim: 8, experts: 3, hidden: 5, topK: 1 });
    expect(r.total_params).toBe(8 * 3 + 3 * (2 * 8 * 5 + 5 + 8));
    await expect(benchBaselineLayer({ layer: 'mlp' as never })).rejects.toThrow("benchBaselineLayer: layer must be one of dense, moe, moe-ec, pkm, got \"mlp\"");
    await expect(benchBaselineLayer({ layer: 'moe-ec', dim: 8, overrides: { topK: 2 } })).rejects.toThrow("invalid moe-ec config: unknown field 'topK'");
  });
});
