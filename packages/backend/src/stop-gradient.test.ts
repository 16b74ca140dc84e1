import * as tf from '@tensorflow/tfjs-core';
import { expectNoLeaks, testRng } from '@peer/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from './init-backend.js';
import { stopGradient } from './stop-gradient.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: false });
});

describe('stopGradient', () => {
  it('returns the value unchanged', () => {
    const rng = testRng();
    const data = Float32Array.from(rng.normals(24));
    const x = tf.tensor(data, [4, 6]);
    const y = stopGradient(x);
    expect(y.shape).toEqual([4, 6]);
    expect(y.dtype).toBe('float32');
    expect(Array.from(y.dataSync())).toEqual(Array.from(data));
    tf.dispose([x, y]);
  });

  it('passes a zero gradient: d/dx sum(stop(x) * x) = x, not 2x', () => {
    const rng = testRng();
    const data = Float32Array.from(rng.normals(10));
    const x = tf.tensor1d(data);
    const g = tf.tidy(() => tf.grad((v: tf.Tensor) => tf.sum(tf.mul(stopGradient(v), v)))(x).dataSync());
    expect(Array.from(g)).toEqual(Array.from(data));
    const gOnly = tf.tidy(() => tf.grad((v: tf.Tensor) => tf.sum(tf.square(stopGradient(v))))(x).dataSync());
    expect(Array.from(gOnly)).toEqual(new Array(10).fill(0));
    x.dispose();
  });

  it('passes int32 tensors through, so indices computed inside a differentiated function work', () => {
    const ints = tf.tensor1d([3, -1, 7], 'int32');
    const same = stopGradient(ints);
    expect(same.dtype).toBe('int32');
    expect(Array.from(same.dataSync())).toEqual([3, -1, 7]);
    tf.dispose([ints, same]);

    // Gather rows picked by argMax of the differentiated input itself.
    const table = tf.tensor2d([
      [1, 5],
      [4, 2],
      [0, 3],
    ]);
    const g = tf.tidy(() =>
      tf.grad((t: tf.Tensor) => {
        const pick = stopGradient(tf.argMax(t, 1));
        return tf.sum(tf.gather(tf.reshape(t, [6]), tf.add(pick, tf.tensor1d([0, 2, 4], 'int32'))));
      })(table).dataSync(),
    );
    // d/dt of sum of each row's max: one 1 per row at the argmax.
    expect(Array.from(g)).toEqual([0, 1, 1, 0, 0, 1]);
    table.dispose();
  });

  it('leaks no tensors', async () => {
    const x = tf.randomNormal([5, 5]);
    await expectNoLeaks(() => tf.tidy(() => tf.grad((v: tf.Tensor) => tf.sum(tf.mul(stopGradient(v), v)))(x).dataSync()));
    x.dispose();
  });
});
