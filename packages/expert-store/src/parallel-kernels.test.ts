// The mixture row kernels, the sparse Adam and SGD sweeps and the row gathers split over the kernel
// pool's threads equal their one-thread results exactly (each output row is computed by one thread,
// in the same order), and the float64 references (exact copies for gathers), on fresh random inputs.
// Axes: T tokens, R rows per token, U distinct rows, D row width, N table rows.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { PASS_PARTS_PER_THREAD, isSharedMemory, kernelPool, setKernelThreads } from '@peer/backend/wasm';
import { expectClose, testRng } from '@peer/test-utils';
import { HostExpertTable } from './host-expert-table.js';
import { SparseAdam } from './sparse-adam.js';
import { SparseSgd } from './sparse-sgd.js';
import type { RowSparseGrad } from './row-sparse-grad.js';
import { arenaOf } from './table-arena.js';
import { GATHERED_READ_MIN_TABLE_BYTES, MIN_ITEMS_PER_PART } from './host-mixture.js';
import { MIN_ROWS_PER_PART } from './wasm/optimizer-kernels.js';

const [N, D, T, R] = [2048, 64, 96, 16];

/** The parts a pass of `count` items is cut into on `threads` threads (@peer/backend/wasm's passParts). */
function partsOf(threads: number, count: number, minPerPart: number): number {
  return Math.min(threads * PASS_PARTS_PER_THREAD, Math.floor(count / minPerPart));
}

interface Pass {
  dots: Float32Array;
  y: Float32Array;
  grad: Float32Array;
  /** rowDotsAndGradients(x, c): its dots and gradient. */
  fusedDots: Float32Array;
  fusedGrad: Float32Array;
  rowsAfterAdam: Float32Array;
  table: HostExpertTable;
}

function denseGrad(grad: RowSparseGrad): Float32Array {
  const out = new Float32Array(N * D);
  const values = grad.rowGrads();
  grad.uniqueRows().forEach((e, s) => out.set(values.subarray(s * D, (s + 1) * D), e * D));
  return out;
}

/** rowDots, weightedRowSum, accumulateRowGradients, rowDotsAndGradients and one sparse Adam step on a fresh table. */
function pass(seed: number, slots: Int32Array, x: Float32Array, w: Float32Array, c: Float32Array): Pass {
  const table = new HostExpertTable({ rows: N, dim: D, init: { kind: 'normal', std: 0.5 }, seed, backing: 'arena' });
  const sel = table.select(slots, R);
  const [dots, y] = tf.tidy(() => [
    table.rowDots(sel, tf.tensor2d(x, [T, D])).dataSync() as Float32Array,
    table.weightedRowSum(sel, tf.tensor2d(w, [T, R])).dataSync() as Float32Array,
  ]);
  const grad = table.createGradient();
  tf.tidy(() => table.accumulateRowGradients(sel, tf.tensor2d(c, [T, R]), tf.tensor2d(x, [T, D]), grad));
  const g = denseGrad(grad);
  const fused = table.createGradient();
  const fusedDots = tf.tidy(() => table.rowDotsAndGradients(sel, tf.tensor2d(x, [T, D]), tf.tensor2d(c, [T, R]), fused).dataSync() as Float32Array);
  const fusedGrad = denseGrad(fused);
  new SparseAdam({ lr: 0.01, beta1: 0.875, beta2: 0.9375, eps: 1e-7 }).step(table, grad);
  return { dots: Float32Array.from(dots), y: Float32Array.from(y), grad: g, fusedDots: Float32Array.from(fusedDots), fusedGrad, rowsAfterAdam: Float32Array.from(table.data), table };
}

afterAll(() => {
  setKernelThreads(1);
});

describe('the kernel pool in the expert table', () => {
  for (const threads of [2, 3]) {
    it(`${threads} threads give the one-thread results exactly, and the float64 references`, () => {
      const rng = testRng();
      const seed = rng.int(1 << 20);
      const slots = Int32Array.from({ length: T * R }, () => rng.int(N));
      const x = Float32Array.from(rng.normals(T * D));
      const w = Float32Array.from(rng.normals(T * R));
      const c = Float32Array.from(rng.normals(T * R));
      const before = tf.memory().numTensors;

      setKernelThreads(1);
      const one = pass(seed, slots, x, w, c);
      expect(isSharedMemory(arenaOf(one.table)!.memory)).toBe(false);

      expect(setKernelThreads(threads)).toBeUndefined();
      const pool = kernelPool()!;
      const run = vi.spyOn(pool, 'run');
      const many = pass(seed, slots, x, w, c);
      expect(isSharedMemory(arenaOf(many.table)!.memory)).toBe(true);
      // wsum split by tokens, the grouped passes and adam by distinct rows, in more parts than threads.
      const distinct = new Set(slots).size;
      expect(run.mock.calls.map((call) => [call[3], call[4].length])).toEqual([
        ['group_dot', partsOf(threads, distinct, MIN_ITEMS_PER_PART)],
        ['wsum', partsOf(threads, T, MIN_ITEMS_PER_PART)],
        ['group_sum_into', partsOf(threads, distinct, MIN_ITEMS_PER_PART)],
        ['group_dot_sum_into', partsOf(threads, distinct, MIN_ITEMS_PER_PART)],
        ['adam', partsOf(threads, distinct, MIN_ROWS_PER_PART)],
      ]);
      expect(partsOf(threads, T, MIN_ITEMS_PER_PART)).toBeGreaterThan(threads);
      run.mockRestore();

      expect(Array.from(many.dots)).toEqual(Array.from(one.dots));
      expect(Array.from(many.y)).toEqual(Array.from(one.y));
      expect(Array.from(many.grad)).toEqual(Array.from(one.grad));
      // The fused pass gives what the two calls give.
      expect(Array.from(many.fusedDots)).toEqual(Array.from(one.dots));
      expect(Array.from(many.fusedGrad)).toEqual(Array.from(one.grad));
      expect(Array.from(one.fusedDots)).toEqual(Array.from(one.dots));
      expect(Array.from(one.fusedGrad)).toEqual(Array.from(one.grad));
      expect(Array.from(many.rowsAfterAdam)).toEqual(Array.from(one.rowsAfterAdam));

      // And the references, in float64 from the initial rows (the table was initialized from `seed`).
      const fresh = new HostExpertTable({ rows: N, dim: D, init: { kind: 'normal', std: 0.5 }, seed, backing: 'plain' });
      const rows = fresh.data;
      const dots64 = new Float64Array(T * R);
      const y64 = new Float64Array(T * D);
      const grad64 = new Float64Array(N * D);
      const gradMass64 = new Float64Array(N * D);
      const occurrences = new Int32Array(N);
      for (const e of slots) occurrences[e]!++;
      for (let t = 0; t < T; t++) {
        for (let r = 0; r < R; r++) {
          const o = t * R + r;
          const e = slots[o]!;
          for (let j = 0; j < D; j++) {
            dots64[o]! += rows[e * D + j]! * x[t * D + j]!;
            y64[t * D + j]! += w[o]! * rows[e * D + j]!;
            grad64[e * D + j]! += c[o]! * x[t * D + j]!;
            gradMass64[e * D + j]! += Math.abs(c[o]! * x[t * D + j]!);
          }
        }
      }
      const label = `seed ${rng.seed}, ${threads} threads`;
      expectClose(many.dots, dots64, { rtol: 1e-4, atol: 1e-4, label: `dots ${label}` });
      expectClose(many.y, y64, { rtol: 1e-4, atol: 1e-4, label: `y ${label}` });
      expectClose(many.grad, grad64, { rtol: 1e-4, atol: 1e-4, label: `grad ${label}` });
      // One Adam step from zero moments moves each touched weight by lr * g / (|g| + eps) (about lr).
      // The kernel sees the float32 g, within dg = (m + 1) u sum|term| of the float64 one (m
      // occurrences of the row); where |g| is near eps the step amplifies dg by lr eps / (|g| + eps)^2.
      for (let i = 0; i < N * D; i++) {
        const g = grad64[i]!;
        const want = g === 0 ? rows[i]! : rows[i]! - (0.01 * g) / (Math.abs(g) + 1e-7);
        const dg = (occurrences[Math.floor(i / D)]! + 1) * 2 ** -24 * gradMass64[i]!;
        const conditioning = (0.01 * 1e-7 * dg) / (Math.max(Math.abs(g) - dg, 0) + 1e-7) ** 2;
        expect(Math.abs(many.rowsAfterAdam[i]! - want)).toBeLessThan(1e-6 + 1e-6 * Math.abs(want) + conditioning);
      }
      for (const p of [one, many]) p.table.dispose();
      fresh.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});

/** Runs `fn` with the kernel pool at `threads` (1: no pool); returns its result and the pool's (function, calls) passes. */
function withThreads<T>(threads: number, fn: () => T): { result: T; passes: [string, number][] } {
  expect(setKernelThreads(threads)).toBeUndefined();
  const pool = kernelPool();
  const run = pool && vi.spyOn(pool, 'run');
  try {
    const result = fn();
    return { result, passes: run ? run.mock.calls.map((call) => [call[3], call[4].length]) : [] };
  } finally {
    run?.mockRestore();
  }
}

describe('the kernel pool in the SGD sweep and the row gathers', () => {
  for (const threads of [2, 3]) {
    it(`${threads} threads: SGD with momentum gives the one-thread rows exactly, and float64`, () => {
      const rng = testRng();
      const seed = rng.int(1 << 20);
      const slots = Int32Array.from({ length: T * R }, () => rng.int(N));
      const x = Float32Array.from(rng.normals(T * D));
      const c = Float32Array.from(rng.normals(T * R));
      const [lr, momentum] = [0.05, 0.75];
      const before = tf.memory().numTensors;
      const sgdPass = () => {
        const table = new HostExpertTable({ rows: N, dim: D, init: { kind: 'normal', std: 0.5 }, seed, backing: 'arena' });
        const grad = table.createGradient();
        const sgd = new SparseSgd({ lr, momentum });
        let g: Float32Array = new Float32Array(0);
        // Two steps with the same gradient (a step consumes it): the second reads the momentum.
        for (let step = 0; step < 2; step++) {
          tf.tidy(() => table.accumulateRowGradients(table.select(slots, R), tf.tensor2d(c, [T, R]), tf.tensor2d(x, [T, D]), grad));
          g = denseGrad(grad);
          sgd.step(table, grad);
        }
        const rows = Float32Array.from(table.data);
        table.dispose();
        return { g, rows };
      };
      const one = withThreads(1, sgdPass).result;
      const many = withThreads(threads, sgdPass);
      const sweep = partsOf(threads, new Set(slots).size, MIN_ROWS_PER_PART);
      expect(many.passes.filter(([fn]) => fn === 'sgd')).toEqual([
        ['sgd', sweep],
        ['sgd', sweep],
      ]);
      expect(Array.from(many.result.rows)).toEqual(Array.from(one.rows));
      // Two steps from zero momentum: b1 = g, w1 = w0 - lr g; b2 = mu g + g, w2 = w1 - lr b2.
      const fresh = new HostExpertTable({ rows: N, dim: D, init: { kind: 'normal', std: 0.5 }, seed, backing: 'plain' });
      const w0 = fresh.data;
      for (let i = 0; i < N * D; i++) {
        const g = many.result.g[i]!;
        const want = w0[i]! - lr * g - lr * (momentum * g + g);
        // A handful of float32 roundings of terms no larger than |w0| + 3 lr |g|.
        expect(Math.abs(many.result.rows[i]! - want), `element ${i}, seed ${rng.seed}`).toBeLessThanOrEqual(8 * 2 ** -24 * (Math.abs(w0[i]!) + 3 * lr * Math.abs(g)));
      }
      fresh.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });

    it(`${threads} threads: gather copies the rows exactly, in chunks split over the threads`, () => {
      const rng = testRng();
      const seed = rng.int(1 << 20);
      const indices = Int32Array.from({ length: 3000 + rng.int(500) }, () => rng.int(N));
      const before = tf.memory().numTensors;
      const gatherPass = () => {
        const table = new HostExpertTable({ rows: N, dim: D, init: { kind: 'normal', std: 0.5 }, seed, backing: 'arena' });
        const out = tf.tidy(() => Float32Array.from(table.gather(indices).dataSync() as Float32Array));
        const rows = Float32Array.from(table.data);
        table.dispose();
        return { out, rows };
      };
      const one = withThreads(1, gatherPass).result;
      const many = withThreads(threads, gatherPass);
      // 512 KiB staging chunks of 2048 rows of 64 floats: two chunks.
      expect(many.passes).toEqual([
        ['gather', partsOf(threads, 2048, MIN_ROWS_PER_PART)],
        ['gather', partsOf(threads, indices.length - 2048, MIN_ROWS_PER_PART)],
      ]);
      expect(Array.from(many.result.out)).toEqual(Array.from(one.out));
      indices.forEach((e, k) => expect(many.result.out.subarray(k * D, (k + 1) * D)).toEqual(one.rows.subarray(e * D, (e + 1) * D)));
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('3 threads: a large table gathers the selected rows on every thread before the mixture reads them', () => {
    const rng = testRng();
    const big = GATHERED_READ_MIN_TABLE_BYTES / (D * 4);
    const seed = rng.int(1 << 20);
    const slots = Int32Array.from({ length: T * R }, () => rng.int(big));
    const x = Float32Array.from(rng.normals(T * D));
    const before = tf.memory().numTensors;
    const dotsPass = () => {
      const table = new HostExpertTable({ rows: big, dim: D, init: { kind: 'normal', std: 0.5 }, seed, backing: 'arena' });
      const dots = tf.tidy(() => Float32Array.from(table.rowDots(table.select(slots, R), tf.tensor2d(x, [T, D])).dataSync() as Float32Array));
      const rows = table.data;
      const dots64 = new Float64Array(T * R);
      for (let o = 0; o < T * R; o++) {
        const e = slots[o]!;
        const t = Math.floor(o / R);
        for (let j = 0; j < D; j++) dots64[o]! += rows[e * D + j]! * x[t * D + j]!;
      }
      table.dispose();
      return { dots, dots64 };
    };
    const one = withThreads(1, dotsPass).result;
    const many = withThreads(3, dotsPass);
    expect(many.passes).toEqual([
      ['gather', partsOf(3, T * R, MIN_ROWS_PER_PART)],
      ['dot', partsOf(3, T, MIN_ITEMS_PER_PART)],
    ]);
    expect(Array.from(many.result.dots)).toEqual(Array.from(one.dots));
    expectClose(many.result.dots, many.result.dots64, { rtol: 1e-4, atol: 1e-4, label: `dots, seed ${rng.seed}` });
    expect(tf.memory().numTensors).toBe(before);
  });
});
