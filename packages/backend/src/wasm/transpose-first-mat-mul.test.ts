// M rows, K contracted axis, N columns, B batch.
import * as tf from '@tensorflow/tfjs-core';
import { checkGradients, testRng } from '@peer/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../init-backend.js';
import { isFixInstalled } from './wasm-backend.js';
import { onEngine, refMatMul, scaledError } from './engine-compare.test-util.js';

const TOL = 1e-4;
const COMBOS = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
] as const;

function stored(shape: number[], transpose: boolean): number[] {
  const s = [...shape];
  if (transpose) [s[s.length - 2], s[s.length - 1]] = [s[s.length - 1]!, s[s.length - 2]!];
  return s;
}

beforeAll(async () => {
  const choice = await initBackend({ backend: 'wasm', log: false });
  expect(choice.fixes).toContain('BatchMatMul (transpose first, per-batch products)');
  expect(isFixInstalled(tf.BatchMatMul)).toBe(true);
  expect(isFixInstalled(tf._FusedMatMul)).toBe(true);
});

describe('transpose-first BatchMatMul on wasm', () => {
  // [a logical shape (.. M K), b logical shape (.. K N)]: 2-D, batched, and broadcast batch axes.
  // (Batch axes that both need broadcasting, e.g. [2, 1] against [3], are wrong on every tfjs 4.22
  // engine, cpu included, so they are left out.)
  const CASES: [number[], number[]][] = [
    [[37, 53], [53, 29]],
    [[3, 17, 24], [3, 24, 11]],
    [[1, 9, 16], [3, 16, 7]],
    [[2, 3, 9, 16], [16, 7]],
  ];
  for (const [aLogical, bLogical] of CASES) {
    for (const [tA, tB] of COMBOS) {
      it(`matches cpu and a float64 reference: a ${JSON.stringify(aLogical)} b ${JSON.stringify(bLogical)} tA=${tA} tB=${tB}`, async () => {
        const rng = testRng();
        const aShape = stored(aLogical, tA);
        const bShape = stored(bLogical, tB);
        const a = rng.normals(aShape.reduce((p, d) => p * d, 1));
        const b = rng.normals(bShape.reduce((p, d) => p * d, 1));
        const run = () => tf.matMul(tf.tensor(Float32Array.from(a), aShape, 'float32'), tf.tensor(Float32Array.from(b), bShape, 'float32'), tA, tB);
        const wasm = await onEngine<Float32Array>('wasm', run);
        const cpu = await onEngine<Float32Array>('cpu', run);
        const ref = refMatMul(a, aShape, b, bShape, tA, tB);
        const label = `seed ${rng.seed}`;
        expect(scaledError(wasm, cpu), label).toBeLessThanOrEqual(TOL);
        expect(scaledError(wasm, ref.data), label).toBeLessThanOrEqual(TOL);
        await tf.setBackend('wasm');
        expect(run().shape).toEqual(ref.shape);
      });
    }
  }

  it('gradients through all four transpose combinations (batched) match cpu and the float64 formulas', async () => {
    const rng = testRng();
    const [bt, m, k, n] = [2, 13, 21, 9];
    for (const [tA, tB] of COMBOS) {
      const aShape = stored([bt, m, k], tA);
      const bShape = stored([bt, k, n], tB);
      const a = rng.normals(bt * m * k);
      const b = rng.normals(bt * k * n);
      const w = rng.normals(bt * m * n);
      // loss = sum(W * matMul(A, B)): dL/d(op(A)) = W op(B)^T, dL/d(op(B)) = op(A)^T W.
      const run = () => {
        const wt = tf.tensor(Float32Array.from(w), [bt, m, n], 'float32');
        const f = (x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(wt, tf.matMul(x, y, tA, tB)));
        return tf.grads(f)([tf.tensor(Float32Array.from(a), aShape, 'float32'), tf.tensor(Float32Array.from(b), bShape, 'float32')]);
      };
      const [gaW, gbW] = await onEngine<Float32Array[]>('wasm', run);
      const [gaC, gbC] = await onEngine<Float32Array[]>('cpu', run);
      // Reference: d/dA of sum(W * op(A) op(B)) stored in A's layout.
      const gOpA = refMatMul(w, [bt, m, n], b, bShape, false, !tB); // [bt, m, k] = W op(B)^T
      const gOpB = refMatMul(a, aShape, w, [bt, m, n], !tA, false); // [bt, k, n] = op(A)^T W
      const gaRef = tA ? transposeLast(gOpA.data, bt, m, k) : gOpA.data;
      const gbRef = tB ? transposeLast(gOpB.data, bt, k, n) : gOpB.data;
      const label = `seed ${rng.seed} tA=${tA} tB=${tB}`;
      expect(scaledError(gaW!, gaC!), label).toBeLessThanOrEqual(TOL);
      expect(scaledError(gbW!, gbC!), label).toBeLessThanOrEqual(TOL);
      expect(scaledError(gaW!, gaRef), label).toBeLessThanOrEqual(TOL);
      expect(scaledError(gbW!, gbRef), label).toBeLessThanOrEqual(TOL);
    }
  });

  it('2-D gradients agree with finite differences on wasm', async () => {
    await tf.setBackend('wasm');
    const rng = testRng();
    for (const [tA, tB] of COMBOS) {
      const a = tf.tensor(Float32Array.from(rng.normals(6 * 5)), stored([6, 5], tA), 'float32');
      const b = tf.tensor(Float32Array.from(rng.normals(5 * 4)), stored([5, 4], tB), 'float32');
      const w = tf.tensor(Float32Array.from(rng.normals(6 * 4)), [6, 4], 'float32');
      const f = (x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(w, tf.tanh(tf.matMul(x, y, tA, tB)))) as tf.Scalar;
      checkGradients(f, [a, b], { label: `seed ${rng.seed} tA=${tA} tB=${tB}` });
      tf.dispose([a, b, w]);
    }
  });

  it('leaves no tensors behind', async () => {
    await tf.setBackend('wasm');
    const a = tf.randomNormal([8, 5]);
    const b = tf.randomNormal([6, 8]);
    const before = tf.memory().numTensors;
    const c = tf.matMul(a, b, true, true);
    expect(tf.memory().numTensors).toBe(before + 1);
    tf.dispose([a, b, c]);
  });
});

describe('transpose-first _FusedMatMul on wasm', () => {
  const ACTIVATIONS = {
    linear: (z: number) => z,
    relu: (z: number) => Math.max(0, z),
    sigmoid: (z: number) => 1 / (1 + Math.exp(-z)),
    leakyrelu: (z: number) => (z < 0 ? 0.2 * z : z),
  } as const;
  // [a logical shape, b logical shape]: 2-D, both batched, batched a with a shared 2-D b.
  const SHAPES: [number[], number[]][] = [
    [[11, 19], [19, 7]],
    [[3, 11, 19], [3, 19, 7]],
    [[3, 11, 19], [19, 7]],
  ];
  for (const [activation, act] of Object.entries(ACTIVATIONS) as [keyof typeof ACTIVATIONS, (z: number) => number][]) {
    for (const [tA, tB] of COMBOS) {
      it(`forward with bias and ${activation} matches cpu and float64, tA=${tA} tB=${tB}`, async () => {
        const rng = testRng();
        for (const [aLogical, bLogical] of SHAPES) {
          const aShape = stored(aLogical, tA);
          const bShape = stored(bLogical, tB);
          const n = bLogical[bLogical.length - 1]!;
          const size = (s: number[]) => s.reduce((p, d) => p * d, 1);
          const a = rng.normals(size(aShape));
          const b = rng.normals(size(bShape));
          const bias = rng.normals(n);
          const run = () =>
            tf.fused.matMul({
              a: tf.tensor(Float32Array.from(a), aShape, 'float32'),
              b: tf.tensor(Float32Array.from(b), bShape, 'float32'),
              transposeA: tA,
              transposeB: tB,
              bias: tf.tensor(Float32Array.from(bias), [n], 'float32'),
              activation,
            });
          const wasm = await onEngine<Float32Array>('wasm', run);
          const cpu = await onEngine<Float32Array>('cpu', run);
          const ref = refMatMul(a, aShape, b, bShape, tA, tB).data.map((v, i) => act(v + bias[i % n]!));
          const label = `seed ${rng.seed} a ${JSON.stringify(aShape)} b ${JSON.stringify(bShape)}`;
          expect(scaledError(wasm, cpu), label).toBeLessThanOrEqual(TOL);
          expect(scaledError(wasm, ref), label).toBeLessThanOrEqual(TOL);
        }
      });
    }
  }

  it('prelu with batched operands and bias matches cpu', async () => {
    const rng = testRng();
    const [bt, m, k, n] = [2, 6, 8, 5];
    const a = Float32Array.from(rng.normals(bt * k * m));
    const b = Float32Array.from(rng.normals(bt * n * k));
    const bias = Float32Array.from(rng.normals(n));
    const alpha = Float32Array.from(rng.uniforms(n, 0, 0.5));
    const run = () =>
      tf.fused.matMul({
        a: tf.tensor(a, [bt, k, m]),
        b: tf.tensor(b, [bt, n, k]),
        transposeA: true,
        transposeB: true,
        bias: tf.tensor(bias, [n]),
        activation: 'prelu',
        preluActivationWeights: tf.tensor(alpha, [n]),
      });
    const wasm = await onEngine<Float32Array>('wasm', run);
    const cpu = await onEngine<Float32Array>('cpu', run);
    expect(scaledError(wasm, cpu), `seed ${rng.seed}`).toBeLessThanOrEqual(TOL);
  });

  it('gradients with bias (fused under tf.grads) match cpu in all four combinations', async () => {
    const rng = testRng();
    const [m, k, n] = [10, 14, 6];
    for (const [tA, tB] of COMBOS) {
      const a = rng.normals(m * k);
      const b = rng.normals(k * n);
      const bias = rng.normals(n);
      const w = rng.normals(m * n);
      const run = () => {
        const wt = tf.tensor(Float32Array.from(w), [m, n], 'float32');
        // Only a linear activation stays fused while differentiating (tfjs's shouldFuse).
        const f = (x: tf.Tensor, y: tf.Tensor, c: tf.Tensor) =>
          tf.sum(tf.mul(wt, tf.fused.matMul({ a: x, b: y, transposeA: tA, transposeB: tB, bias: c })));
        return tf.grads(f)([
          tf.tensor(Float32Array.from(a), stored([m, k], tA), 'float32'),
          tf.tensor(Float32Array.from(b), stored([k, n], tB), 'float32'),
          tf.tensor(Float32Array.from(bias), [n], 'float32'),
        ]);
      };
      const wasm = await onEngine<Float32Array[]>('wasm', run);
      const cpu = await onEngine<Float32Array[]>('cpu', run);
      // The bias gradient is the column sums of W.
      const gBias = Array.from({ length: n }, (_, j) => {
        let s = 0;
        for (let i = 0; i < m; i++) s += w[i * n + j]!;
        return s;
      });
      const label = `seed ${rng.seed} tA=${tA} tB=${tB}`;
      wasm.forEach((g, i) => expect(scaledError(g, cpu[i]!), `${label} input ${i}`).toBeLessThanOrEqual(TOL));
      expect(scaledError(wasm[2]!, gBias), label).toBeLessThanOrEqual(TOL);
    }
  });
});

function transposeLast(x: Float64Array, batch: number, rows: number, cols: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let t = 0; t < batch; t++)
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[t * rows * cols + j * rows + i] = x[t * rows * cols + i * cols + j]!;
  return out;
}
