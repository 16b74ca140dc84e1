// The mixture row kernels and the sparse Adam sweep split over the kernel pool's threads equal
// their one-thread results exactly (each output row is computed by one thread, in the same order),
// and the float64 references, on fresh random inputs.
// Axes: T tokens, R rows per token, U distinct rows, D row width, N table rows.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { isSharedMemory, kernelPool, setKernelThreads } from '@peer/backend/wasm';
import { expectClose, testRng } from '@peer/test-utils';
import { HostExpertTable } from './host-expert-table.js';
import { SparseAdam } from './sparse-adam.js';
import type { RowSparseGrad } from './row-sparse-grad.js';
import { arenaOf } from './table-arena.js';

const [N, D, T, R] = [2048, 64, 96, 16];

interface Pass {
  dots: Float32Array;
  y: Float32Array;
  grad: Float32Array;
  rowsAfterAdam: Float32Array;
  table: HostExpertTable;
}

function denseGrad(grad: RowSparseGrad): Float32Array {
  const out = new Float32Array(N * D);
  const values = grad.rowGrads();
  grad.uniqueRows().forEach((e, s) => out.set(values.subarray(s * D, (s + 1) * D), e * D));
  return out;
}

/** rowDots, weightedRowSum, accumulateRowGradients and one sparse Adam step on a fresh table. */
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
  new SparseAdam({ lr: 0.01, beta1: 0.875, beta2: 0.9375, eps: 1e-7 }).step(table, grad);
  return { dots: Float32Array.from(dots), y: Float32Array.from(y), grad: g, rowsAfterAdam: Float32Array.from(table.data), table };
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
      // dot, wsum, group sum and adam, each split over every thread.
      expect(run.mock.calls.map((call) => [call[3], call[4].length])).toEqual([
        ['dot', threads],
        ['wsum', threads],
        ['group_sum_into', threads],
        ['adam', threads],
      ]);
      run.mockRestore();

      expect(Array.from(many.dots)).toEqual(Array.from(one.dots));
      expect(Array.from(many.y)).toEqual(Array.from(one.y));
      expect(Array.from(many.grad)).toEqual(Array.from(one.grad));
      expect(Array.from(many.rowsAfterAdam)).toEqual(Array.from(one.rowsAfterAdam));

      // And the references, in float64 from the initial rows (the table was initialized from `seed`).
      const fresh = new HostExpertTable({ rows: N, dim: D, init: { kind: 'normal', std: 0.5 }, seed, backing: 'plain' });
      const rows = fresh.data;
      const dots64 = new Float64Array(T * R);
      const y64 = new Float64Array(T * D);
      const grad64 = new Float64Array(N * D);
      for (let t = 0; t < T; t++) {
        for (let r = 0; r < R; r++) {
          const o = t * R + r;
          const e = slots[o]!;
          for (let j = 0; j < D; j++) {
            dots64[o]! += rows[e * D + j]! * x[t * D + j]!;
            y64[t * D + j]! += w[o]! * rows[e * D + j]!;
            grad64[e * D + j]! += c[o]! * x[t * D + j]!;
          }
        }
      }
      const label = `seed ${rng.seed}, ${threads} threads`;
      expectClose(many.dots, dots64, { rtol: 1e-4, atol: 1e-4, label: `dots ${label}` });
      expectClose(many.y, y64, { rtol: 1e-4, atol: 1e-4, label: `y ${label}` });
      expectClose(many.grad, grad64, { rtol: 1e-4, atol: 1e-4, label: `grad ${label}` });
      // One Adam step from zero moments moves each touched weight by lr * g / (|g| + eps) (about lr).
      for (let i = 0; i < N * D; i++) {
        const g = grad64[i]!;
        const want = g === 0 ? rows[i]! : rows[i]! - (0.01 * g) / (Math.abs(g) + 1e-7);
        expect(Math.abs(many.rowsAfterAdam[i]! - want)).toBeLessThan(1e-6 + 1e-6 * Math.abs(want));
      }
      for (const p of [one, many]) p.table.dispose();
      fresh.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});
