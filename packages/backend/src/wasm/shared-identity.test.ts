import * as tf from '@tensorflow/tfjs-core';
import { testRng } from '@peer/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../init-backend.js';
import { isFixInstalled } from './wasm-backend.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: false });
  expect(isFixInstalled(tf.Identity)).toBe(true);
});

describe('Identity on wasm shares the data', () => {
  it('a clone reads the same values without a new buffer, and either tensor outlives the other', () => {
    const rng = testRng();
    const values = Float32Array.from(rng.normals(37 + rng.int(100)));
    // The engine's buffers (numDataIds); tfjs's numBytes counts every tensor, shared or not.
    const before = { tensors: tf.memory().numTensors, ids: tf.engine().backend.numDataIds() };
    const x = tf.tensor1d(values);
    const y = tf.clone(x);
    expect(y.dataId).toBe(x.dataId);
    expect(tf.engine().backend.numDataIds()).toBe(before.ids + 1);
    x.dispose();
    expect(Array.from(y.dataSync())).toEqual(Array.from(values));
    const z = tf.clone(y);
    y.dispose();
    expect(Array.from(z.dataSync())).toEqual(Array.from(values));
    z.dispose();
    expect(tf.memory().numTensors).toBe(before.tensors);
    expect(tf.engine().backend.numDataIds()).toBe(before.ids);
  });

  it('gradients through kernels whose inputs the tape saves (by clones) are unchanged: d sum((a b) * c) / da = c b^T', () => {
    const rng = testRng();
    const [m, k, n] = [3 + rng.int(5), 2 + rng.int(6), 4 + rng.int(5)];
    const [a, b, c] = [
      [m, k],
      [k, n],
      [m, n],
    ].map(([r, s]) => tf.tensor2d(Float32Array.from(rng.normals(r! * s!)), [r!, s!]));
    const before = tf.memory().numTensors;
    const da = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x as tf.Tensor2D, b as tf.Tensor2D), c!)))(a!);
    const got = da.dataSync();
    const [bv, cv] = [b!.dataSync(), c!.dataSync()];
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < k; j++) {
        let ref = 0;
        for (let t = 0; t < n; t++) ref += cv[i * n + t]! * bv[j * n + t]!;
        expect(got[i * k + j]).toBeCloseTo(ref, 4);
      }
    }
    da.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([a!, b!, c!]);
  });
});
