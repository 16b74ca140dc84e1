import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { Arena } from '@peer/backend/wasm';
import { expectClose, testRng } from '@peer/test-utils';
import { HostBlock } from './host-block.js';
import { HostExpertTable } from './host-expert-table.js';
import { GATHERED_READ_MIN_TABLE_BYTES, HostMixture } from './host-mixture.js';
import { SparseSgd } from './sparse-sgd.js';
import type { RowSparseGrad } from './row-sparse-grad.js';

// The gather-mixture primitives of a host table (its SIMD row kernels and their JS loops) against
// plain float64 references. Axes: T tokens, R rows per token, U distinct rows, D row width.

function dot64(rows: Float32Array, slot: Int32Array, x: Float64Array, t: number, r: number, d: number): Float64Array {
  const out = new Float64Array(t * r);
  for (let a = 0; a < t; a++) for (let b = 0; b < r; b++) for (let j = 0; j < d; j++) out[a * r + b]! += rows[slot[a * r + b]! * d + j]! * x[a * d + j]!;
  return out;
}
function wsum64(rows: Float32Array, slot: Int32Array, w: Float64Array, t: number, r: number, d: number): Float64Array {
  const y = new Float64Array(t * d);
  for (let a = 0; a < t; a++) for (let b = 0; b < r; b++) for (let j = 0; j < d; j++) y[a * d + j]! += w[a * r + b]! * rows[slot[a * r + b]! * d + j]!;
  return y;
}
/** grad[e] = sum_{(t, r) -> e} c[t, r] x[t], dense [U rows of the table, D]. */
function groupSum64(slot: Int32Array, c: Float64Array, x: Float64Array, rows: number, r: number, d: number): Float64Array {
  const out = new Float64Array(rows * d);
  slot.forEach((e, o) => {
    for (let j = 0; j < d; j++) out[e * d + j]! += c[o]! * x[Math.floor(o / r) * d + j]!;
  });
  return out;
}

/** The gradient `grad` as a dense [N, D] array. */
function dense(grad: RowSparseGrad): Float64Array {
  const d = grad.dim;
  const out = new Float64Array(grad.rows * d);
  const rows = grad.uniqueRows();
  const values = grad.rowGrads();
  rows.forEach((e, s) => {
    for (let j = 0; j < d; j++) out[e * d + j] = values[s * d + j]!;
  });
  return out;
}

const tensor = (values: Float64Array, shape: [number, number]) => tf.tensor2d(Float32Array.from(values), shape);

describe('HostMixture', () => {
  it('builds the SIMD row kernels in an arena on this host, and none without one or for widths not a multiple of 8', () => {
    const arena = Arena.create(1 << 20)!;
    const rows = HostBlock.allocInArena(arena, 16 * 24, Float32Array)!;
    const unused = (): Float32Array => {
      throw new Error('no half rows here');
    };
    expect(new HostMixture(16, 24, arena, () => rows, unused).simd).toBe(true);
    expect(new HostMixture(16, 10, arena, () => rows, unused).simd).toBe(false);
    expect(new HostMixture(16, 24, undefined, () => HostBlock.plain(new Float32Array(16 * 24)), unused).simd).toBe(false);
  });
});

describe('HostExpertTable mixture primitives', () => {
  for (const [label, backing, d] of [
    ['wasm SIMD', 'arena', 24],
    ['wasm SIMD, wide rows', 'arena', 256],
    ['JS loops (plain table)', 'plain', 24],
    ['width not a multiple of 8 (JS loops)', 'arena', 10],
  ] as const) {
    it(`${label}: rowDots, weightedRowSum and accumulateRowGradients equal float64 references (D = ${d})`, () => {
      const rng = testRng();
      const [t, r, u] = [5, 7, 9];
      const table = new HostExpertTable({ rows: 40, dim: d, init: { kind: 'normal', std: 1 }, seed: rng.int(1000), backing });
      expect(table.backingKind).toBe(backing);
      // u distinct rows, referenced by random slots (with repeats).
      const distinct = Int32Array.from({ length: u }, () => rng.int(40));
      const slots = Int32Array.from({ length: t * r }, () => distinct[rng.int(u)]!);
      const x64 = rng.normals(t * d);
      const w64 = rng.normals(t * r);
      const c64 = rng.normals(t * r);
      const seed = `${label} seed ${rng.seed}`;
      const selection = table.select(slots, r);
      expect([selection.tokens, selection.perToken]).toEqual([t, r]);
      tf.tidy(() => {
        const x = tensor(x64, [t, d]);
        const w = tensor(w64, [t, r]);
        // Twice each, interleaved: the kernels overwrite their (shared) outputs, not accumulate.
        for (let pass = 0; pass < 2; pass++) {
          expectClose(table.rowDots(selection, x), dot64(table.data, slots, x64, t, r, d), { rtol: 1e-4, atol: 1e-5, label: `dot ${seed}` });
          expectClose(table.weightedRowSum(selection, w), wsum64(table.data, slots, w64, t, r, d), { rtol: 1e-4, atol: 1e-5, label: `wsum ${seed}` });
        }
        // Into the table's own gradient: rows already holding a gradient get the sum added.
        const grad = table.createGradient();
        const earlier = Int32Array.of(distinct[0]!, 39);
        const earlierGrads = Float32Array.from(rng.normals(2 * d));
        grad.accumulate(earlier, earlierGrads);
        const c = tensor(c64, [t, r]);
        table.accumulateRowGradients(selection, c, x, grad);
        const want = groupSum64(slots, c64, x64, 40, r, d);
        earlier.forEach((e, k) => {
          for (let j = 0; j < d; j++) want[e * d + j]! += earlierGrads[k * d + j]!;
        });
        expectClose(dense(grad), want, { rtol: 1e-4, atol: 1e-5, label: `group sum ${seed}` });
        // Both at once: the numbers of rowDots and accumulateRowGradients, bit for bit.
        const fused = table.createGradient();
        fused.accumulate(earlier, earlierGrads);
        const fusedDots = table.rowDotsAndGradients(selection, x, c, fused);
        expect(Array.from(fusedDots.dataSync()), `fused dots ${seed}`).toEqual(Array.from(table.rowDots(selection, x).dataSync()));
        expect(Array.from(fused.uniqueRows())).toEqual(Array.from(grad.uniqueRows()));
        expect(Array.from(fused.rowGrads()), `fused grads ${seed}`).toEqual(Array.from(grad.rowGrads()));
        // Into any other sink: each distinct row once, ascending.
        const seen: number[] = [];
        const other = new Float64Array(40 * d);
        table.accumulateRowGradients(selection, c, x, {
          accumulate: (indices, rowGrads) => {
            seen.push(...indices);
            indices.forEach((e, k) => {
              for (let j = 0; j < d; j++) other[e * d + j]! += rowGrads[k * d + j]!;
            });
          },
        });
        expect(seen).toEqual([...new Set(slots)].sort((a, b) => a - b));
        expectClose(other, groupSum64(slots, c64, x64, 40, r, d), { rtol: 1e-4, atol: 1e-5, label: `sink ${seed}` });
        const viaSink = new Float64Array(40 * d);
        const sinkDots = table.rowDotsAndGradients(selection, x, c, {
          accumulate: (indices, rowGrads) => indices.forEach((e, k) => {
            for (let j = 0; j < d; j++) viaSink[e * d + j]! += rowGrads[k * d + j]!;
          }),
        });
        expect(Array.from(sinkDots.dataSync())).toEqual(Array.from(fusedDots.dataSync()));
        expect(Array.from(viaSink)).toEqual(Array.from(other));
      });
      expect(tf.memory().numTensors).toBe(0);
      table.dispose();
    });
  }

  it('runs the same products in SIMD kernels and JS loops, equal to float32 rounding', () => {
    const rng = testRng();
    const [t, r, d] = [6, 16, 64];
    const seed = rng.int(1000);
    const simd = new HostExpertTable({ rows: 300, dim: d, seed, backing: 'arena' });
    const js = new HostExpertTable({ rows: 300, dim: d, seed, backing: 'plain' });
    expect(Array.from(js.data)).toEqual(Array.from(simd.data));
    const slots = Int32Array.from({ length: t * r }, () => rng.int(300));
    tf.tidy(() => {
      const x = tensor(rng.normals(t * d), [t, d]);
      const w = tensor(rng.normals(t * r), [t, r]);
      const label = `seed ${rng.seed}`;
      expectClose(simd.rowDots(simd.select(slots, r), x), js.rowDots(js.select(slots, r), x), { rtol: 1e-5, atol: 1e-6, label });
      expectClose(simd.weightedRowSum(simd.select(slots, r), w), js.weightedRowSum(js.select(slots, r), w), { rtol: 1e-5, atol: 1e-6, label });
      const [gs, gj] = [simd.createGradient(), js.createGradient()];
      simd.accumulateRowGradients(simd.select(slots, r), w, x, gs);
      js.accumulateRowGradients(js.select(slots, r), w, x, gj);
      expect(Array.from(gs.uniqueRows())).toEqual(Array.from(gj.uniqueRows()));
      expectClose(gs.rowGrads(), gj.rowGrads(), { rtol: 1e-5, atol: 1e-6, label });
    });
    simd.dispose();
    js.dispose();
  });

  it('reads half-storage rows widened to float32, as a float32 table holding the rounded rows does', () => {
    const rng = testRng();
    const [t, r, d] = [4, 6, 16];
    for (const storage of ['float16', 'bfloat16'] as const) {
      const half = new HostExpertTable({ rows: 50, dim: d, seed: rng.int(1000), storage });
      const widened = new HostExpertTable({ rows: 50, dim: d, init: { kind: 'zeros' }, backing: 'plain' });
      widened.data.set(half.gatherInto(Int32Array.from({ length: 50 }, (_, i) => i), new Float32Array(50 * d)));
      const slots = Int32Array.from({ length: t * r }, () => rng.int(50));
      tf.tidy(() => {
        const x = tensor(rng.normals(t * d), [t, d]);
        const w = tensor(rng.normals(t * r), [t, r]);
        const label = `${storage} seed ${rng.seed}`;
        expect(Array.from(half.rowDots(half.select(slots, r), x).dataSync()), label).toEqual(Array.from(widened.rowDots(widened.select(slots, r), x).dataSync()));
        expect(Array.from(half.weightedRowSum(half.select(slots, r), w).dataSync()), label).toEqual(Array.from(widened.weightedRowSum(widened.select(slots, r), w).dataSync()));
      });
      half.dispose();
      widened.dispose();
    }
  });

  it('checks selections and shapes, naming the table', () => {
    const table = new HostExpertTable({ rows: 8, dim: 8, name: 'u' });
    const other = new HostExpertTable({ rows: 8, dim: 8, name: 'v' });
    expect(() => table.select(Int32Array.of(1, 8), 2)).toThrow(/ExpertTable 'u'.select: indices\[1\] = 8 is out of range \[0, 8\)/);
    expect(() => table.select(Int32Array.of(1, 2, 3), 2)).toThrow(/3 indices are not tokens x 2 rows/);
    const selection = table.select(Int32Array.of(1, 2), 2);
    tf.tidy(() => {
      expect(() => other.rowDots(selection, tf.zeros([1, 8]))).toThrow(/a RowSelection is used with a table other than the one that made it/);
      expect(() => table.rowDots(selection, tf.zeros([2, 8]))).toThrow(/rowDots: expected a float32 tensor \[1, 8\], got float32 \[2, 8\]/);
    });
    table.dispose();
    other.dispose();
  });
});

describe('HostExpertTable mixture primitives on a table read through a gathered copy', () => {
  it('gives what reading in place gives, in forward and backward order, and sees rows an optimizer step changed', async () => {
    const rng = testRng();
    const d = 256;
    const rows = GATHERED_READ_MIN_TABLE_BYTES / (d * 4); // the smallest table that is read through a copy
    const big = new HostExpertTable({ rows, dim: d, seed: rng.int(1000), backing: 'arena' });
    const t = 12;
    const r = 6;
    const indices = Int32Array.from({ length: t * r }, () => rng.int(rows));
    const x64 = rng.normals(t * d);
    const w64 = rng.normals(t * r);
    const sel = big.select(indices, r);
    const x = tensor(x64, [t, d]);
    const w = tensor(w64, [t, r]);
    const check = async (label: string) => {
      const rowsNow = Float32Array.from(big.data);
      const dots = big.rowDots(sel, x);
      expectClose(await dots.data(), dot64(rowsNow, indices, x64, t, r, d), { rtol: 1e-4, atol: 1e-4, label: `${label} rowDots, seed ${rng.seed}` });
      const y = big.weightedRowSum(sel, w);
      expectClose(await y.data(), wsum64(rowsNow, indices, w64, t, r, d), { rtol: 1e-4, atol: 1e-4, label: `${label} weightedRowSum, seed ${rng.seed}` });
      // The backward pass reads the same selection again (from the copy).
      const again = big.rowDots(sel, x);
      expect(Array.from(await again.data())).toEqual(Array.from(await dots.data()));
      tf.dispose([dots, y, again]);
    };
    await check('first read');
    // An optimizer step writes the rows: the copy is dropped and the next read sees the new rows.
    const grad = big.createGradient();
    big.accumulateRowGradients(sel, w, x, grad);
    new SparseSgd({ lr: 0.5 }, [big]).step(big, grad);
    await check('after a step');
    tf.dispose([x, w]);
    big.dispose();
  });
});

describe('HostExpertTable mixture primitives, grouped by row and in token order', () => {
  it('a table read in place (rows grouped, each read once) gives bit for bit what the passes over a gathered copy give', () => {
    const rng = testRng();
    const d = 64;
    const big = new HostExpertTable({ rows: GATHERED_READ_MIN_TABLE_BYTES / (d * 4), dim: d, seed: rng.int(1000), backing: 'arena' });
    const [t, r] = [40, 12];
    const indices = Int32Array.from({ length: t * r }, () => rng.int(big.rows));
    // The small table holds the selected rows in ascending order, so its groups come in the same order.
    const distinct = Int32Array.from(new Set(indices)).sort();
    const small = new HostExpertTable({ rows: distinct.length, dim: d, init: { kind: 'zeros' }, backing: 'arena' });
    small.data.set(big.gatherInto(distinct, new Float32Array(distinct.length * d)));
    const position = new Map(Array.from(distinct, (e, k) => [e, k]));
    const smallIndices = indices.map((e) => position.get(e)!);
    tf.tidy(() => {
      const x = tensor(rng.normals(t * d), [t, d]);
      const c = tensor(rng.normals(t * r), [t, r]);
      const [bigSel, smallSel] = [big.select(indices, r), small.select(smallIndices, r)];
      const label = `seed ${rng.seed}`;
      expect(Array.from(small.rowDots(smallSel, x).dataSync()), label).toEqual(Array.from(big.rowDots(bigSel, x).dataSync()));
      // weightedRowSum: four rows in flight in place, one at a time over the copy; the same additions.
      expect(Array.from(small.weightedRowSum(smallSel, c).dataSync()), label).toEqual(Array.from(big.weightedRowSum(bigSel, c).dataSync()));
      const [bigGrad, smallGrad] = [big.createGradient(), small.createGradient()];
      const bigDots = big.rowDotsAndGradients(bigSel, x, c, bigGrad);
      const smallDots = small.rowDotsAndGradients(smallSel, x, c, smallGrad);
      expect(Array.from(smallDots.dataSync()), label).toEqual(Array.from(bigDots.dataSync()));
      expect(Array.from(smallGrad.uniqueRows(), (k) => distinct[k])).toEqual(Array.from(bigGrad.uniqueRows()));
      expect(Array.from(smallGrad.rowGrads()), label).toEqual(Array.from(bigGrad.rowGrads()));
    });
    expect(tf.memory().numTensors).toBe(0);
    big.dispose();
    small.dispose();
  });
});

describe('HostExpertTable.accumulateRowGradients into another sink', () => {
  it('hands over only this call\'s gradients after a sink threw on the previous call', () => {
    const table = new HostExpertTable({ rows: 8, dim: 8, seed: 1 });
    const sel = table.select(Int32Array.of(1, 2, 2, 5), 2);
    const w = tf.tensor2d([1, 2, 3, 4], [2, 2]);
    const x = tf.tensor2d(Float32Array.from({ length: 16 }, (_, i) => i / 16), [2, 8]);
    const failing = { accumulate: (): void => { throw new Error('sink full'); } };
    expect(() => table.accumulateRowGradients(sel, w, x, failing)).toThrow('sink full');
    const got: { rows: number[]; grads: Float32Array }[] = [];
    const once = { accumulate: (rows: Int32Array, grads: Float32Array): void => void got.push({ rows: Array.from(rows), grads: grads.slice() }) };
    table.accumulateRowGradients(sel, w, x, once);
    const fresh = table.createGradient();
    table.accumulateRowGradients(sel, w, x, fresh);
    expect(got).toHaveLength(1);
    expect(got[0]!.rows).toEqual(Array.from(fresh.uniqueRows()).sort((a, b) => a - b));
    expect(Array.from(got[0]!.grads)).toEqual(Array.from(fresh.rowGrads()));
    tf.dispose([w, x]);
    table.dispose();
  });
});
