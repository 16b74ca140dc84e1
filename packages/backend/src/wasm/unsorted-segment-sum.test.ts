// N entries, S segments, R row width.
import * as tf from '@tensorflow/tfjs-core';
import { testRng } from '@peer/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../init-backend.js';
import { isFixInstalled } from './wasm-backend.js';
import { onEngine, scaledError } from './engine-compare.test-util.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: false });
  expect(isFixInstalled(tf.UnsortedSegmentSum)).toBe(true);
});

/** out[s, :] = sum over ids[i] = s of x[i, :], dropping ids outside [0, S), in float64. */
function refSegmentSum(x: ArrayLike<number>, ids: ArrayLike<number>, segments: number, rowWidth: number): Float64Array {
  const out = new Float64Array(segments * rowWidth);
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i]!;
    if (s < 0 || s >= segments) continue;
    for (let k = 0; k < rowWidth; k++) out[s * rowWidth + k]! += x[i * rowWidth + k]!;
  }
  return out;
}

describe('UnsortedSegmentSum on wasm', () => {
  it('sums float32 rows per segment like cpu and a float64 reference (repeats, empty segments, dropped ids)', async () => {
    const rng = testRng();
    const [n, s] = [150, 23];
    const x = Float32Array.from(rng.normals(n * 3 * 4));
    // Some ids out of range on both sides: TF drops them.
    const ids = Int32Array.from({ length: n }, () => rng.int(s + 4) - 2);
    const run = () => tf.unsortedSegmentSum(tf.tensor(x, [n, 3, 4]), tf.tensor(ids, [n], 'int32'), s);
    const wasm = await onEngine<Float32Array>('wasm', run);
    const cpu = await onEngine<Float32Array>('cpu', run);
    const ref = refSegmentSum(x, ids, s, 12);
    const label = `seed ${rng.seed}`;
    expect(scaledError(wasm, cpu), label).toBeLessThanOrEqual(1e-4);
    expect(scaledError(wasm, ref), label).toBeLessThanOrEqual(1e-4);
    await tf.setBackend('wasm');
    const shape = tf.tidy(() => run().shape);
    expect(shape).toEqual([s, 3, 4]);
  });

  it('handles 2-D segment ids and int32 values exactly', async () => {
    const rng = testRng();
    const [rows, cols, s, r] = [6, 7, 9, 5];
    const x = Int32Array.from({ length: rows * cols * r }, () => rng.int(2001) - 1000);
    const ids = Int32Array.from({ length: rows * cols }, () => rng.int(s));
    const run = () => tf.unsortedSegmentSum(tf.tensor(x, [rows, cols, r], 'int32'), tf.tensor2d(ids, [rows, cols], 'int32') as tf.Tensor as tf.Tensor1D, s);
    const wasm = await onEngine<Int32Array>('wasm', run);
    expect(Array.from(wasm)).toEqual(Array.from(refSegmentSum(x, ids, s, r)));
  });

  it('rejects segment ids whose shape is not a prefix of x', async () => {
    await tf.setBackend('wasm');
    const x = tf.zeros([4, 3]);
    const ids = tf.tensor1d([0, 1, 2], 'int32');
    expect(() => tf.unsortedSegmentSum(x, ids, 3)).toThrow(/segmentIds shape \[3\] must be a prefix of x shape \[4,3\]/);
    tf.dispose([x, ids]);
  });
});
