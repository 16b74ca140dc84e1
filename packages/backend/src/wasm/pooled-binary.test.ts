// Axes: R rows of the full operand, X the row width.
import * as tf from '@tensorflow/tfjs-core';
import { testRng, type TestRng } from '@peer/test-utils';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { initBackend } from '../init-backend.js';
import { kernelPool } from '../wasm-memory/kernel-pool.js';
import { installWasmFixes, uninstallWasmFixes } from './install-wasm-fixes.js';
import { POOLED_BINARY_MIN_SIZE, setPooledBinaryMinSize } from './pooled-binary.js';

const size = (s: number[]) => s.reduce((p, d) => p * d, 1);
/** Bit patterns with every NaN made the canonical one: WebAssembly leaves a NaN result's sign and payload to the machine. */
const bits = (x: Float32Array) => Array.from(new Uint32Array(Float32Array.from(x, (v) => (Number.isNaN(v) ? NaN : v)).buffer));

const SPECIAL = [0, -0, Infinity, -Infinity, NaN, 3.4e38, -3.4e38, 1e-45, -1e-45, 1.1754942e-38];

/** Normal values with about one in four a special value (zeros of both signs, infinities, NaN, extremes, subnormals). */
function values(rng: TestRng, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => (rng.int(4) === 0 ? SPECIAL[rng.int(SPECIAL.length)]! : rng.normal() * 10 ** (rng.int(7) - 3)));
}

const OPS = [
  ['add', (a: tf.Tensor, b: tf.Tensor) => tf.add(a, b)],
  ['sub', (a: tf.Tensor, b: tf.Tensor) => tf.sub(a, b)],
  ['mul', (a: tf.Tensor, b: tf.Tensor) => tf.mul(a, b)],
] as const;

/** The element of an operand of `shape` that output element `i` (of `outShape`) reads, NumPy broadcasting. */
function sourceIndex(i: number, outShape: number[], shape: number[]): number {
  const padded = [...new Array<number>(outShape.length - shape.length).fill(1), ...shape];
  let [rest, at, stride] = [i, 0, 1];
  for (let d = outShape.length - 1; d >= 0; d--) {
    const index = rest % outShape[d]!;
    rest = Math.floor(rest / outShape[d]!);
    if (padded[d] !== 1) at += index * stride;
    stride *= padded[d]!;
  }
  return at;
}

/** The op in float64 of the float32 inputs, rounded once: one IEEE float32 operation gives exactly this. */
function reference(op: string, x: number, y: number): number {
  return Math.fround(op === 'add' ? x + y : op === 'sub' ? x - y : x * y);
}

beforeAll(async () => {
  await initBackend({ backend: 'wasm', threads: 2, log: false });
});
afterAll(async () => {
  setPooledBinaryMinSize(undefined);
  installWasmFixes();
  await initBackend({ backend: 'wasm', threads: 1, log: false });
});

describe('Add, Sub and Multiply on the kernel pool', () => {
  // [a shape, b shape]: same shape (sizes that are and are not a multiple of 4), a row broadcast on
  // either side, with and without leading size-1 axes.
  const random = testRng();
  const [r, x] = [3 + random.int(300), 2 + random.int(70)];
  const CASES: [number[], number[]][] = [
    [[r, x], [r, x]],
    [[4 * r], [4 * r]],
    [[2, 3, x], [2, 3, x]],
    [[r, x], [x]],
    [[x], [r, x]],
    [[2, r, x], [1, 1, x]],
    [[1, x], [2, r, x]],
    [[2, 1, x], [1, x]],
    [[2, r, x], [r, x]],
    [[1, r, x], [3, r, x]],
    [[r, x + 1], [r, 1]],
    [[r, 1], [r, x + 1]],
    [[2, 3, x + 1], [2, 3, 1]],
    [[1, r, x + 1], [r, 1]],
  ];
  for (const [op, f] of OPS) {
    for (const [aShape, bShape] of CASES) {
      it(`${op}: the engine's bits on fresh random inputs with NaN, infinities and signed zeros: a [${aShape}] b [${bShape}] (seed ${random.seed})`, () => {
        const rng = testRng();
        const av = values(rng, size(aShape));
        const bv = values(rng, size(bShape));
        const a = tf.tensor(av, aShape);
        const b = tf.tensor(bv, bShape);
        const spy = vi.spyOn(kernelPool()!, 'run');
        try {
          // The pooled result first: its output must not land on the freed memory of the engine's
          // result for the same inputs (fresh outputs are not cleared).
          setPooledBinaryMinSize(0);
          const before = tf.memory().numTensors;
          const pooled = tf.tidy(() => f(a, b));
          expect(tf.memory().numTensors).toBe(before + 1);
          expect(spy).toHaveBeenCalledTimes(1);
          expect(spy.mock.calls[0]![3]).toMatch(new RegExp(`^${op}(_col_[ab])?$`));
          const got = pooled.dataSync() as Float32Array;
          // The same kernel on this thread (under the pool's threshold on the threaded engine).
          setPooledBinaryMinSize(Infinity);
          const local = tf.tidy(() => f(a, b));
          expect(spy).toHaveBeenCalledTimes(1);
          const here = local.dataSync() as Float32Array;
          uninstallWasmFixes();
          const engine = tf.tidy(() => f(a, b));
          installWasmFixes();
          expect(pooled.shape).toEqual(engine.shape);
          const want = engine.dataSync() as Float32Array;
          tf.dispose([pooled, local, engine]);
          expect(bits(got), `seed ${rng.seed}`).toEqual(bits(want));
          expect(bits(here), `seed ${rng.seed}`).toEqual(bits(want));
          // And against one float32 rounding of the exact result, element by element.
          for (let i = 0; i < got.length; i++) {
            const ai = sourceIndex(i, pooled.shape, aShape);
            const bi = sourceIndex(i, pooled.shape, bShape);
            expect(Object.is(got[i], reference(op, av[ai]!, bv[bi]!)) || (Number.isNaN(got[i]) && Number.isNaN(reference(op, av[ai]!, bv[bi]!))), `seed ${rng.seed} at ${i}`).toBe(true);
          }
        } finally {
          spy.mockRestore();
          installWasmFixes();
          setPooledBinaryMinSize(undefined);
          tf.dispose([a, b]);
        }
      });
    }
  }

  it('leaves other layouts, dtypes and one thread to the engine, and small tensors to this thread', async () => {
    const spy = vi.spyOn(kernelPool()!, 'run');
    try {
      setPooledBinaryMinSize(0);
      tf.tidy(() => {
        // A broadcast middle axis, a scalar, int32.
        expect(Array.from(tf.add(tf.ones([2, 3, 4]), tf.tensor([1, 2, 3, 4, 5, 6, 7, 8], [2, 1, 4])).dataSync().slice(0, 5))).toEqual([2, 3, 4, 5, 2]);
        expect(Array.from(tf.mul(tf.ones([3, 4]), tf.scalar(3)).dataSync().slice(0, 2))).toEqual([3, 3]);
        expect(Array.from(tf.sub(tf.tensor([5, 6], [2], 'int32'), tf.tensor([1, 1], [2], 'int32')).dataSync())).toEqual([4, 5]);
      });
      expect(spy).not.toHaveBeenCalled();
      setPooledBinaryMinSize(undefined);
      // Under the default size for 2 threads, and at it.
      tf.tidy(() => tf.add(tf.ones([2 * POOLED_BINARY_MIN_SIZE - 4]), tf.ones([2 * POOLED_BINARY_MIN_SIZE - 4])).dataSync());
      expect(spy).not.toHaveBeenCalled();
      const y = tf.tidy(() => tf.add(tf.ones([2 * POOLED_BINARY_MIN_SIZE]), tf.ones([2 * POOLED_BINARY_MIN_SIZE])).dataSync());
      expect(spy).toHaveBeenCalledTimes(1);
      expect(y[y.length - 1]).toBe(2);
    } finally {
      spy.mockRestore();
      setPooledBinaryMinSize(undefined);
    }
    await initBackend({ backend: 'wasm', threads: 1, log: false });
    try {
      expect(kernelPool()).toBeUndefined();
      setPooledBinaryMinSize(0);
      expect(Array.from(tf.tidy(() => tf.mul(tf.fill([1000], 2), tf.fill([1000], 3)).dataSync().slice(0, 2)))).toEqual([6, 6]);
    } finally {
      setPooledBinaryMinSize(undefined);
      await initBackend({ backend: 'wasm', threads: 2, log: false });
    }
    expect(() => setPooledBinaryMinSize(-1)).toThrow(/size must be >= 0, got -1/);
  });
});
