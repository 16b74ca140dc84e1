// Axes: T rows, I inputs, O outputs.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, it } from 'vitest';
import { checkGradients, expectClose, expectNoLeaks, testRng } from '@peer/test-utils';
import { initBackend } from '../init-backend.js';
import { linear } from './linear.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: false });
});

describe('linear', () => {
  it.each([
    [5, 3, 7],
    [5, 7, 3],
    [4, 6, 6],
  ])('matches the float64 product and passes the finite-difference check (T %i, I %i, O %i)', (T, I, O) => {
    const rng = testRng();
    const x = rng.normals(T * I);
    const w = rng.normals(I * O);
    const expected = new Float64Array(T * O);
    for (let t = 0; t < T; t++) for (let o = 0; o < O; o++) for (let i = 0; i < I; i++) expected[t * O + o]! += x[t * I + i]! * w[i * O + o]!;
    const xt = tf.tensor2d(Float32Array.from(x), [T, I]);
    const wt = tf.tensor2d(Float32Array.from(w), [I, O]);
    const y = linear(xt, wt);
    expectClose(y.dataSync(), expected, { rtol: 1e-5, atol: 1e-6, label: `seed ${rng.seed}` });
    const r = tf.tensor2d(Float32Array.from(rng.normals(T * O)), [T, O]);
    // The loss is linear in each coordinate, so a central difference has no truncation error at any
    // step: a step of 0.5 divides the float32 noise of the loss (at 1e-2, extrapolated, it reached a
    // third of the atol) without biasing the estimate.
    checkGradients((a, b) => tf.sum(tf.mul(linear(a as tf.Tensor2D, b as tf.Tensor2D), r)), [xt, wt], { eps: 0.5, richardson: false, label: `seed ${rng.seed}` });
    tf.dispose([xt, wt, y, r]);
  });

  it('leaks no tensors', async () => {
    const x = tf.randomNormal([6, 4]) as tf.Tensor2D;
    const w = tf.randomNormal([4, 9]) as tf.Tensor2D;
    await expectNoLeaks(() => tf.dispose(tf.grads((a, b) => tf.sum(linear(a as tf.Tensor2D, b as tf.Tensor2D)))([x, w])));
    tf.dispose([x, w]);
  });
});
