import { describe, expect, it } from 'vitest';
import { PeerConfigError, resolvePeerConfig } from './config.js';
import { PeerLayer } from './peer-layer.js';

describe('PEER layer config', () => {
  it("fills the paper's defaults", () => {
    const c = resolvePeerConfig({ dim: 256 });
    expect(c).toMatchObject({
      numExperts: 1024 * 1024,
      heads: 8,
      topK: 16,
      dimKey: 128,
      candidateK: 16,
      scores: 'softmax',
      queryNorm: 'batch',
      activation: 'gelu',
      sharedKeys: false,
      separateExpertsPerHead: false,
      dropout: 0,
      subKeys: 1024,
      tableRows: 1024 * 1024,
    });
    expect(c.expertOptimizer).toMatchObject({ kind: 'adam', lr: 1e-3 });
    expect(resolvePeerConfig({ dim: 8, numExperts: 16, heads: 2, separateExpertsPerHead: true, topK: 2 }).tableRows).toBe(32);
  });

  // Each bad config gives one error naming the field and its value.
  const bad: [string, Record<string, unknown>, string][] = [
    ['N not square', { dim: 8, numExperts: 1000 }, 'numExperts = 1000: must be a perfect square'],
    ['k > sqrt(N)', { dim: 8, numExperts: 64, topK: 9 }, 'topK = 9: must be at most sqrt(numExperts) = 8'],
    ['d odd', { dim: 7, numExperts: 64, topK: 4 }, 'dim = 7: must be even'],
    ['negative heads', { dim: 8, numExperts: 64, heads: -2 }, 'heads = -2:'],
    ['negative dim', { dim: -8 }, 'dim = -8:'],
    ['zero topK', { dim: 8, numExperts: 64, topK: 0 }, 'topK = 0:'],
    ['fractional dimKey', { dim: 8, numExperts: 64, topK: 4, dimKey: 2.5 }, 'dimKey = 2.5:'],
    ['candidateK below topK', { dim: 8, numExperts: 64, topK: 4, candidateK: 3 }, 'candidateK = 3: must be at least topK = 4'],
    ['candidateK above sqrt(N)', { dim: 8, numExperts: 64, topK: 4, candidateK: 9 }, 'candidateK = 9: must be at most sqrt(numExperts) = 8'],
    ['unknown activation', { dim: 8, numExperts: 64, topK: 4, activation: 'swish' }, 'activation = "swish":'],
    ['dropout 1', { dim: 8, numExperts: 64, topK: 4, dropout: 1 }, 'dropout = 1:'],
    ['unknown field', { dim: 8, numExperts: 64, topK: 4, expertz: 3 }, 'expertz = 3: unknown field'],
    ['bad optimizer lr', { dim: 8, numExperts: 64, topK: 4, expertOptimizer: { lr: -1 } }, 'expertOptimizer.lr = -1:'],
    ['missing dim', { numExperts: 64 }, 'dim = undefined:'],
  ];
  for (const [label, config, message] of bad) {
    it(`rejects ${label} with one clear error`, () => {
      let error: unknown;
      try {
        new PeerLayer(config as never);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(PeerConfigError);
      const text = (error as Error).message;
      expect(text).toContain(message);
      // One problem per error, not a list.
      expect(text.startsWith('invalid PEER layer config: ')).toBe(true);
      expect(text).not.toContain(';');
    });
  }
});
