// The layer at the benchmark's shape (d 256, h 8, k 16, dk 128, N = 128^2: SIMD row and column
// kernels at full width) against the float64 brute-force reference, on a few tokens.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { expectClose, testRng } from '@peer/test-utils';
import { PeerLayer } from './peer-layer.js';
import { referencePeer } from './peer-reference.test-util.js';
import { perturbNorm, randomTensor, referenceConfig, referenceParams } from './layer-params.test-util.js';

describe('PeerLayer at the benchmark shape', () => {
  it('forward (training and evaluation) equals the float64 brute-force reference over all 16,384 keys', () => {
    const rng = testRng();
    const layer = new PeerLayer({ dim: 256, numExperts: 128 * 128, heads: 8, topK: 16, dimKey: 128, seed: rng.int(1000) });
    perturbNorm(layer, rng);
    const params = referenceParams(layer);
    const cfg = referenceConfig(layer);
    // Inputs whose top-k boundaries are not near-ties (there float32 may pick another k-th expert).
    // float32 scores here are accurate to ~1e-6, so a 2e-5 gap leaves a 20x margin; with 96
    // boundaries per draw a near-tie is common enough that several draws may be needed.
    const minGap = 2e-5;
    let x = randomTensor<tf.Rank.R3>(rng, [1, 12, 256]);
    let refs = [false, true].map((training) => referencePeer(Float64Array.from(x.dataSync()), 12, params, cfg, training));
    for (let tries = 0; refs.some((r) => r.boundaryGap < minGap) && tries < 10; tries++) {
      x.dispose();
      x = randomTensor<tf.Rank.R3>(rng, [1, 12, 256]);
      refs = [false, true].map((training) => referencePeer(Float64Array.from(x.dataSync()), 12, params, cfg, training));
    }
    for (const training of [false, true]) {
      const ref = refs[Number(training)]!;
      expect(ref.boundaryGap).toBeGreaterThan(minGap);
      const y = tf.tidy(() => layer.apply(x, { training }).y.dataSync());
      expectClose(y, ref.y, { rtol: 2e-3, atol: 2e-5, label: `training ${training} seed ${rng.seed}` });
      expect(Array.from(layer.route(x, { training }).indices)).toEqual(Array.from(ref.indices));
    }
    x.dispose();
    layer.dispose();
  });
});
