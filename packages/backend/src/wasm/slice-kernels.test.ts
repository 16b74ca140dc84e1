// x [S_0, ..., S_{r-1}]; regions by begin/size (Slice, Unpack, SplitV) or begin/end/strides (StridedSlice).
import * as tf from '@tensorflow/tfjs-core';
import { expectNoLeaks, testRng, type TestRng } from '@peer/test-utils';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { heapStats } from '../heap-guard.js';
import { initBackend } from '../init-backend.js';
import { onEngine, scaledError } from './engine-compare.test-util.js';
import { isFixInstalled } from './wasm-backend.js';

type Dtype = 'float32' | 'int32' | 'bool';
const DTYPES: Dtype[] = ['float32', 'int32', 'bool'];
const size = (s: number[]) => s.reduce((p, d) => p * d, 1);

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: false });
  for (const k of [tf.Slice, tf.Unpack, tf.SplitV, tf.StridedSlice]) expect(isFixInstalled(k)).toBe(true);
});

function randomData(rng: TestRng, n: number, dtype: Dtype): Float32Array | Int32Array | Uint8Array {
  if (dtype === 'float32') return Float32Array.from(rng.normals(n));
  if (dtype === 'int32') return Int32Array.from({ length: n }, () => rng.int(2001) - 1000);
  return Uint8Array.from({ length: n }, () => rng.int(2));
}

/** Row-major multi-index of flat position `flat` in `shape`. */
function unravel(flat: number, shape: number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = flat % shape[d]!;
    flat = Math.floor(flat / shape[d]!);
  }
  return idx;
}

function ravel(idx: number[], shape: number[]): number {
  return idx.reduce((p, i, d) => p * shape[d]! + i, 0);
}

/** Plain reference: x[begin + i] for every i in the box `size` (no -1 here). */
function refSlice(x: ArrayLike<number>, shape: number[], begin: number[], sz: number[]): number[] {
  return Array.from({ length: size(sz) }, (_, f) => x[ravel(unravel(f, sz).map((i, d) => begin[d]! + i), shape)]!);
}

/** Plain reference of x[begin:end:strides] per axis with NumPy's clamping (no masks). */
function refStrided(x: ArrayLike<number>, shape: number[], begin: number[], end: number[], strides: number[]): { data: number[]; shape: number[] } {
  const axes = shape.map((n, d) => {
    const s = strides[d]!;
    const norm = (v: number) => (v < 0 ? v + n : v);
    const lo = s > 0 ? Math.min(Math.max(norm(begin[d]!), 0), n) : Math.min(Math.max(norm(begin[d]!), -1), n - 1);
    const hi = s > 0 ? Math.min(Math.max(norm(end[d]!), 0), n) : Math.min(Math.max(norm(end[d]!), -1), n - 1);
    const picks: number[] = [];
    for (let i = lo; s > 0 ? i < hi : i > hi; i += s) picks.push(i);
    return picks;
  });
  const outShape = axes.map((p) => p.length);
  const data = Array.from({ length: size(outShape) }, (_, f) => x[ravel(unravel(f, outShape).map((i, d) => axes[d]![i]!), shape)]!);
  return { data, shape: outShape };
}

/** Runs `fn` on x (as a tensor of `dtype`) on both engines; checks dtypes, returns plain arrays. */
async function bothEngines(x: ArrayLike<number>, shape: number[], dtype: Dtype, fn: (t: tf.Tensor) => tf.Tensor | tf.Tensor[]) {
  const shapes: number[][][] = [];
  const run = () => {
    const out = fn(tf.tensor(x as Float32Array, shape, dtype));
    const list = Array.isArray(out) ? out : [out];
    for (const t of list) expect(t.dtype).toBe(dtype);
    shapes.push(list.map((t) => t.shape));
    return list;
  };
  const wasm = (await onEngine<Float32Array[]>('wasm', run)).map((a) => Array.from(a));
  const cpu = (await onEngine<Float32Array[]>('cpu', run)).map((a) => Array.from(a));
  expect(shapes[0]).toEqual(shapes[1]);
  return { wasm, cpu, shapes: shapes[0]! };
}

describe('Slice on wasm (region copy)', () => {
  // [shape, begin, size]: runs of every length, -1 sizes, rank 1-5, a contiguous block, empty slices.
  const CASES: [number[], number[], number[]][] = [
    [[10], [3], [4]],
    [[7, 9], [2, 3], [4, 5]],
    [[7, 9], [2, 0], [3, -1]],
    [[4, 5, 6], [1, 2, 3], [2, -1, 2]],
    [[3, 4, 5, 40], [1, 0, 0, 2], [2, 4, 5, 35]],
    [[3, 4, 5, 6], [1, 1, 0, 0], [2, 2, -1, -1]],
    [[2, 3, 4, 5, 6], [1, 1, 1, 1, 1], [1, 2, 3, 4, 5]],
    [[5, 1, 6], [2, 0, 0], [3, 1, 6]],
    [[4, 5], [2, 1], [0, 3]],
    [[4, 5], [4, 0], [0, -1]],
    [[4, 5], [0, 0], [-1, -1]],
  ];
  for (const dtype of DTYPES) {
    for (const [shape, begin, sz] of CASES) {
      it(`${dtype} ${JSON.stringify(shape)} begin ${JSON.stringify(begin)} size ${JSON.stringify(sz)} matches cpu and a plain reference`, async () => {
        const rng = testRng();
        const x = randomData(rng, size(shape), dtype);
        const { wasm, cpu, shapes } = await bothEngines(x, shape, dtype, (t) => tf.slice(t, begin, sz));
        const resolved = sz.map((s, d) => (s === -1 ? shape[d]! - begin[d]! : s));
        expect(shapes[0]).toEqual(resolved);
        expect(wasm[0]).toEqual(refSlice(x, shape, begin, resolved));
        expect(wasm[0]).toEqual(cpu[0]);
      });
    }
  }

  it('reads only the region: no readSync of the input, and a whole-tensor slice shares its data', async () => {
    await tf.setBackend('wasm');
    const backend = tf.backend();
    const x = tf.randomNormal([64, 32]);
    const spy = vi.spyOn(backend, 'readSync');
    tf.tidy(() => {
      tf.slice(x, [3, 4], [20, 8]);
      tf.unstack(x);
      tf.split(x, [5, 27], 1);
      tf.stridedSlice(x, [1, 0], [60, 32], [3, 2]);
    });
    expect(spy).not.toHaveBeenCalled();
    spy.mockRestore();
    const whole = tf.slice(x, [0, 0], [-1, -1]);
    expect(whole.dataId).toBe(x.dataId);
    const expected = Array.from(x.dataSync());
    x.dispose();
    expect(Array.from(whole.dataSync())).toEqual(expected);
    whole.dispose();
  });

  it('gradient of sum(w * slice(x)) matches cpu and the padded w', async () => {
    const rng = testRng();
    const [shape, begin, sz] = [[6, 7, 5], [1, 2, 0], [4, 3, 5]];
    const x = Float32Array.from(rng.normals(size(shape)));
    const w = Float32Array.from(rng.normals(size(sz)));
    const run = () => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.tensor(w, sz), tf.slice(t, begin, sz))))(tf.tensor(x, shape));
    const wasm = await onEngine<Float32Array>('wasm', run);
    const cpu = await onEngine<Float32Array>('cpu', run);
    const expected = new Array<number>(size(shape)).fill(0);
    for (let f = 0; f < w.length; f++) expected[ravel(unravel(f, sz).map((i, d) => begin[d]! + i), shape)] = w[f]!;
    expect(Array.from(wasm)).toEqual(expected);
    expect(scaledError(wasm, cpu)).toBe(0);
  });
});

describe('Unpack and SplitV on wasm (region copies)', () => {
  const shape = [4, 3, 5];
  for (const dtype of DTYPES) {
    for (const axis of [0, 1, 2, -1]) {
      it(`unstack ${dtype} ${JSON.stringify(shape)} along axis ${axis} matches cpu and a plain reference`, async () => {
        const rng = testRng();
        const x = randomData(rng, size(shape), dtype);
        const { wasm, cpu, shapes } = await bothEngines(x, shape, dtype, (t) => tf.unstack(t, axis));
        const a = axis < 0 ? axis + shape.length : axis;
        expect(wasm).toHaveLength(shape[a]!);
        wasm.forEach((part, i) => {
          const begin = shape.map((_, d) => (d === a ? i : 0));
          const sz = shape.map((s, d) => (d === a ? 1 : s));
          expect(shapes[i]).toEqual(shape.filter((_, d) => d !== a));
          expect(part).toEqual(refSlice(x, shape, begin, sz));
        });
        expect(wasm).toEqual(cpu);
      });
    }
    for (const [splits, axis] of [
      [[2, -1, 1], 2],
      [3, 1],
      [[1, 0, 3], 0],
    ] as [number | number[], number][]) {
      it(`split ${dtype} ${JSON.stringify(shape)} into ${JSON.stringify(splits)} along axis ${axis} matches cpu and a plain reference`, async () => {
        const rng = testRng();
        const x = randomData(rng, size(shape), dtype);
        const { wasm, cpu, shapes } = await bothEngines(x, shape, dtype, (t) => tf.split(t, splits, axis));
        let offset = 0;
        wasm.forEach((part, i) => {
          const width = shapes[i]![axis]!;
          const begin = shape.map((_, d) => (d === axis ? offset : 0));
          expect(part).toEqual(refSlice(x, shape, begin, shapes[i]!));
          offset += width;
        });
        expect(offset).toBe(shape[axis]);
        expect(wasm).toEqual(cpu);
      });
    }
  }

  it('gradients through unstack and split match cpu and the placed weights', async () => {
    const rng = testRng();
    const shape = [3, 4, 6];
    const x = Float32Array.from(rng.normals(size(shape)));
    const w = Float32Array.from(rng.normals(size(shape)));
    const run = () =>
      tf.grad((t: tf.Tensor) => {
        const wt = tf.tensor(w, shape);
        // Each element of x reaches the loss once through unstack and once through split.
        const viaUnstack = tf.unstack(t, 1).map((p, i) => tf.sum(tf.mul(p, tf.squeeze(tf.slice(wt, [0, i, 0], [3, 1, 6]), [1]))));
        const viaSplit = tf.split(t, [1, 5], 2).map((p, i) => tf.sum(tf.mul(p, tf.slice(wt, [0, 0, i], [3, 4, i === 0 ? 1 : 5]))));
        return tf.addN([...viaUnstack, ...viaSplit]);
      })(tf.tensor(x, shape));
    const wasm = await onEngine<Float32Array>('wasm', run);
    const cpu = await onEngine<Float32Array>('cpu', run);
    const expected = Array.from(w, (v) => 2 * v);
    expect(scaledError(wasm, expected), `seed ${rng.seed}`).toBeLessThanOrEqual(1e-6);
    expect(scaledError(wasm, cpu), `seed ${rng.seed}`).toBeLessThanOrEqual(1e-6);
  });
});

describe('StridedSlice on wasm', () => {
  // [shape, begin, end, strides]: plain boxes (region copy) and strided lattices, negative strides.
  const CASES: [number[], number[], number[], number[]][] = [
    [[10], [1], [9], [3]],
    [[6, 8], [1, 2], [5, 8], [1, 1]],
    [[6, 8], [1, 7], [5, 1], [2, -2]],
    [[4, 5, 40], [0, 1, 0], [4, 5, 40], [2, 1, 3]],
    [[3, 100], [0, 1], [3, 100], [1, 2]],
    [[3, 100], [0, 2], [3, 98], [1, 1]],
    [[6, 100], [1, 0], [6, 100], [2, 1]],
    [[4, 5, 6], [3, 4, 5], [-5, -6, -7], [-1, -2, -1]],
    [[5, 6], [2, 0], [2, 6], [1, 1]],
  ];
  for (const dtype of DTYPES) {
    for (const [shape, begin, end, strides] of CASES) {
      it(`${dtype} ${JSON.stringify(shape)} [${begin}:${end}:${strides}] matches cpu and a plain reference`, async () => {
        const rng = testRng();
        const x = randomData(rng, size(shape), dtype);
        const { wasm, cpu, shapes } = await bothEngines(x, shape, dtype, (t) => tf.stridedSlice(t, begin, end, strides));
        const ref = refStrided(x, shape, begin, end, strides);
        expect(shapes[0]).toEqual(ref.shape);
        expect(wasm[0]).toEqual(ref.data);
        expect(wasm[0]).toEqual(cpu[0]);
      });
    }
  }

  // [begin, end, strides, beginMask, endMask, ellipsisMask, newAxisMask, shrinkAxisMask] on [4, 5, 6].
  const MASKED: [number[], number[], number[], number, number, number, number, number][] = [
    [[1, 0, 2], [3, 0, 6], [1, 1, 2], 0, 2, 0, 0, 0],
    [[1, 2, 0], [2, 4, 6], [1, 1, 1], 0, 0, 0, 0, 1],
    [[0, 1], [0, 4], [1, 2], 0, 0, 1, 0, 0],
    [[0, 0, 1, 0], [4, 0, 5, 6], [2, 1, 1, 3], 0, 0, 0, 2, 0],
    [[3, 0, 5], [0, 5, 0], [-1, 2, -2], 2, 5, 0, 0, 0],
  ];
  for (const [begin, end, strides, bm, em, ell, na, sh] of MASKED) {
    it(`masks begin ${bm} end ${em} ellipsis ${ell} newAxis ${na} shrink ${sh}: int32 matches cpu`, async () => {
      const rng = testRng();
      const shape = [4, 5, 6];
      const x = randomData(rng, size(shape), 'int32');
      const { wasm, cpu } = await bothEngines(x, shape, 'int32', (t) => tf.stridedSlice(t, begin, end, strides, bm, em, ell, na, sh));
      expect(wasm[0]!.length).toBeGreaterThan(0);
      expect(wasm).toEqual(cpu);
    });
  }
});

describe('slice kernels leave nothing behind', () => {
  it('no tensors, data ids or heap bytes leak', async () => {
    await tf.setBackend('wasm');
    const x = tf.randomNormal([16, 12, 10]);
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const ids = backend.numDataIds();
    const live = heapStats()!.liveBytes;
    await expectNoLeaks(() =>
      tf.tidy(() => {
        tf.slice(x, [1, 2, 3], [4, -1, 5]);
        tf.unstack(x, 1);
        tf.split(x, [3, 7], 2);
        tf.stridedSlice(x, [0, 1, 0], [16, 12, 10], [3, 2, 4]);
        tf.stridedSlice(x, [2], [5], [1]);
      }),
    );
    expect(backend.numDataIds()).toBe(ids);
    expect(heapStats()!.liveBytes).toBe(live);
    x.dispose();
  });
});
