import { describe, expect, it } from 'vitest';
import { buildModel } from '../run/build-model.js';
import { resolveConfig } from './resolve.js';

function counts(preset: string) {
  const model = buildModel(resolveConfig({ preset }).config);
  try {
    return { ...model.paramCounts(), flops: model.flopsPerToken(), kinds: model.feedForwards().map((f) => f.kind) };
  } finally {
    model.dispose();
  }
}

describe('comparison presets', () => {
  const dense = counts('dense');

  it.each(['moe', 'moe-ec', 'pkm', 'peer'])('%s replaces the middle FFW and matches the dense active parameters within 15 percent', (preset) => {
    const c = counts(preset);
    expect(c.kinds).toEqual(['dense', 'dense', preset, 'dense']);
    expect(Math.abs(c.activePerToken / dense.activePerToken - 1)).toBeLessThan(0.15);
    expect(Math.abs(c.flops / dense.flops - 1)).toBeLessThan(0.15);
    // more parameters in total: the point of sparse layers
    expect(c.total).toBeGreaterThan(1.5 * dense.total);
  });
});
