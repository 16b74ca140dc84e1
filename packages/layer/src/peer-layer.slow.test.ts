// The layer at the benchmark's shape (d 256, h 8, k 16, dk 128, N = 128^2: SIMD row and column
// kernels at full width) against the float64 brute-force reference, on a few tokens.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { expectClose, testRng } from '@peer/test-utils';
import { PeerLayer } from './peer-layer.js';
import { referencePeer, selectionMismatch } from './peer-reference.test-util.js';
import { perturbNorm, referenceConfig, referenceParams, separatedInput } from './layer-params.test-util.js';

describe('PeerLayer at the benchmark shape', () => {
  it('forward (training and evaluation) equals the float64 brute-force reference over all 16,384 keys', () => {
    const rng = testRng();
    const layer = new PeerLayer({ dim: 256, numExperts: 128 * 128, heads: 8, topK: 16, dimKey: 128, seed: rng.int(1000) });
    perturbNorm(layer, rng);
    const params = referenceParams(layer);
    const cfg = referenceConfig(layer);
    // Inputs whose top-k boundaries are not near-ties (there float32 may pick another k-th expert).
    // float32 scores here are accurate to ~1e-6, so a 2e-5 gap leaves a 20x margin; with 96
    // boundaries per draw a near-tie is common enough that several draws may be needed. Inside the
    // top 16 of 16,384 scores near-ties are common too: experts within 2e-5 may come out in either order.
    const minGap = 2e-5;
    const { x, refs } = separatedInput(rng, [1, 12, 256], (x64) => [false, true].map((training) => referencePeer(x64, 12, params, cfg, training)), minGap);
    for (const training of [false, true]) {
      const ref = refs[Number(training)]!;
      const y = tf.tidy(() => layer.apply(x, { training }).y.dataSync());
      expectClose(y, ref.y, { rtol: 2e-3, atol: 2e-5, label: `training ${training} seed ${rng.seed}` });
      expect(selectionMismatch(layer.route(x, { training }).indices, ref, 16, minGap), `training ${training} seed ${rng.seed}`).toBe(-1);
    }
    x.dispose();
    layer.dispose();
  });
});
