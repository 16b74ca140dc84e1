// Axes: Bt batch, M rows, P columns, C words per element: out[b, p, m, c] = x[b, m, p, c].
import * as tf from '@tensorflow/tfjs-core';
import { testRng } from '@peer/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../init-backend.js';
import { kernelPool } from '../wasm-memory/kernel-pool.js';
import { disableTransposeKernels, setPooledTransposeMinSize, swapAxisBlocks, type AxisBlockSwap } from './blocked-transpose.js';
import { asBlockSwap } from './transpose.js';
import type { WasmBackend } from './wasm-backend.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', threads: 2, log: false });
  expect(kernelPool()?.threads).toBe(2);
});
afterAll(async () => {
  setPooledTransposeMinSize(undefined);
  disableTransposeKernels(false);
  await initBackend({ backend: 'wasm', threads: 1, log: false });
});

/** Plain reference: out[b, j, i, c] = x[b, i, j, c]. */
function reference(x: Int32Array, { batch, rows, cols, chunk }: AxisBlockSwap): Int32Array {
  const out = new Int32Array(x.length);
  for (let b = 0; b < batch; b++)
    for (let i = 0; i < rows; i++)
      for (let j = 0; j < cols; j++)
        for (let c = 0; c < chunk; c++) out[((b * cols + j) * rows + i) * chunk + c] = x[((b * rows + i) * cols + j) * chunk + c]!;
  return out;
}

/** Runs the swap on the engine's heap as int32 (any 32-bit pattern, NaN payloads included). */
function swapOnEngine(x: Int32Array, swap: AxisBlockSwap, dtype: 'int32' | 'float32'): Int32Array {
  const shape = [swap.batch, swap.rows, swap.cols, swap.chunk];
  const input = dtype === 'int32' ? tf.tensor(x, shape, 'int32') : tf.tensor(new Float32Array(x.buffer.slice(0)), shape, 'float32');
  const backend = tf.backend() as unknown as WasmBackend;
  const info = swapAxisBlocks(input, backend, swap, [swap.batch, swap.cols, swap.rows, swap.chunk]);
  const out = tf.engine().makeTensorFromTensorInfo(info);
  const values = out.dataSync();
  const bits = new Int32Array(new Uint8Array(values.buffer, values.byteOffset, values.byteLength).slice().buffer);
  tf.dispose([input, out]);
  return bits;
}

const ROUTES = [
  ['the kernel pool', () => setPooledTransposeMinSize(0)],
  ['the calling thread', () => setPooledTransposeMinSize(Infinity)],
  ['the JS copy', () => disableTransposeKernels(true)],
] as const;

describe('swapAxisBlocks', () => {
  for (const [route, setRoute] of ROUTES) {
    it(`moves every bit to its place on ${route}, for fresh random shapes (edges of 4x4 tiles and 16-row strips, chunks 1 to 64)`, () => {
      setRoute();
      try {
        const rng = testRng();
        for (const chunk of [1, 1, 1, 2, 3, 4, 5, 8, 64]) {
          const swap = { batch: 1 + rng.int(3), rows: 1 + rng.int(40), cols: 1 + rng.int(40), chunk };
          const size = swap.batch * swap.rows * swap.cols * chunk;
          const x = Int32Array.from({ length: size }, () => rng.int(2 ** 32) - 2 ** 31);
          const expected = Array.from(reference(x, swap));
          for (const dtype of ['int32', 'float32'] as const) {
            expect(Array.from(swapOnEngine(x, swap, dtype)), `${dtype} ${JSON.stringify(swap)} (seed ${rng.seed})`).toEqual(expected);
          }
        }
      } finally {
        setPooledTransposeMinSize(undefined);
        disableTransposeKernels(false);
      }
    });
  }

  it('splits a large swap over both threads and still equals the reference (a [4096, 1024] weight-gradient transpose)', () => {
    const rng = testRng();
    const swap = { batch: 1, rows: 4096 + rng.int(4), cols: 1024 + rng.int(4), chunk: 1 };
    const x = Int32Array.from({ length: swap.rows * swap.cols }, () => rng.int(2 ** 32) - 2 ** 31);
    const before = tf.memory().numTensors;
    const expected = reference(x, swap);
    const got = swapOnEngine(x, swap, 'float32');
    expect(got.findIndex((v, i) => v !== expected[i])).toBe(-1);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses dimensions that do not match the tensor', () => {
    const x = tf.zeros([2, 3]);
    expect(() => swapAxisBlocks(x, tf.backend() as unknown as WasmBackend, { batch: 1, rows: 3, cols: 3, chunk: 1 }, [3, 2])).toThrow(/does not match x \[2,3\]/);
    x.dispose();
  });
});

describe('asBlockSwap: which permutations are a swap of two adjacent blocks of axes', () => {
  const shape = [2, 3, 5, 7];
  const CASES: [number[], AxisBlockSwap | undefined][] = [
    [[0, 1, 3, 2], { batch: 6, rows: 5, cols: 7, chunk: 1 }],
    [[0, 2, 1, 3], { batch: 2, rows: 3, cols: 5, chunk: 7 }],
    [[1, 2, 0, 3], { batch: 1, rows: 2, cols: 15, chunk: 7 }],
    [[2, 0, 1, 3], { batch: 1, rows: 6, cols: 5, chunk: 7 }],
    [[3, 0, 1, 2], { batch: 1, rows: 30, cols: 7, chunk: 1 }],
    [[1, 0, 2, 3], { batch: 1, rows: 2, cols: 3, chunk: 35 }],
    [[1, 0, 3, 2], undefined],
    [[0, 3, 2, 1], undefined],
    [[3, 2, 1, 0], undefined],
    [[0, 1, 2, 3], undefined],
  ];
  for (const [perm, expected] of CASES) {
    it(`perm [${perm}] of [${shape}]`, () => expect(asBlockSwap(perm, shape, shape)).toEqual(expected));
  }

  it('ignores size-1 axes', () => {
    // [2, 1, 5, 7] with perm [0, 2, 1, 3] moves no data; [3, 0, 2, 1] swaps [2, 5] with [7].
    const s = [2, 1, 5, 7];
    const kept = [2, 5, 7];
    expect(asBlockSwap([3, 0, 2, 1].filter((a) => s[a] !== 1), s, kept)).toEqual({ batch: 1, rows: 10, cols: 7, chunk: 1 });
  });
});
