// Axes: T rows, D features.
import * as tf from '@tensorflow/tfjs-core';
import { describe, it } from 'vitest';
import { checkGradients, expectClose, expectNoLeaks, testRng } from '@peer/test-utils';
import { layerNorm, rmsNorm } from './norm.js';

function reference(x: Float64Array, T: number, D: number, gamma: Float64Array, beta: Float64Array | undefined, eps: number): Float64Array {
  const y = new Float64Array(T * D);
  for (let t = 0; t < T; t++) {
    const row = x.subarray(t * D, (t + 1) * D);
    const mean = beta ? row.reduce((s, v) => s + v, 0) / D : 0;
    const second = row.reduce((s, v) => s + (v - mean) ** 2, 0) / D;
    for (let d = 0; d < D; d++) y[t * D + d] = ((row[d]! - mean) / Math.sqrt(second + eps)) * gamma[d]! + (beta ? beta[d]! : 0);
  }
  return y;
}

describe.each(['layernorm', 'rmsnorm'] as const)('%s', (kind) => {
  const apply = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, eps = 1e-5) =>
    kind === 'layernorm' ? layerNorm(x as tf.Tensor2D, g as tf.Tensor1D, b as tf.Tensor1D, eps) : rmsNorm(x as tf.Tensor2D, g as tf.Tensor1D, eps);

  it('matches the float64 reference', () => {
    const rng = testRng();
    const [T, D] = [7, 10];
    const x = rng.normals(T * D, 3).map((v, i) => v + (i % D === 0 ? 5 : 0));
    const gamma = rng.normals(D);
    const beta = rng.normals(D);
    const y = tf.tidy(() => apply(tf.tensor2d(Float32Array.from(x), [T, D]), tf.tensor1d(Float32Array.from(gamma)), tf.tensor1d(Float32Array.from(beta)), 1e-3));
    expectClose(y.dataSync(), reference(x, T, D, gamma, kind === 'layernorm' ? beta : undefined, 1e-3), { rtol: 1e-4, atol: 1e-5, label: `seed ${rng.seed}` });
    y.dispose();
  });

  it('has gradients that pass the finite-difference check', () => {
    const rng = testRng();
    const [T, D] = [5, 6];
    const xs = [rng.normals(T * D), rng.normals(D), rng.normals(D)].map((v, i) => (i === 0 ? tf.tensor2d(Float32Array.from(v), [T, D]) : tf.tensor1d(Float32Array.from(v))));
    const r = tf.tensor2d(Float32Array.from(rng.normals(T * D)), [T, D]);
    const inputs = kind === 'layernorm' ? xs : xs.slice(0, 2);
    checkGradients((x, g, b) => tf.sum(tf.mul(apply(x!, g!, b ?? xs[2]!), r)), inputs, { label: `seed ${rng.seed}` });
    tf.dispose([...xs, r]);
  });

  it('leaks no tensors', async () => {
    const x = tf.randomNormal([4, 8]);
    const g = tf.ones([8]);
    const b = tf.zeros([8]);
    const inputs = kind === 'layernorm' ? [x, g, b] : [x, g];
    await expectNoLeaks(() => tf.dispose(tf.grads((xi, gi, bi) => tf.sum(apply(xi!, gi!, bi ?? b)))(inputs)));
    tf.dispose([x, g, b]);
  });
});
