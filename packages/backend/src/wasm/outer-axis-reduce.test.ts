// x [S_0, ..., S_{r-1}]; reductions over a set of axes, kept axes in order.
import * as tf from '@tensorflow/tfjs-core';
import { expectNoLeaks, testRng } from '@peer/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../init-backend.js';
import { onEngine, scaledError } from './engine-compare.test-util.js';
import { isFixInstalled } from './wasm-backend.js';

const size = (s: number[]) => s.reduce((p, d) => p * d, 1);

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: false });
  expect(isFixInstalled(tf.Sum)).toBe(true);
  expect(isFixInstalled(tf.Max)).toBe(true);
});

/** Float64 reference: reduce x over `axes` with `op`, output in kept-axis order. */
function refReduce(x: ArrayLike<number>, shape: number[], axes: number[], op: 'sum' | 'max'): number[] {
  const kept = shape.map((_, d) => d).filter((d) => !axes.includes(d));
  const outShape = kept.map((d) => shape[d]!);
  const out = new Array<number>(size(outShape)).fill(op === 'sum' ? 0 : -Infinity);
  for (let f = 0; f < x.length; f++) {
    let rem = f;
    const idx = new Array<number>(shape.length);
    for (let d = shape.length - 1; d >= 0; d--) {
      idx[d] = rem % shape[d]!;
      rem = Math.floor(rem / shape[d]!);
    }
    const o = kept.reduce((p, d) => p * shape[d]! + idx[d]!, 0);
    const v = x[f]!;
    out[o] = op === 'sum' ? out[o]! + v : Number.isNaN(v) || v > out[o]! ? v : out[o]!;
  }
  return out;
}

describe('Sum and Max over outer axes on wasm', () => {
  // [shape, axes]: leading block, middle block, several axes, negative axes, size-1 axes, and (for
  // the delegation) innermost and scattered axes. Odd row counts exercise the 4-row remainder.
  const CASES: [number[], number[]][] = [
    [[37, 53], [0]],
    [[3, 17, 24], [0]],
    [[3, 17, 24], [1]],
    [[3, 17, 24], [0, 1]],
    [[2, 3, 5, 7], [-3, -2]],
    [[1, 9, 1, 4], [1]],
    [[6, 1, 5], [0, 1]],
    [[3, 17, 24], [2]],
    [[3, 17, 24], [0, 2]],
    [[5, 7], [0, 1]],
  ];
  for (const op of ['sum', 'max'] as const) {
    for (const [shape, axes] of CASES) {
      for (const keepDims of [false, true]) {
        it(`${op} ${JSON.stringify(shape)} over ${JSON.stringify(axes)} keepDims=${keepDims} matches cpu and float64`, async () => {
          const rng = testRng();
          const x = Float32Array.from(rng.normals(size(shape)));
          const run = () => (op === 'sum' ? tf.sum : tf.max)(tf.tensor(x, shape), axes, keepDims);
          const wasm = await onEngine<Float32Array>('wasm', run);
          const cpu = await onEngine<Float32Array>('cpu', run);
          const positive = axes.map((a) => (a < 0 ? a + shape.length : a));
          const ref = refReduce(x, shape, positive, op);
          const label = `seed ${rng.seed}`;
          expect(scaledError(wasm, ref), label).toBeLessThanOrEqual(op === 'sum' ? 1e-4 : 0);
          expect(scaledError(wasm, cpu), label).toBeLessThanOrEqual(1e-4);
          await tf.setBackend('wasm');
          const outShape = tf.tidy(() => run().shape);
          expect(outShape).toEqual(shape.map((d, i) => (positive.includes(i) ? 1 : d)).filter((_, i) => keepDims || !positive.includes(i)));
        });
      }
    }
  }

  it('max propagates NaN like the cpu engine; int32 sums stay int32', async () => {
    const x = Float32Array.from([1, 2, 3, NaN, 5, 6, 7, 8, 9, 10, NaN, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const run = () => tf.max(tf.tensor(x, [6, 4]), 0);
    const wasm = await onEngine<Float32Array>('wasm', run);
    const cpu = await onEngine<Float32Array>('cpu', run);
    expect(Array.from(wasm)).toEqual([9, 10, NaN, NaN]);
    expect(Array.from(cpu)).toEqual([9, 10, NaN, NaN]);
    await tf.setBackend('wasm');
    const ints = tf.tidy(() => {
      const s = tf.sum(tf.tensor([[1, 2], [3, 4], [5, 6]], [3, 2], 'int32'), 0);
      return { dtype: s.dtype, data: Array.from(s.dataSync()) };
    });
    expect(ints).toEqual({ dtype: 'int32', data: [9, 12] });
  });

  it('gradients of a sum over axis 0 and a max over axis 1 match cpu', async () => {
    const rng = testRng();
    const shape = [5, 6, 7];
    const x = Float32Array.from(rng.normals(size(shape)));
    const w = Float32Array.from(rng.normals(6 * 7));
    const v = Float32Array.from(rng.normals(5 * 7));
    const run = () =>
      tf.grad((t: tf.Tensor) => tf.add(tf.sum(tf.mul(tf.sum(t, 0), tf.tensor(w, [6, 7]))), tf.sum(tf.mul(tf.max(t, 1), tf.tensor(v, [5, 7])))))(
        tf.tensor(x, shape),
      );
    const wasm = await onEngine<Float32Array>('wasm', run);
    const cpu = await onEngine<Float32Array>('cpu', run);
    expect(scaledError(wasm, cpu), `seed ${rng.seed}`).toBeLessThanOrEqual(1e-6);
  });

  it('leaves no tensors behind', async () => {
    await tf.setBackend('wasm');
    const x = tf.randomNormal([8, 9, 10]);
    await expectNoLeaks(() => tf.tidy(() => void [tf.sum(x, 0), tf.max(x, [0, 1]), tf.sum(x, 1, true)]));
    x.dispose();
  });
});
