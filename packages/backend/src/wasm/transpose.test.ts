import * as tf from '@tensorflow/tfjs-core';
import { testRng } from '@peer/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../init-backend.js';
import { isFixInstalled } from './wasm-backend.js';
import { onEngine } from './engine-compare.test-util.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: false });
  expect(isFixInstalled(tf.Transpose)).toBe(true);
});

/** Plain row-major transpose: out[i_perm[0], i_perm[1], ...] = x[i_0, i_1, ...]. */
function refTranspose(x: ArrayLike<number>, shape: number[], perm: number[]): number[] {
  const outShape = perm.map((p) => shape[p]!);
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, d) => a * d, 1));
  const out: number[] = [];
  const size = x.length;
  for (let e = 0; e < size; e++) {
    let rem = e;
    let src = 0;
    for (let a = outShape.length - 1; a >= 0; a--) {
      const coord = rem % outShape[a]!;
      rem = Math.floor(rem / outShape[a]!);
      src += coord * strides[perm[a]!]!;
    }
    out.push(x[src]!);
  }
  return out;
}

describe('Transpose on wasm', () => {
  // [shape, perm]: last-two swaps (blocked copy), no-op permutations of size-1 axes (shared data),
  // swaps of adjacent blocks of axes (pooled block swap), and general permutations (built-in kernel).
  const CASES: [number[], number[]][] = [
    [[37, 53], [1, 0]],
    [[3, 17, 24], [0, 2, 1]],
    [[2, 1, 5, 6], [0, 1, 3, 2]],
    [[4, 1, 7], [0, 2, 1]],
    [[1, 9, 1, 4], [2, 3, 0, 1]],
    [[5, 6], [0, 1]],
    [[1, 8], [1, 0]],
    [[3, 4, 5], [2, 0, 1]],
    [[3, 4, 5], [1, 0, 2]],
    [[2, 3, 4, 5], [0, 3, 2, 1]],
    // Swaps of adjacent blocks with a chunk (attention's heads axis): the pooled block swap.
    [[2, 9, 3, 8], [0, 2, 1, 3]],
    [[3, 2, 17, 2, 5], [1, 2, 0, 3, 4]],
    [[2, 17, 3, 6], [2, 0, 1, 3]],
  ];
  for (const [shape, perm] of CASES) {
    it(`matches cpu and a plain reference: shape ${JSON.stringify(shape)} perm ${JSON.stringify(perm)}`, async () => {
      const rng = testRng();
      const size = shape.reduce((p, d) => p * d, 1);
      const x = Float32Array.from(rng.normals(size));
      const run = () => tf.transpose(tf.tensor(x, shape), perm);
      const wasm = await onEngine<Float32Array>('wasm', run);
      const cpu = await onEngine<Float32Array>('cpu', run);
      const ref = refTranspose(x, shape, perm);
      expect(Array.from(wasm)).toEqual(ref);
      expect(Array.from(cpu)).toEqual(ref);
      await tf.setBackend('wasm');
      const t = tf.tidy(() => run());
      expect(t.shape).toEqual(perm.map((p) => shape[p]));
      t.dispose();
    });
  }

  it('int32 and bool tensors, bit-exactly', async () => {
    const rng = testRng();
    const ints = Int32Array.from({ length: 6 * 7 }, () => rng.int(2 ** 32) - 2 ** 31);
    const wasm = await onEngine<Int32Array>('wasm', () => tf.transpose(tf.tensor(ints, [6, 7], 'int32')));
    expect(Array.from(wasm)).toEqual(refTranspose(ints, [6, 7], [1, 0]));
    await tf.setBackend('wasm');
    const bools = [true, false, false, true, true, true];
    const b = tf.tidy(() => tf.transpose(tf.tensor(bools, [1, 2, 3], 'bool'), [0, 2, 1]));
    expect(Array.from(b.dataSync())).toEqual(refTranspose(bools.map(Number), [1, 2, 3], [0, 2, 1]));
    b.dispose();
  });

  it('a no-op permutation shares the data safely: the output outlives its disposed input', async () => {
    await tf.setBackend('wasm');
    const x = tf.tensor([1, 2, 3, 4, 5, 6], [1, 6, 1]);
    const y = tf.transpose(x, [2, 1, 0]);
    expect(y.shape).toEqual([1, 6, 1]);
    x.dispose();
    expect(Array.from(y.dataSync())).toEqual([1, 2, 3, 4, 5, 6]);
    const before = tf.memory().numTensors;
    y.dispose();
    expect(tf.memory().numTensors).toBe(before - 1);
  });
});
