// The in-heap SIMD row top-k against a plain sort and against the JS rowTopK, bit for bit, ties
// included. Axes: Q rows, W row width, k results.
import * as tf from '@tensorflow/tfjs-core';
import { expectNoLeaks, testRng } from '@peer/test-utils';
import { describe, expect, it } from 'vitest';
import { randomRows, sortedTopK } from './top-k-reference.test-util.js';
import { heapRowTopK } from './heap-top-k.js';
import { rowTopK } from './row-top-k.js';

describe('heapRowTopK', () => {
  const cases: [rows: number, width: number, k: number, levels: number][] = [
    [9, 128, 16, 0],
    [9, 1024, 16, 0],
    [5, 1024, 32, 0],
    [6, 64, 16, 0],
    [6, 68, 16, 0], // width not a multiple of 4k: columns past the last block are still scanned
    [7, 256, 16, 3], // many exact ties
    [4, 128, 8, 1], // every value equal
    [3, 40, 1, 0],
  ];
  for (const [rows, width, k, levels] of cases) {
    it(`equals sorting and rowTopK for Q=${rows}, W=${width}, k=${k}, ${levels ? `${levels} distinct values` : 'normal values'}`, () => {
      const rng = testRng();
      const scores = randomRows(rng, rows, width, levels);
      // Ascending and descending rows: the most and the fewest insertions.
      scores.subarray(0, width).sort();
      scores.subarray(width, 2 * width).sort().reverse();
      const values = new Float32Array(rows * k);
      const indices = new Int32Array(rows * k);
      const ran = tf.tidy(() => heapRowTopK(tf.tensor2d(scores, [rows, width]), rows, width, k, values, indices));
      expect(ran).toBe(true);
      const jsValues = new Float32Array(rows * k);
      const jsIndices = new Int32Array(rows * k);
      rowTopK(scores, rows, width, k, jsValues, jsIndices);
      for (let r = 0; r < rows; r++) {
        const want = sortedTopK(scores.subarray(r * width, (r + 1) * width), k);
        expect(Array.from(indices.subarray(r * k, (r + 1) * k)), `row ${r}, seed ${rng.seed}`).toEqual(want.indices);
        expect(Array.from(values.subarray(r * k, (r + 1) * k)), `row ${r}, seed ${rng.seed}`).toEqual(want.values);
      }
      expect(indices).toEqual(jsIndices);
      expect(values).toEqual(jsValues);
    });
  }

  it('gives a row with a NaN in-range columns (NaN scores) and leaves the other rows exact', () => {
    const rng = testRng();
    const [rows, width, k] = [3, 64, 4];
    const scores = randomRows(rng, rows, width, 0);
    scores[width + 7] = NaN;
    const values = new Float32Array(rows * k);
    const indices = new Int32Array(rows * k);
    expect(tf.tidy(() => heapRowTopK(tf.tensor2d(scores, [rows, width]), rows, width, k, values, indices))).toBe(true);
    for (const r of [0, 2]) expect(Array.from(indices.subarray(r * k, (r + 1) * k))).toEqual(sortedTopK(scores.subarray(r * width, (r + 1) * width), k).indices);
    for (const i of indices) expect(i >= 0 && i < width).toBe(true);
    expect(Array.from(values.subarray(k, 2 * k)).every(Number.isNaN)).toBe(true);
  });

  it('declines what it cannot run, and leaks nothing', async () => {
    const out = [new Float32Array(64), new Int32Array(64)] as const;
    const narrow = tf.zeros([4, 30]);
    const odd = tf.zeros([2, 66]);
    expect(heapRowTopK(narrow, 4, 30, 8, ...out)).toBe(false); // width below 4k
    expect(heapRowTopK(odd, 2, 66, 4, ...out)).toBe(false); // width not a multiple of 4
    tf.dispose([narrow, odd]);
    await expectNoLeaks(() => {
      const s = tf.randomNormal([16, 128]);
      heapRowTopK(s, 16, 128, 4, ...out);
      s.dispose();
    });
  });
});
