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
    const x = tf.tensor2d(Float32Array.from(rng.normals(T * V, 2)), [T, V]);
    const targets = tf.tensor1d(Array.from({ length: T }, () => rng.int(V)), 'int32');
    checkGradients((l) => crossEntropy(l as tf.Tensor2D, targets), [x], { eps: 1e-2, rtol: 1e-2, atol: 1e-4, label: `seed ${rng.seed}` });
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
