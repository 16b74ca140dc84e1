// Axes: T tokens, V vocabulary.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { checkGradients, expectClose, expectNoLeaks, testRng } from '@peer/test-utils';
import { crossEntropy } from './cross-entropy.js';

describe('crossEntropy', () => {
  it('matches the float64 log-softmax loss, also for huge logits', () => {
    const rng = testRng();
    const [T, V] = [6, 9];
    const logits = rng.normals(T * V, 4).map((v, i) => (i < V ? v + 1e4 : v)); // row 0 would overflow a naive softmax
    const targets = Array.from({ length: T }, () => rng.int(V));
    let expected = 0;
    for (let t = 0; t < T; t++) {
      const row = logits.subarray(t * V, (t + 1) * V);
      const max = Math.max(...row);
      expected += max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0)) - row[targets[t]!]!;
    }
    expected /= T;
    const loss = tf.tidy(() => crossEntropy(tf.tensor2d(Float32Array.from(logits), [T, V]), tf.tensor1d(targets, 'int32')));
    expect(Number.isFinite(loss.dataSync()[0])).toBe(true);
    expectClose(loss.dataSync(), [expected], { rtol: 1e-4, label: `seed ${rng.seed}` });
    loss.dispose();
  });

  it('has the gradient (softmax - onehot) / T, checked by finite differences', () => {
    const rng = testRng();
    const [T, V] = [4, 7];
    const values = Float32Array.from(rng.normals(T * V, 2));
    const x = tf.tensor2d(values, [T, V]);
    const targets = tf.tensor1d(Array.from({ length: T }, () => rng.int(V)), 'int32');
    // A float32 evaluation of the loss is within about (V + 4) u (u = 2^-24) of its mass: per row
    // the max, log-sum-exp - max (at most log V) and target logit, averaged over rows. The
    // extrapolated central difference at step eps multiplies that noise by 3 / eps: at eps 0.1 it
    // stays far below the gradients (about 1 / (T V)), and the extrapolation's eps^4 truncation
    // error below 1e-6 (an eps of 1e-2 let the noise reach half of the former atol 1e-4).
    const eps = 0.1;
    let mass = 0;
    for (let t = 0; t < T; t++) mass += (2 * Math.max(...Array.from(values.subarray(t * V, (t + 1) * V), Math.abs)) + Math.log(V)) / T;
    const atol = (3 * (V + 4) * 2 ** -24 * mass) / eps;
    checkGradients((l) => crossEntropy(l as tf.Tensor2D, targets), [x], { eps, rtol: 1e-2, atol, label: `seed ${rng.seed}` });
    tf.dispose([x, targets]);
  });

  it('rejects targets of the wrong shape or dtype, and leaks nothing', async () => {
    const x = tf.zeros([3, 4]) as tf.Tensor2D;
    const bad = tf.tensor1d([0, 1], 'int32');
    const floats = tf.tensor1d([0, 1, 2]);
    expect(() => crossEntropy(x, bad)).toThrow('targets must be int32 [3], got int32 [2]');
    expect(() => crossEntropy(x, floats)).toThrow('got float32 [3]');
    const good = tf.tensor1d([0, 1, 3], 'int32');
    await expectNoLeaks(() => tf.grad((l: tf.Tensor) => crossEntropy(l as tf.Tensor2D, good))(x).dispose());
    tf.dispose([x, bad, floats, good]);
  });
});
