import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { expectClose, testRng } from '@peer/test-utils';
import { PeerLayer } from './peer-layer.js';
import type { PeerLayerConfig } from './config.js';
import { referencePeer } from './test-reference.js';
import { perturbNorm, randomTensor, referenceConfig, referenceParams } from './test-helpers.js';

const SMALL: PeerLayerConfig = { dim: 16, numExperts: 64, heads: 2, topK: 3, dimKey: 6 };

describe('PeerLayer forward equals a float64 brute-force reference', () => {
  const cases: [string, Partial<PeerLayerConfig>, boolean][] = [
    ['defaults (BN, softmax, gelu), training', {}, true],
    ['defaults, evaluation (running stats)', {}, false],
    ['relu scores, relu experts, shared keys', { scores: 'relu', activation: 'relu', sharedKeys: true }, true],
    ['gelu-tanh, layer norm, candidateK 5', { activation: 'gelu-tanh', queryNorm: 'layer', candidateK: 5 }, true],
    ['no norm, separate experts per head, token chunks', { queryNorm: 'none', separateExpertsPerHead: true, tokenChunk: 4 }, true],
  ];
  for (const [name, overrides, training] of cases) {
    it(name, () => {
      const rng = testRng();
      const layer = new PeerLayer({ ...SMALL, ...overrides, seed: rng.int(1000) });
      perturbNorm(layer, rng);
      const [b, s] = [2, 5];
      const x = randomTensor<tf.Rank.R3>(rng, [b, s, SMALL.dim]);
      const ref = referencePeer(Float64Array.from(x.dataSync()), b * s, referenceParams(layer), referenceConfig(layer), training);
      const before = tf.memory().numTensors;
      const { y } = layer.apply(x, { training });
      expect(y.shape).toEqual([b, s, SMALL.dim]);
      expectClose(y.dataSync(), ref.y, { rtol: 1e-3, atol: 1e-5, label: `${name} seed ${rng.seed}` });
      const routing = layer.route(x, { training });
      expect(Array.from(routing.indices)).toEqual(Array.from(ref.indices));
      expectClose(routing.weights, ref.weights, { rtol: 1e-4, atol: 1e-6, label: `weights seed ${rng.seed}` });
      y.dispose();
      expect(tf.memory().numTensors).toBe(before);
      x.dispose();
      layer.dispose();
    });
  }
});
