// Axes: Bt output batches, M rows, K contracted axis, P columns.
import * as tf from '@tensorflow/tfjs-core';
import { testRng, type TestRng } from '@peer/test-utils';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { initBackend } from '../init-backend.js';
import { kernelPool } from '../wasm-memory/kernel-pool.js';
import { PASS_PARTS_PER_THREAD } from '../wasm-memory/pooled-pass.js';
import { refMatMul } from './engine-compare.test-util.js';
import { POOLED_MAT_MUL_MIN_WORK, pooledBlockRows, setPooledMatMulMinWork, splitRows } from './pooled-small-mat-mul.js';
import { POOLED_MAT_MUL_MIN_ROWS, setSmallMatMulMaxWork } from './small-mat-mul.js';

interface Case {
  aShape: number[];
  bShape: number[];
  transposeA: boolean;
  transposeB: boolean;
  a: Float32Array;
  b: Float32Array;
  /** Equal batch axes: tfjs-core can differentiate the product (it does not sum over broadcast axes). */
  grad: boolean;
}

const size = (s: number[]) => s.reduce((p, d) => p * d, 1);
/** Bit patterns, so that -0 and +0 count as different. */
const bits = (x: Float32Array) => Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length));

/**
 * Random products whose every per-batch product (forward and both gradient products) takes the
 * per-batch path on the small kernel: M, K, P in [16, 80), so (rows - 4) K P >= 2048, and at most
 * 7 * 80^3 multiply-adds with a shared b.
 */
function randomCases(rng: TestRng): Case[] {
  const dim = () => 16 + rng.int(64);
  const bt = () => 2 + rng.int(6);
  const cases: Case[] = [];
  const add = (aBatch: number[], bBatch: number[], grad: boolean) => {
    const [m, k, p] = [dim(), dim(), dim()];
    const transposeA = rng.int(2) === 1;
    const transposeB = rng.int(2) === 1;
    const aShape = [...aBatch, ...(transposeA ? [k, m] : [m, k])];
    const bShape = [...bBatch, ...(transposeB ? [p, k] : [k, p])];
    cases.push({ aShape, bShape, transposeA, transposeB, a: Float32Array.from(rng.normals(size(aShape))), b: Float32Array.from(rng.normals(size(bShape))), grad });
  };
  for (let i = 0; i < 3; i++) {
    const n = bt();
    add([n], [n], true); // equal batches
  }
  const [n, r] = [bt(), bt()];
  add([2, n], [2, n], true); // two batch axes
  add([1, n], [r, 1], false); // both sides broadcast
  add([n, 1], [n, r], false);
  add([r, n], [n], false); // a missing axis
  add([n], [], false); // a shared 2-D b: one product of Bt * M rows
  add([n], [1], false); // a shared b with a size-1 batch axis
  return cases;
}

/** The forward product and, for differentiable cases, the gradients of sum(w * a @ b) with a random w. */
function compute(c: Case, w: Float32Array[]): Float32Array[] {
  return tf.tidy(() => {
    const a = tf.tensor(c.a, c.aShape);
    const b = tf.tensor(c.b, c.bShape);
    const y = tf.matMul(a, b, c.transposeA, c.transposeB);
    const out = [y.dataSync() as Float32Array];
    if (c.grad) {
      const weight = tf.tensor(w[0]!.subarray(0, y.size), y.shape);
      const grads = tf.grads((x: tf.Tensor, z: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, z, c.transposeA, c.transposeB), weight)))([a, b]);
      out.push(...grads.map((g) => g.dataSync() as Float32Array));
    }
    return out;
  });
}

afterAll(async () => {
  setPooledMatMulMinWork(undefined);
  await initBackend({ backend: 'wasm', threads: 1, log: false });
});

describe('small per-batch products split over the kernel pool', () => {
  it('give the bits of one thread on fresh random shapes, broadcast batch axes, a shared b, and in the gradient products', async () => {
    const rng = testRng();
    const cases = randomCases(rng);
    const weights = [Float32Array.from(rng.normals(7 * 2 * 80 * 80))];

    await initBackend({ backend: 'wasm', threads: 1, log: false });
    expect(kernelPool()).toBeUndefined();
    const one = cases.map((c) => compute(c, weights));

    await initBackend({ backend: 'wasm', threads: 2, log: false });
    const pool = kernelPool();
    expect(pool?.threads).toBe(2);
    const spy = vi.spyOn(pool!, 'run');
    try {
      setPooledMatMulMinWork(0);
      const before = tf.memory().numTensors;
      const pooled = cases.map((c) => compute(c, weights));
      expect(tf.memory().numTensors).toBe(before);
      // One pass per product: each forward, and for each differentiable case the forward inside
      // tf.grads and the two gradient products.
      const passes = spy.mock.calls.filter((call) => call[3] === 'mat_mul_list');
      expect(passes.length).toBe(cases.length + 3 * cases.filter((c) => c.grad).length);
      // Each in 2 to PASS_PARTS_PER_THREAD parts per thread (no more parts than products or row blocks).
      for (const call of passes) expect(call[4].length >= 2 && call[4].length <= 2 * PASS_PARTS_PER_THREAD).toBe(true);

      setPooledMatMulMinWork(Infinity);
      spy.mockClear();
      const unpooled = cases.map((c) => compute(c, weights));
      expect(spy).not.toHaveBeenCalled();

      cases.forEach((c, i) => {
        const label = `seed ${rng.seed} a [${c.aShape}] b [${c.bShape}] tA=${c.transposeA} tB=${c.transposeB}`;
        for (let j = 0; j < one[i]!.length; j++) {
          expect(bits(pooled[i]![j]!), `${label} output ${j}`).toEqual(bits(one[i]![j]!));
          expect(bits(unpooled[i]![j]!), `${label} output ${j}`).toEqual(bits(one[i]![j]!));
        }
        // And the value: K sequential float32 multiply-adds are within about K u sum |a b| of float64.
        const ref = refMatMul(c.a, c.aShape, c.b, c.bShape, c.transposeA, c.transposeB);
        const magnitude = refMatMul(c.a.map(Math.abs), c.aShape, c.b.map(Math.abs), c.bShape, c.transposeA, c.transposeB).data;
        const k = c.transposeA ? c.aShape[c.aShape.length - 2]! : c.aShape[c.aShape.length - 1]!;
        const got = pooled[i]![0]!;
        expect(got.length).toBe(ref.data.length);
        for (let e = 0; e < got.length; e++) {
          expect(Math.abs(got[e]! - ref.data[e]!), `${label} at ${e}`).toBeLessThanOrEqual(1.01 * k * 2 ** -24 * magnitude[e]! + 1e-30);
        }
      });
    } finally {
      spy.mockRestore();
      setPooledMatMulMinWork(undefined);
    }
  });

  it('pools only products with enough work per thread, and never on one thread', async () => {
    await initBackend({ backend: 'wasm', threads: 2, log: false });
    const spy = vi.spyOn(kernelPool()!, 'run');
    const product = (aShape: number[], bShape: number[]) => tf.tidy(() => tf.matMul(tf.ones(aShape), tf.ones(bShape)).dataSync());
    try {
      // 16 x [64,64]x[64,64]: 2^22 multiply-adds, 2^21 per thread, under the threshold.
      expect(2 ** 22 / 2).toBeLessThan(POOLED_MAT_MUL_MIN_WORK);
      product([16, 64, 64], [16, 64, 64]);
      // A single product of 2^21 multiply-adds (small kernel) stays on this thread: under the threshold.
      product([128, 128], [128, 128]);
      expect(spy).not.toHaveBeenCalled();
      // 16 x [128,128]x[128,128] (PEER's sub-key scores at N = 128^2): 2^25 multiply-adds, 2^24 per thread.
      expect(2 ** 25 / 2).toBeGreaterThanOrEqual(POOLED_MAT_MUL_MIN_WORK);
      const y = product([16, 128, 128], [16, 128, 128]);
      expect(spy).toHaveBeenCalledTimes(1);
      expect(Array.from(y.slice(0, 3))).toEqual([128, 128, 128]);
    } finally {
      spy.mockRestore();
    }
    await initBackend({ backend: 'wasm', threads: 1, log: false });
    expect(kernelPool()).toBeUndefined();
    expect(() => setPooledMatMulMinWork(-1)).toThrow(/work must be >= 0, got -1/);
  });
});

describe('single large products on the threaded engine', () => {
  it('run on the kernel pool in blocks of rows and give the bits of XNNPACK and of one thread, gradients included', async () => {
    const rng = testRng();
    // [M, K] x [K, P] with M >= POOLED_MAT_MUL_MIN_ROWS; the first over the default threshold (2^27
    // multiply-adds), the others forced onto the pool; transposed operands too.
    const cases: Case[] = [
      [512, 256, 1024, false, false],
      [64 + rng.int(200), 16 + rng.int(300), 8 + rng.int(100), false, false],
      [64 + rng.int(200), 16 + rng.int(100), 8 + rng.int(100), true, false],
      [64 + rng.int(200), 16 + rng.int(100), 8 + rng.int(100), false, true],
    ].map(([m, k, p, transposeA, transposeB]) => {
      const aShape = transposeA ? [k as number, m as number] : [m as number, k as number];
      const bShape = transposeB ? [p as number, k as number] : [k as number, p as number];
      return { aShape, bShape, transposeA: transposeA as boolean, transposeB: transposeB as boolean, a: Float32Array.from(rng.normals(size(aShape))), b: Float32Array.from(rng.normals(size(bShape))), grad: true };
    });
    const weights = [Float32Array.from(rng.normals(512 * 1024))];

    await initBackend({ backend: 'wasm', threads: 1, log: false });
    const one = cases.map((c) => compute(c, weights));

    await initBackend({ backend: 'wasm', threads: 2, log: false });
    const spy = vi.spyOn(kernelPool()!, 'run');
    try {
      const before = tf.memory().numTensors;
      const first = compute(cases[0]!, weights);
      // The forward at the default threshold: one pass of at least ceil(512 / block rows) blocks,
      // in as many parts as passParts gives 2^27 multiply-adds.
      const forward = spy.mock.calls.find((call) => call[3] === 'mat_mul_list')!;
      const parts = Math.min(2 * PASS_PARTS_PER_THREAD, Math.floor(2 ** 27 / POOLED_MAT_MUL_MIN_WORK));
      expect(forward[4]).toHaveLength(parts);
      expect(forward[4].reduce((sum, call) => sum + call[1]!, 0)).toBe(Math.max(parts, Math.ceil(512 / pooledBlockRows(256))));
      setPooledMatMulMinWork(0);
      const pooled = [first, ...cases.slice(1).map((c) => compute(c, weights))];
      expect(tf.memory().numTensors).toBe(before);
      // XNNPACK (one thread on this engine) for the same products.
      setSmallMatMulMaxWork(0);
      const xnnpack = cases.map((c) => compute(c, weights));
      cases.forEach((c, i) => {
        const label = `seed ${rng.seed} a [${c.aShape}] b [${c.bShape}] tA=${c.transposeA} tB=${c.transposeB}`;
        for (let j = 0; j < one[i]!.length; j++) {
          expect(bits(pooled[i]![j]!), `${label} output ${j} against one thread`).toEqual(bits(one[i]![j]!));
          expect(bits(xnnpack[i]![j]!), `${label} output ${j} against XNNPACK`).toEqual(bits(one[i]![j]!));
        }
      });
    } finally {
      spy.mockRestore();
      setPooledMatMulMinWork(undefined);
      setSmallMatMulMaxWork(undefined);
    }
  });

  it('leave a product of few rows and a large b to XNNPACK', async () => {
    await initBackend({ backend: 'wasm', threads: 2, log: false });
    const spy = vi.spyOn(kernelPool()!, 'run');
    try {
      const m = POOLED_MAT_MUL_MIN_ROWS - 1;
      const y = tf.tidy(() => tf.matMul(tf.ones([m, 4096]), tf.ones([4096, 1024])).dataSync());
      expect(spy).not.toHaveBeenCalled();
      expect(y[0]).toBe(4096);
    } finally {
      spy.mockRestore();
    }
  });
});

describe('splitRows', () => {
  it('cuts one product into whole 4-row tiles covering every row once', () => {
    const [k, p] = [3, 5];
    const parts = splitRows({ a: 1000, b: 7, out: 5000, rows: 10 }, 2, k, p);
    expect(parts).toEqual([
      { a: 1000, b: 7, out: 5000, rows: 4 },
      { a: 1000 + 4 * 4 * k, b: 7, out: 5000 + 4 * 4 * p, rows: 6 },
    ]);
    expect(splitRows({ a: 0, b: 0, out: 0, rows: 3 }, 2, k, p)).toEqual([{ a: 0, b: 0, out: 0, rows: 3 }]);
  });
});
