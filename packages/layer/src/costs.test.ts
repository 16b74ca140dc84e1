import { describe, expect, it } from 'vitest';
import { resolvePeerConfig } from './config.js';
import { peerActiveParams, peerFlops, peerParams } from './costs.js';
import { host } from './layer-params.test-util.js';
import { PeerLayer } from './peer-layer.js';

describe('FLOP and parameter accounting', () => {
  it("follows the spec's cost table at the benchmark config (d 256, h 8, k 16, dk 128, N 1024^2)", () => {
    const c = resolvePeerConfig({ dim: 256, numExperts: 1024 * 1024, heads: 8, topK: 16, dimKey: 128 });
    // Multiply-adds per token from the table, times 2; candidate sums are h k^2 additions.
    const queryProjection = 256 * 8 * 256; // d * h * 2dk
    const subKeys = 8 * 2 * 1024 * 128; // h * 2 * sqrt(N) * dk
    const experts = 2 * 8 * 16 * 256; // 2 * h * k * d
    const flops = peerFlops(c);
    expect(flops).toEqual({
      queryProjection: 2 * queryProjection,
      subKeyScores: 2 * subKeys,
      candidateSums: 8 * 16 * 16,
      experts: 2 * experts,
      total: 2 * (queryProjection + subKeys + experts) + 8 * 256,
    });
    expect(flops.total).toBe(5_376_000);
    const p = peerParams(c);
    expect(p.experts).toBe(2 * 1024 * 1024 * 256);
    expect(p.total).toBe(256 * 2048 + 2 * 2048 + 8 * 2 * 1024 * 128 + 2 * 1024 * 1024 * 256);
    expect(peerActiveParams(c)).toBe(256 * 2048 + 2 * 2048 + 8 * 2 * 1024 * 128 + 2 * 8 * 16 * 256);
  });

  it('counts candidateK^2 sums and shared keys once', () => {
    const c = resolvePeerConfig({ dim: 64, numExperts: 4096, heads: 4, topK: 8, candidateK: 12, sharedKeys: true, queryNorm: 'none' });
    expect(peerFlops(c).candidateSums).toBe(4 * 144);
    expect(peerParams(c)).toMatchObject({ queryNorm: 0, subKeys: 2 * 64 * 32 });
  });

  it("equals the layer's actual parameter count (variables and tables)", () => {
    for (const config of [
      { dim: 16, numExperts: 64, heads: 2, topK: 3, dimKey: 6 },
      { dim: 16, numExperts: 64, heads: 3, topK: 3, sharedKeys: true, separateExpertsPerHead: true, queryNorm: 'layer' as const },
    ]) {
      const layer = new PeerLayer(config);
      const variables = layer.trainableVariables().reduce((n, v) => n + v.size, 0);
      expect(layer.totalParams()).toBe(variables + host(layer).down.data.length + host(layer).up.data.length);
      const c = layer.config;
      expect(layer.flopsPerToken()).toBe(4 * c.dim * c.heads * c.dimKey + 4 * c.heads * c.subKeys * c.dimKey + c.heads * c.candidateK ** 2 + 4 * c.heads * c.topK * c.dim);
      layer.dispose();
    }
  });
});
