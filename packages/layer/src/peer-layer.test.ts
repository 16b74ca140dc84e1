import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { expectClose, testRng } from '@peer/test-utils';
import { PeerLayer } from './peer-layer.js';
import type { PeerLayerConfig } from './config.js';
import { referencePeer, selectionMismatch } from './peer-reference.test-util.js';
import { perturbNorm, randomTensor, referenceConfig, referenceParams, separatedInput } from './layer-params.test-util.js';

const SMALL: PeerLayerConfig = { dim: 16, numExperts: 64, heads: 2, topK: 3, dimKey: 6 };

describe('PeerLayer forward equals a float64 brute-force reference', () => {
  const cases: [string, Partial<PeerLayerConfig>, boolean][] = [
    ['defaults (BN, softmax, gelu), training', {}, true],
    ['defaults, evaluation (running stats)', {}, false],
    ['relu scores, relu experts, shared keys', { scores: 'relu', activation: 'relu', sharedKeys: true }, true],
    ['gelu-tanh, layer norm, candidateK 5', { activation: 'gelu-tanh', queryNorm: 'layer', candidateK: 5 }, true],
    ['no norm, separate experts per head, token and retrieval chunks', { queryNorm: 'none', separateExpertsPerHead: true, tokenChunk: 4, retrievalChunk: 3 }, true],
  ];
  for (const [name, overrides, training] of cases) {
    it(name, () => {
      const rng = testRng();
      const layer = new PeerLayer({ ...SMALL, ...overrides, seed: rng.int(1000) });
      perturbNorm(layer, rng);
      const [b, s] = [2, 5];
      // float32 scores here are accurate to ~1e-6: a 2e-5 gap at the top-k boundary leaves a 20x
      // margin, and experts scoring within 2e-5 of each other may come out in either order.
      const tieTol = 2e-5;
      const { x, refs } = separatedInput(rng, [b, s, SMALL.dim], (x64) => [referencePeer(x64, b * s, referenceParams(layer), referenceConfig(layer), training)], tieTol);
      const ref = refs[0]!;
      const before = tf.memory().numTensors;
      const { y } = layer.apply(x, { training });
      expect(y.shape).toEqual([b, s, SMALL.dim]);
      expectClose(y.dataSync(), ref.y, { rtol: 1e-3, atol: 1e-5, label: `${name} seed ${rng.seed}` });
      const routing = layer.route(x, { training });
      expect(selectionMismatch(routing.indices, ref, layer.config.topK, tieTol), `[${Array.from(routing.indices)}] vs [${Array.from(ref.indices)}] seed ${rng.seed}`).toBe(-1);
      expectClose(routing.weights, ref.weights, { rtol: 1e-4, atol: 1e-6, label: `weights seed ${rng.seed}` });
      y.dispose();
      expect(tf.memory().numTensors).toBe(before);
      x.dispose();
      layer.dispose();
    });
  }
});

describe('PeerLayer input checks and modes', () => {
  it('rejects a badly shaped x and use after dispose, naming what was expected', () => {
    const layer = new PeerLayer(SMALL);
    const bad = tf.zeros([2, 3, 8]) as tf.Tensor3D;
    expect(() => layer.apply(bad, { training: false })).toThrow('x must be a [batch, seq, 16] tensor, got shape [2, 3, 8]');
    bad.dispose();
    layer.dispose();
    const x = tf.zeros([1, 2, 16]) as tf.Tensor3D;
    expect(() => layer.apply(x, { training: false })).toThrow('used after dispose()');
    x.dispose();
  });

  it('moves the BatchNorm running statistics in training only; route() never does', () => {
    const rng = testRng();
    const layer = new PeerLayer({ ...SMALL, seed: rng.int(1000) });
    const x = randomTensor<tf.Rank.R3>(rng, [1, 6, SMALL.dim]);
    const stats = () => Array.from(layer.queryNorm.runningMean!.dataSync());
    const initial = stats();
    layer.route(x, { training: true });
    tf.tidy(() => layer.apply(x, { training: false }));
    expect(stats()).toEqual(initial);
    tf.tidy(() => layer.apply(x, { training: true }));
    expect(stats()).not.toEqual(initial);
    x.dispose();
    layer.dispose();
  });
});
