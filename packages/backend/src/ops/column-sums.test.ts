// Axes: T rows, D features.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectClose, testRng } from '@peer/test-utils';
import { initBackend } from '../init-backend.js';
import { columnSums } from './column-sums.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: false });
});

describe('columnSums', () => {
  it('sums every column', () => {
    const rng = testRng();
    const x = rng.normals(9 * 4);
    const expected = [0, 1, 2, 3].map((c) => Array.from({ length: 9 }, (_, r) => x[r * 4 + c]!).reduce((a, b) => a + b, 0));
    const t = tf.tensor2d(Float32Array.from(x), [9, 4]);
    const s = columnSums(t);
    expect(s.shape).toEqual([4]);
    expectClose(s.dataSync(), expected, { rtol: 1e-5, atol: 1e-6 });
    tf.dispose([t, s]);
  });
});
