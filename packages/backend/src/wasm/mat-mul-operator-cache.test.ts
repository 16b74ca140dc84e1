// The same tensor data as matMul's b under different shapes (reshape, or a Transpose that moves no
// data, shares the data id). M rows of a, K contracted axis, N columns of b, Bt batches.
import * as tf from '@tensorflow/tfjs-core';
import { testRng } from '@peer/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { heapStats } from '../heap-guard.js';
import { initBackend } from '../init-backend.js';
import { evictStaleMatMulOperator } from './mat-mul-operator-cache.js';
import { prefersPerBatch } from './per-batch-mat-mul.js';
import { setSmallMatMulMaxWork } from './small-mat-mul.js';
import { onEngine, refMatMul, scaledError } from './engine-compare.test-util.js';
import { isFixInstalled, type WasmBackend } from './wasm-backend.js';

const TOL = 1e-4;

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: false });
  expect(isFixInstalled(tf.BatchMatMul)).toBe(true);
  // These products are small: keep them on XNNPACK, whose operator cache this file tests.
  setSmallMatMulMaxWork(0);
});
afterAll(() => setSmallMatMulMaxWork(undefined));

/** One iteration's data: x is a [1, n] (or [n, 1]) vector, a1 [m1, 1], a2 [m2, n]. */
interface Draw {
  n: number;
  m1: number;
  m2: number;
  x: Float32Array;
  a1: Float32Array;
  a2: Float32Array;
  /** Share x's data through a transpose (true) or a reshape (false). */
  viaTranspose: boolean;
}

/**
 * Two pairs of products per iteration, each pair using x's data as b under two shapes. Pair 0 is the
 * order in which a stale operator writes too little (wrong values, no overflow): x [n, 1] (N = 1),
 * then as [1, n] (N = n). Pair 1 is the reported order: x [1, n] (N = n), then as [n, 1] (N = 1),
 * where a stale operator writes M x n floats into an M x 1 buffer (heap overflow).
 */
function pair(d: Draw, which: 0 | 1): tf.Tensor[] {
  const share = (t: tf.Tensor, shape: [number, number]) => (d.viaTranspose ? tf.transpose(t) : tf.reshape(t, shape));
  const a1 = tf.tensor2d(d.a1, [d.m1, 1]);
  const a2 = tf.tensor2d(d.a2, [d.m2, d.n]);
  if (which === 0) {
    const column = tf.tensor2d(d.x, [d.n, 1]);
    return [tf.matMul(a2, column), tf.matMul(a1, share(column, [1, d.n]))]; // [m2, 1], [m1, n]
  }
  const row = tf.tensor2d(d.x, [1, d.n]);
  return [tf.matMul(a1, row), tf.matMul(a2, share(row, [d.n, 1]))]; // [m1, n], [m2, 1]
}

/** One pair's results, computed inside a tidy. */
const pairData = (d: Draw, which: 0 | 1) => tf.tidy(() => pair(d, which).map((t) => t.dataSync() as Float32Array));

/** Float64 results of both pairs: a2 x and the outer product a1 x^T. */
function float64Pairs(d: Draw): Float64Array[][] {
  const col = refMatMul(d.a2, [d.m2, d.n], d.x, [d.n, 1], false, false).data;
  const outer = refMatMul(d.a1, [d.m1, 1], d.x, [1, d.n], false, false).data;
  return [
    [col, outer],
    [outer, col],
  ];
}

describe('matMul with one data id as b under different shapes', () => {
  it('the reported pattern, 2,000 iterations with fresh shapes: every product matches cpu and float64', async () => {
    const rng = testRng();
    const draws: Draw[] = Array.from({ length: 2000 }, (_, i) => {
      const n = 2 + rng.int(7);
      const m1 = 1 + rng.int(5);
      const m2 = 1 + rng.int(5);
      const f = (count: number) => Float32Array.from(rng.normals(count));
      return { n, m1, m2, x: f(n), a1: f(m1), a2: f(m2 * n), viaTranspose: i % 2 === 0 };
    });
    await tf.setBackend('cpu');
    const cpu = draws.map((d) => [pairData(d, 0), pairData(d, 1)]);
    // The wasm pass compares each pair as soon as it has run: a stale operator's wrong values (pair
    // 0) fail the test before one can overflow the heap (pair 1) and abort the process.
    await tf.setBackend('wasm');
    const before = tf.memory().numTensors;
    draws.forEach((d, i) => {
      const ref = float64Pairs(d);
      // Scaled by |a| @ |x|, the size of the rounding: a [m2, 1] product of a few outputs can cancel
      // to near 0, where its own largest value would be no scale for engines that sum in other orders.
      const mass = float64Pairs({ ...d, x: d.x.map(Math.abs), a1: d.a1.map(Math.abs), a2: d.a2.map(Math.abs) });
      for (const which of [0, 1] as const) {
        pairData(d, which).forEach((w, p) => {
          const label = `seed ${rng.seed} iteration ${i} pair ${which} product ${p} (n=${d.n}, ${d.viaTranspose ? 'transpose' : 'reshape'})`;
          expect(scaledError(w, cpu[i]![which]![p]!, mass[which]![p]!), label).toBeLessThanOrEqual(TOL);
          expect(scaledError(w, ref[which]![p]!, mass[which]![p]!), label).toBeLessThanOrEqual(TOL);
        });
      }
    });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('one b reshaped across 2-D, fused, per-batch and shared-b per-batch products (alternating shapes) matches cpu', async () => {
    const rng = testRng();
    const bData = rng.normals(384);
    // [a shape, b's shape for this product, kind]; b's data is the same 384 numbers throughout.
    const steps: [number[], number[], 'plain' | 'fused'][] = [
      [[20, 24], [24, 16], 'plain'], // 2-D: XNNPACK caches an operator for [24, 16]
      [[5, 16], [16, 24], 'plain'], // 2-D, other shape: the cached one must go
      [[2, 20, 12], [2, 12, 16], 'plain'], // per-batch (views, never the data's own id)
      [[3, 8, 16], [16, 24], 'plain'], // shared-b per-batch
      [[7, 48], [48, 8], 'fused'], // fused with bias and relu, 2-D
      [[7, 24], [24, 16], 'fused'],
      [[20, 24], [24, 16], 'plain'],
      [[9, 8], [8, 48], 'fused'],
      [[5, 16], [16, 24], 'plain'],
      [[3, 8, 16], [16, 24], 'fused'], // batched fused: per-batch product, bias added after
      [[11, 24], [24, 16], 'plain'],
    ];
    expect(prefersPerBatch([2, 20, 12], [2, 12, 16])).toBe(true);
    expect(prefersPerBatch([3, 8, 16], [16, 24])).toBe(true);
    const inputs = steps.map(([aShape, bShape]) => ({
      a: rng.normals(aShape.reduce((p, d) => p * d, 1)),
      bias: rng.normals(bShape[bShape.length - 1]!),
    }));
    const run = () => {
      const b = tf.tensor1d(Float32Array.from(bData));
      return steps.map(([aShape, bShape, kind], i) => {
        const a = tf.tensor(Float32Array.from(inputs[i]!.a), aShape);
        const bShaped = tf.reshape(b, bShape);
        if (kind === 'plain') return tf.matMul(a, bShaped);
        const bias = tf.tensor1d(Float32Array.from(inputs[i]!.bias));
        return tf.fused.matMul({ a, b: bShaped, bias, activation: 'relu' });
      });
    };
    const wasm = await onEngine<Float32Array[]>('wasm', run);
    const cpu = await onEngine<Float32Array[]>('cpu', run);
    steps.forEach(([aShape, bShape, kind], i) => {
      const label = `seed ${rng.seed} step ${i}: a [${aShape}] b [${bShape}] ${kind}`;
      const plain = refMatMul(inputs[i]!.a, aShape, bData, bShape, false, false).data;
      const n = bShape[bShape.length - 1]!;
      const ref = kind === 'plain' ? plain : plain.map((v, j) => Math.max(0, v + inputs[i]!.bias[j % n]!));
      expect(scaledError(wasm[i]!, cpu[i]!), label).toBeLessThanOrEqual(TOL);
      expect(scaledError(wasm[i]!, ref), label).toBeLessThanOrEqual(TOL);
    });
  });

  it('the same shape every time evicts nothing; a new shape evicts once, keeping the data and its memory', async () => {
    await tf.setBackend('wasm');
    const backend = tf.backend() as unknown as WasmBackend;
    const rng = testRng();
    const values = Float32Array.from(rng.normals(12));
    const b = tf.tensor2d(values, [3, 4]);
    const a = tf.tensor2d(Float32Array.from(rng.normals(6)), [2, 3]);
    const bWide = tf.reshape(b, [2, 6]);
    const live = heapStats()!.liveBytes;
    const cId = backend.dataIdMap.get(b.dataId)!.id;
    expect(evictStaleMatMulOperator(b, backend)).toBe(false); // first sight
    expect(evictStaleMatMulOperator(b, backend)).toBe(false);
    tf.matMul(a, b).dispose();
    expect(evictStaleMatMulOperator(b, backend)).toBe(false);
    expect(evictStaleMatMulOperator(bWide, backend)).toBe(true);
    expect(evictStaleMatMulOperator(bWide, backend)).toBe(false);
    expect(evictStaleMatMulOperator(b, backend)).toBe(true);
    // Same C-side id, same memory, same values; the C side still knows the tensor.
    expect(backend.dataIdMap.get(b.dataId)!.id).toBe(cId);
    expect(heapStats()!.liveBytes).toBe(live);
    expect(Array.from(b.dataSync())).toEqual(Array.from(values));
    const product = tf.matMul(a, b);
    const ref = refMatMul(a.dataSync(), [2, 3], values, [3, 4], false, false).data;
    expect(scaledError(product.dataSync(), ref)).toBeLessThanOrEqual(TOL);
    tf.dispose([a, b, bWide, product]);
  });
});
