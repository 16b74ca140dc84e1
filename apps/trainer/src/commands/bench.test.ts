// bench layer: one JSON object per layer with the timing fields, the layer's cost numbers and its
// config (the flags reach the layer); flags that do not apply and unknown layers are usage errors.
import * as tf from '@tensorflow/tfjs-core';
import { createBaselineLayer, type BaselineKind } from '@peer/baselines';
import { describe, expect, it } from 'vitest';
import { benchLayerCommand, benchLayerConfig, type BenchLayerOptions } from './bench.js';

const small = { dim: 32, tokens: 64, steps: 2, warmup: 1, json: true };

async function bench(options: Partial<BenchLayerOptions> & { layer: string }) {
  let printed = '';
  const result = await benchLayerCommand({ ...small, ...options }, (t) => (printed += t));
  expect(printed.endsWith('\n')).toBe(true);
  expect(JSON.parse(printed)).toEqual(JSON.parse(JSON.stringify(result)));
  expect(result.layer).toBe(options.layer);
  expect(result.backend).toBe(tf.getBackend());
  expect(result.dim).toBe(32);
  expect(result.tokens).toBe(64);
  expect(result.steps).toBe(2);
  expect(result.ms_per_step_median).toBeGreaterThan(0);
  expect(result.cpu_ms_per_step_median).toBeGreaterThanOrEqual(0);
  // tokens/s is the median step's (the step time is rounded to 0.1 ms)
  const expected = (64 * 1000) / result.ms_per_step_median;
  expect(Math.abs(result.tokens_per_second - expected) / expected).toBeLessThan(0.06 / result.ms_per_step_median + 1e-3);
  expect(result.peak_rss_bytes).toBeGreaterThan(10 * 2 ** 20);
  expect(result.peak_rss_bytes).toBeLessThanOrEqual(process.resourceUsage().maxRSS * 1024);
  expect(result.active_params_per_token).toBeLessThanOrEqual(result.total_params);
  return result;
}

describe('peer-train bench layer', () => {
  it('peer: the flags set the layer; FLOPs per token as hand-counted', async () => {
    const r = await bench({ layer: 'peer', experts: 256, heads: 2, topk: 4, dimKey: 16 });
    expect(r.config).toMatchObject({ numExperts: 256, heads: 2, topK: 4, dimKey: 16, dim: 32 });
    // 2 d h 2dk + 2 h 2 sqrt(N) dk + h k^2 + 2 (2 h k d) = 4096 + 2048 + 32 + 1024
    expect(r.flops_per_token).toBe(7200);
    // u and v tables (2 N d) + query projection (d h 2dk) + BN (2 h 2dk) + sub-keys (h 2 sqrt(N) dk)
    expect(r.total_params).toBe(2 * 256 * 32 + 32 * 2 * 32 + 2 * 2 * 32 + 2 * 2 * 16 * 16);
  });

  for (const [layer, flags, expected] of [
    ['dense', {}, { dim: 32 }],
    ['moe', { experts: 4, topk: 2 }, { experts: 4, topK: 2 }],
    ['moe-ec', { experts: 4 }, { experts: 4 }],
    ['pkm', { experts: 256, heads: 2, topk: 4, dimKey: 8 }, { memories: 256, heads: 2, topK: 4, dimKey: 8 }],
  ] as const) {
    it(`${layer}: the flags set the layer; its own cost numbers`, async () => {
      const r = await bench({ layer, ...flags, set: layer === 'dense' ? ['hidden=48'] : [] });
      expect(r.config).toMatchObject(expected);
      if (layer === 'dense') expect(r.config.hidden).toBe(48);
      const built = createBaselineLayer(layer as BaselineKind, r.config);
      try {
        expect(r.flops_per_token).toBe(built.flopsPerToken());
        expect(r.active_params_per_token).toBe(built.activeParamsPerToken());
        expect(r.total_params).toBe(built.totalParams());
      } finally {
        built.dispose();
      }
    });
  }

  it('accepts the old --layer ffw as dense, with a deprecation warning', () => {
    const writes: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((text: string) => writes.push(text)) as never;
    try {
      expect(benchLayerConfig({ layer: 'ffw', set: ['hidden=48'] })).toEqual({ kind: 'dense', fields: { hidden: 48 } });
    } finally {
      process.stderr.write = write;
    }
    expect(writes).toEqual(['peer-train: bench layer: --layer ffw is deprecated, use --layer dense\n']);
  });

  it('bad input: unknown layer, flags that do not apply, bad settings', async () => {
    expect(() => benchLayerConfig({ layer: 'mlp' })).toThrow(/^bench layer: unknown --layer 'mlp': expected one of peer, dense, moe, moe-ec, pkm$/);
    expect(() => benchLayerConfig({ layer: 'dense', experts: 4 })).toThrow(/^bench layer: --experts does not apply to --layer dense/);
    expect(() => benchLayerConfig({ layer: 'moe-ec', topk: 2 })).toThrow(/^bench layer: --topk does not apply to --layer moe-ec \(it takes --experts;/);
    expect(() => benchLayerConfig({ layer: 'peer', set: ['topk=3'] })).toThrow(/^bench layer --layer peer: invalid PEER layer config: topk = "3": unknown setting/);
    expect(() => benchLayerConfig({ layer: 'moe', set: ['a.b=1'] })).toThrow(/expected a top-level field/);
    await expect(benchLayerCommand({ layer: 'peer', experts: 300, dim: 32 }, () => {})).rejects.toThrow(/numExperts = 300: must be a perfect square/);
    await expect(benchLayerCommand({ layer: 'moe', experts: 4, topk: 5, dim: 32 }, () => {})).rejects.toThrow(/^bench layer --layer moe: .*topK/);
  });
});
