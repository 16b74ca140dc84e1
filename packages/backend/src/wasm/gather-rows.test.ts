// V table rows, R row width, I indices.
import * as tf from '@tensorflow/tfjs-core';
import { checkGradients, expectClose, testRng } from '@peer/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../init-backend.js';
import { isFixInstalled } from './wasm-backend.js';
import { onEngine, scaledError } from './engine-compare.test-util.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: false });
  expect(isFixInstalled(tf.GatherV2)).toBe(true);
});

/** out[i, :] = table[idx[i], :] in float64. */
function refGather(table: ArrayLike<number>, rowWidth: number, idx: ArrayLike<number>): Float64Array {
  const out = new Float64Array(idx.length * rowWidth);
  for (let i = 0; i < idx.length; i++) for (let k = 0; k < rowWidth; k++) out[i * rowWidth + k] = table[idx[i]! * rowWidth + k]!;
  return out;
}

describe('axis-0 GatherV2 on wasm', () => {
  it('copies the right rows (random, repeated, and consecutive runs of indices) for float32 and int32', async () => {
    const rng = testRng();
    const [v, r] = [97, 13];
    const table = Float32Array.from(rng.normals(v * r));
    // Runs of consecutive indices are copied as one block; mix them with random and repeated ones.
    const idx = Int32Array.from([5, 6, 7, 8, 96, 0, 1, 0, 0, 42, 43, ...Array.from({ length: 40 }, () => rng.int(v)), 95, 96]);
    const run = () => tf.gather(tf.tensor(table, [v, r]), tf.tensor(idx, [idx.length], 'int32'));
    const wasm = await onEngine<Float32Array>('wasm', run);
    const cpu = await onEngine<Float32Array>('cpu', run);
    // A copy is exact.
    expect(Array.from(wasm)).toEqual(Array.from(cpu));
    expect(Array.from(wasm)).toEqual(Array.from(refGather(table, r, idx)));

    const ints = Int32Array.from({ length: v * r }, () => rng.int(1 << 30) - (1 << 29));
    const runInt = () => tf.gather(tf.tensor(ints, [v, r], 'int32'), tf.tensor(idx, [idx.length], 'int32'));
    const wasmInt = await onEngine<Int32Array>('wasm', runInt);
    expect(Array.from(wasmInt)).toEqual(Array.from(refGather(ints, r, idx)));
  });

  it('keeps the shapes: multi-axis rows and 2-D indices give [...indices, ...row]', async () => {
    const rng = testRng();
    const table = Float32Array.from(rng.normals(20 * 3 * 4));
    const idx = Int32Array.from({ length: 6 }, () => rng.int(20));
    await tf.setBackend('wasm');
    const out = tf.tidy(() => tf.gather(tf.tensor(table, [20, 3, 4]), tf.tensor(idx, [2, 3], 'int32')));
    expect(out.shape).toEqual([2, 3, 3, 4]);
    expect(Array.from(out.dataSync())).toEqual(Array.from(refGather(table, 12, idx)));
    out.dispose();
  });

  it('gathers along other axes and with batchDims 1 (where the built-in kernel is wrong), like cpu and a plain reference', async () => {
    const rng = testRng();
    const x = Float32Array.from(rng.normals(4 * 6 * 5));
    const idx1 = Int32Array.from({ length: 7 }, () => rng.int(6));
    const idx2 = Int32Array.from({ length: 4 * 3 }, () => rng.int(6));
    const run = () => [
      tf.gather(tf.tensor(x, [4, 6, 5]), tf.tensor(idx1, [7], 'int32'), 1),
      tf.gather(tf.tensor(x, [4, 6, 5]), tf.tensor(idx1, [7], 'int32'), -2),
      tf.gather(tf.tensor(x, [4, 6, 5]), tf.tensor(idx2, [4, 3], 'int32'), 1, 1),
    ];
    const wasm = await onEngine<Float32Array[]>('wasm', run);
    const cpu = await onEngine<Float32Array[]>('cpu', run);
    // out[b, j, k] = x[b, idx[j], k] and, with batchDims 1, out[b, j, k] = x[b, idx[b, j], k].
    const ref1 = Array.from({ length: 4 * 7 * 5 }, (_, e) => {
      const [b, j, k] = [Math.floor(e / 35), Math.floor(e / 5) % 7, e % 5];
      return x[b * 30 + idx1[j]! * 5 + k]!;
    });
    const ref2 = Array.from({ length: 4 * 3 * 5 }, (_, e) => {
      const [b, j, k] = [Math.floor(e / 15), Math.floor(e / 5) % 3, e % 5];
      return x[b * 30 + idx2[b * 3 + j]! * 5 + k]!;
    });
    [ref1, ref1, ref2].forEach((ref, i) => {
      expect(Array.from(wasm[i]!), `case ${i}`).toEqual(ref);
      expect(Array.from(cpu[i]!), `case ${i}`).toEqual(ref);
    });
  });

  it('throws one clear error naming the index and the row count for out-of-range indices', async () => {
    await tf.setBackend('wasm');
    const table = tf.zeros([65, 4]);
    const bad = tf.tensor1d([3, 65, 1], 'int32');
    const negative = tf.tensor1d([-1], 'int32');
    const before = tf.memory().numTensors;
    expect(() => tf.gather(table, bad)).toThrow(/^gather: index 65 \(at position 1 of the indices\) is out of range for a tensor of 65 rows$/);
    expect(() => tf.gather(table, negative)).toThrow(/index -1 .* 65 rows/);
    expect(() => tf.gather(tf.zeros([2, 3]), tf.tensor1d([3], 'int32'), 1)).toThrow(/index 3 .* size 3 along axis 1/);
    // The failed calls allocated no output.
    expect(tf.memory().numTensors).toBe(before + 2);
    tf.dispose([table, bad, negative]);
  });

  it('empty indices and empty rows give empty outputs', async () => {
    await tf.setBackend('wasm');
    const t = tf.zeros([5, 3]);
    const e = tf.gather(t, tf.tensor1d([], 'int32'));
    expect(e.shape).toEqual([0, 3]);
    const z = tf.gather(tf.zeros([5, 0]), tf.tensor1d([1, 2], 'int32'));
    expect(z.shape).toEqual([2, 0]);
    tf.dispose([t, e, z]);
  });
});

describe('gradient through gather on wasm (UnsortedSegmentSum)', () => {
  it('tf.grad with repeated indices matches cpu and a float64 scatter-add', async () => {
    const rng = testRng();
    const [v, r, n] = [40, 9, 120];
    const table = Float32Array.from(rng.normals(v * r));
    // Indices drawn from a small range so that many repeat.
    const idx = Int32Array.from({ length: n }, () => rng.int(v / 2));
    const w = Float32Array.from(rng.normals(n * r));
    // loss = sum(W * gather(T, idx)): dT[v] = sum over i with idx[i] = v of W[i].
    const run = () => {
      const wt = tf.tensor(w, [n, r]);
      const it = tf.tensor(idx, [n], 'int32');
      return tf.grad((t: tf.Tensor) => tf.sum(tf.mul(wt, tf.gather(t, it))))(tf.tensor(table, [v, r]));
    };
    const wasm = await onEngine<Float32Array>('wasm', run);
    const cpu = await onEngine<Float32Array>('cpu', run);
    const ref = new Float64Array(v * r);
    for (let i = 0; i < n; i++) for (let k = 0; k < r; k++) ref[idx[i]! * r + k]! += w[i * r + k]!;
    expect(scaledError(wasm, cpu), `seed ${rng.seed}`).toBeLessThanOrEqual(1e-4);
    expectClose(wasm, ref, { rtol: 1e-4, atol: 1e-5, label: `seed ${rng.seed}` });
    // Rows no index reaches get exactly zero (the output memory starts uninitialized).
    for (let row = v / 2; row < v; row++) for (let k = 0; k < r; k++) expect(wasm[row * r + k]).toBe(0);
  });

  it('a nonlinear loss through gather agrees with finite differences on wasm', async () => {
    await tf.setBackend('wasm');
    const rng = testRng();
    const table = tf.tensor(Float32Array.from(rng.normals(12 * 5)), [12, 5]);
    const idx = tf.tensor1d([3, 3, 0, 11, 3, 7, 0], 'int32');
    const f = (t: tf.Tensor) => tf.sum(tf.square(tf.tanh(tf.gather(t, idx)))) as tf.Scalar;
    checkGradients(f, [table], { label: `seed ${rng.seed}` });
    tf.dispose([table, idx]);
  });
});
