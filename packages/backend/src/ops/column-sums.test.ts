// Axes: T rows, D features.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectClose, testRng } from '@peer/test-utils';
import { initBackend } from '../init-backend.js';
import { kernelPool } from '../wasm-memory/kernel-pool.js';
import { columnSums, useHostColumnSums } from './column-sums.js';

// Two threads: the heap kernel must not depend on the pool running (it stays on this thread).
beforeAll(async () => {
  await initBackend({ backend: 'wasm', threads: 2, log: false });
  expect(kernelPool()?.threads).toBe(2);
});
afterAll(async () => {
  useHostColumnSums(false);
  await initBackend({ backend: 'wasm', threads: 1, log: false });
});

/** Each column summed over the rows in order in float64, rounded once: the bits every route must give. */
function reference(x: Float32Array, rows: number, cols: number): number[] {
  return Array.from({ length: cols }, (_, c) => {
    let acc = 0;
    for (let r = 0; r < rows; r++) acc += x[r * cols + c]!;
    return Math.fround(acc);
  });
}

const ROUTES = [
  ['the heap kernel', () => useHostColumnSums(false)],
  ['the host', () => useHostColumnSums(true)],
] as const;

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

  for (const [route, setRoute] of ROUTES) {
    it(`gives the float64-in-row-order sum's bits on ${route}, for fresh random shapes with wide ranges of magnitude`, () => {
      setRoute();
      try {
        const rng = testRng();
        for (const cols of [1, 3, 4, 7, 8 + rng.int(300)]) {
          const rows = 1 + rng.int(200);
          // Magnitudes from 1e-3 to 1e5: the order of the adds shows in the float32 result.
          const x = Float32Array.from({ length: rows * cols }, () => rng.normal() * 10 ** (rng.int(9) - 3));
          const t = tf.tensor2d(x, [rows, cols]);
          const before = tf.memory().numTensors;
          const s = columnSums(t);
          expect(tf.memory().numTensors).toBe(before + 1);
          expect(Array.from(s.dataSync()), `[${rows}, ${cols}] (seed ${rng.seed})`).toEqual(reference(x, rows, cols));
          tf.dispose([t, s]);
        }
      } finally {
        useHostColumnSums(false);
      }
    });
  }

  it('an empty matrix has zero sums; no rows gives zeros', () => {
    const t = tf.zeros([0, 5]) as tf.Tensor2D;
    const s = columnSums(t);
    expect(Array.from(s.dataSync())).toEqual([0, 0, 0, 0, 0]);
    tf.dispose([t, s]);
  });
});
