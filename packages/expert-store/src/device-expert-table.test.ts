// The device table on the webgpu engine (SwiftShader in CI: tiny shapes) against float64 references
// and the host table: seeded init, rowDots / weightedRowSum / gather, row gradients summed per
// distinct row (and against finite differences), each unsharded and split into row shards.
// Axes: N table rows, D row width, T tokens, R rows per token, L = T * R occurrences.
import { initBackend, webgpuSkipReason } from '@peer/backend';
import { expectClose, expectNoLeaks, testRng } from '@peer/test-utils';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceExpertTable } from './device-expert-table.js';
import { DeviceRowGradient } from './device-row-gradient.js';
import { HostExpertTable } from './host-expert-table.js';
import { RowSparseGrad } from './row-sparse-grad.js';

const skip = webgpuSkipReason();
const rng = testRng();
const [N, D, T, R] = [40, 12, 9, 5];
/** A shard of 16 rows: the table is split into 3 shards (16, 16, 8). */
const SMALL_SHARD = 16 * D * 4;

function dot64(rows: Float32Array, idx: Int32Array, x: Float32Array, t: number, r: number, d: number): Float64Array {
  const out = new Float64Array(t * r);
  for (let a = 0; a < t; a++) for (let b = 0; b < r; b++) for (let j = 0; j < d; j++) out[a * r + b]! += rows[idx[a * r + b]! * d + j]! * x[a * d + j]!;
  return out;
}
function wsum64(rows: Float32Array, idx: Int32Array, w: Float32Array, t: number, r: number, d: number): Float64Array {
  const y = new Float64Array(t * d);
  for (let a = 0; a < t; a++) for (let b = 0; b < r; b++) for (let j = 0; j < d; j++) y[a * d + j]! += w[a * r + b]! * rows[idx[a * r + b]! * d + j]!;
  return y;
}
/** Dense [N, D] gradient: grad[e] += w[o] x[floor(o / r)]. */
function grad64(idx: Int32Array, w: Float32Array, x: Float32Array, r: number, d: number, into = new Float64Array(N * d)): Float64Array {
  idx.forEach((e, o) => {
    for (let j = 0; j < d; j++) into[e * d + j]! += w[o]! * x[Math.floor(o / r) * d + j]!;
  });
  return into;
}

/** Indices with repeats (a few rows drawn often). */
function occurrences(l: number): Int32Array {
  const hot = [rng.int(N), rng.int(N), rng.int(N)];
  return Int32Array.from({ length: l }, () => (rng.float() < 0.4 ? hot[rng.int(3)]! : rng.int(N)));
}
const normals = (n: number) => Float32Array.from(rng.normals(n));

/** A device gradient as a dense [N, D] array, read asynchronously. */
async function denseOf(grad: DeviceRowGradient): Promise<Float64Array> {
  const out = new Float64Array(N * D);
  const s = grad.summedRows();
  if (!s) return out;
  const [rows, values] = [await s.slotRows.data(), await s.grads.data()];
  const seen = new Set<number>();
  rows.forEach((e, slot) => {
    if (e < 0) {
      for (let j = 0; j < D; j++) expect(values[slot * D + j]).toBe(0);
      return;
    }
    expect(seen.has(e), `row ${e} has one slot`).toBe(false);
    seen.add(e);
    for (let j = 0; j < D; j++) out[e * D + j] = values[slot * D + j]!;
  });
  return out;
}

describe.skipIf(skip !== undefined)(`DeviceExpertTable on webgpu${skip ? ` (skipped: ${skip})` : ''}`, () => {
  beforeAll(async () => {
    await initBackend({ backend: 'webgpu', allowFallbackAdapter: true, log: false });
  });
  afterAll(async () => {
    await initBackend({ backend: 'wasm', log: false });
  });

  it('starts with the same seeded rows as HostExpertTable (normal and uniform), unsharded and in shards', async () => {
    for (const init of [{ kind: 'normal', std: 0.3 }, { kind: 'uniform', limit: 0.7 }] as const) {
      const host = new HostExpertTable({ rows: N, dim: D, init, seed: 17, name: 'u' });
      for (const maxShardBytes of [undefined, SMALL_SHARD]) {
        const table = new DeviceExpertTable({ rows: N, dim: D, init, seed: 17, name: 'u', maxShardBytes });
        expect(table.shards().length).toBe(maxShardBytes ? 3 : 1);
        await table.prepareState();
        const [entry] = table.stateEntries('p.');
        expect(entry).toMatchObject({ name: 'p.u', dtype: 'F32', shape: [N, D] });
        expect(Array.from(entry!.data as Float32Array)).toEqual(Array.from(host.data));
        table.dispose();
      }
      host.dispose();
    }
  });

  it('rowDots, weightedRowSum and gather match float64 references, and sharded equals unsharded', async () => {
    const idx = occurrences(T * R);
    const x = normals(T * D);
    const w = normals(T * R);
    const results: Float32Array[][] = [];
    for (const maxShardBytes of [undefined, SMALL_SHARD]) {
      const table = new DeviceExpertTable({ rows: N, dim: D, seed: 3, name: 'v', maxShardBytes });
      await table.prepareState();
      const rows = table.stateEntries()[0]!.data as Float32Array;
      const idxT = tf.tensor2d(idx, [T, R], 'int32');
      const sel = table.select(idxT, R);
      const xT = tf.tensor2d(x, [T, D]);
      const wT = tf.tensor2d(w, [T, R]);
      const dots = table.rowDots(sel, xT);
      const sum = table.weightedRowSum(sel, wT);
      const gathered = table.gather(idx);
      expect(dots.shape).toEqual([T, R]);
      expect(sum.shape).toEqual([T, D]);
      expect(gathered.shape).toEqual([T * R, D]);
      const got = [(await dots.data()) as Float32Array, (await sum.data()) as Float32Array, (await gathered.data()) as Float32Array];
      const label = `seed ${rng.seed}, shard bytes ${maxShardBytes}`;
      expectClose(got[0]!, dot64(rows, idx, x, T, R, D), { rtol: 1e-4, atol: 1e-5, label: `rowDots ${label}` });
      expectClose(got[1]!, wsum64(rows, idx, w, T, R, D), { rtol: 1e-4, atol: 1e-5, label: `weightedRowSum ${label}` });
      expect(Array.from(got[2]!)).toEqual(Array.from(idx).flatMap((e) => Array.from(rows.subarray(e * D, e * D + D))));
      results.push(got);
      tf.dispose([idxT, xT, wT, dots, sum, gathered]);
      table.dispose();
    }
    expectClose(results[1]![0]!, results[0]![0]!, { rtol: 0, atol: 0, label: 'sharded rowDots' });
    expectClose(results[1]![1]!, results[0]![1]!, { rtol: 1e-6, atol: 1e-6, label: 'sharded weightedRowSum' });
    expect(Array.from(results[1]![2]!)).toEqual(Array.from(results[0]![2]!));
  });

  it('sums row gradients per distinct row across calls like RowSparseGrad, in shards too, without leaking tensors', async () => {
    const calls = [occurrences(T * R), occurrences(3 * R)];
    const xs = [normals(T * D), normals(3 * D)];
    const ws = [normals(T * R), normals(3 * R)];
    const expected = new Float64Array(N * D);
    calls.forEach((idx, c) => grad64(idx, ws[c]!, xs[c]!, R, D, expected));
    // The host table's own gradient for the same calls (its group-sum kernel), as a second reference.
    const host = new HostExpertTable({ rows: N, dim: D, seed: 3 });
    const hostGrad = host.createGradient();
    const extraRows = Int32Array.from([calls[0]![0]!, (calls[0]![0]! + 1) % N]);
    const extra = normals(2 * D);
    tf.tidy(() =>
      calls.forEach((idx, c) => {
        const t = idx.length / R;
        host.accumulateRowGradients(host.select(idx, R), tf.tensor2d(ws[c]!, [t, R]), tf.tensor2d(xs[c]!, [t, D]), hostGrad);
      }),
    );
    hostGrad.accumulate(extraRows, extra);
    const hostDense = new Float64Array(N * D);
    hostGrad.uniqueRows().forEach((e, slot) => {
      for (let j = 0; j < D; j++) hostDense[e * D + j] = hostGrad.rowGrads()[slot * D + j]!;
    });
    for (const maxShardBytes of [undefined, SMALL_SHARD]) {
      const table = new DeviceExpertTable({ rows: N, dim: D, seed: 3, maxShardBytes });
      const grad = table.createGradient();
      const before = tf.memory().numTensors;
      tf.tidy(() => {
        calls.forEach((idx, c) => {
          const t = idx.length / R;
          const sel = table.select(tf.tensor1d(idx, 'int32'), R);
          table.accumulateRowGradients(sel, tf.tensor2d(ws[c]!, [t, R]), tf.tensor2d(xs[c]!, [t, D]), grad);
        });
      });
      // Summed in one pass, then more added to what it held: both paths of the sum.
      grad.summedRows();
      grad.accumulate(extraRows, extra);
      const got = await denseOf(grad);
      const want = Float64Array.from(expected);
      extraRows.forEach((e, k) => {
        for (let j = 0; j < D; j++) want[e * D + j]! += extra[k * D + j]!;
      });
      expectClose(got, want, { rtol: 1e-4, atol: 1e-5, label: `row gradients, seed ${rng.seed}, shard bytes ${maxShardBytes}` });
      expectClose(got, hostDense, { rtol: 1e-4, atol: 1e-5, label: `row gradients vs the host table, seed ${rng.seed}` });
      const sq = grad.sumOfSquaresTensor();
      expect(Math.abs((await sq.data())[0]! - want.reduce((s, v) => s + v * v, 0)) / want.reduce((s, v) => s + v * v, 0)).toBeLessThan(1e-5);
      sq.dispose();
      grad.clear();
      expect(tf.memory().numTensors).toBe(before);
      table.dispose();
    }
    host.dispose();
  });

  it('its row gradient is the gradient of sum(g * weightedRowSum) by finite differences', async () => {
    const idx = occurrences(T * R);
    const w = normals(T * R);
    const g = normals(T * D);
    const table = new DeviceExpertTable({ rows: N, dim: D, seed: 5 });
    await table.prepareState();
    const rows = Float64Array.from(table.stateEntries()[0]!.data as Float32Array);
    const grad = table.createGradient();
    tf.tidy(() => table.accumulateRowGradients(table.select(idx, R), tf.tensor2d(w, [T, R]), tf.tensor2d(g, [T, D]), grad));
    const analytic = await denseOf(grad);
    const loss = (r: Float64Array) => {
      let s = 0;
      for (let a = 0; a < T; a++) for (let b = 0; b < R; b++) for (let j = 0; j < D; j++) s += g[a * D + j]! * w[a * R + b]! * r[idx[a * R + b]! * D + j]!;
      return s;
    };
    const eps = 1e-3;
    for (const e of [idx[0]!, idx[1]!, (idx[0]! + 7) % N]) {
      for (const j of [0, D - 1]) {
        const plus = Float64Array.from(rows);
        plus[e * D + j]! += eps;
        const minus = Float64Array.from(rows);
        minus[e * D + j]! -= eps;
        const fd = (loss(plus) - loss(minus)) / (2 * eps);
        expect(Math.abs(analytic[e * D + j]! - fd), `row ${e} col ${j} (seed ${rng.seed})`).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(fd)));
      }
    }
    grad.clear();
    table.dispose();
  });

  it('rowDotsAndGradients gives what rowDots and accumulateRowGradients give', async () => {
    const idx = occurrences(T * R);
    const [x, w] = [normals(T * D), normals(T * R)];
    const table = new DeviceExpertTable({ rows: N, dim: D, seed: 6 });
    const [both, apart] = [table.createGradient(), table.createGradient()];
    const before = tf.memory().numTensors;
    const [dotsBoth, dotsApart] = tf.tidy(() => {
      const sel = table.select(tf.tensor1d(idx, 'int32'), R);
      const [xT, wT] = [tf.tensor2d(x, [T, D]), tf.tensor2d(w, [T, R])];
      table.accumulateRowGradients(sel, wT, xT, apart);
      return [table.rowDotsAndGradients(sel, xT, wT, both), table.rowDots(sel, xT)];
    });
    expect(Array.from(await dotsBoth.data())).toEqual(Array.from(await dotsApart.data()));
    expectClose(await denseOf(both), grad64(idx, w, x, R, D), { rtol: 1e-4, atol: 1e-5, label: `row gradients, seed ${rng.seed}` });
    expect(Array.from(await denseOf(both))).toEqual(Array.from(await denseOf(apart)));
    tf.dispose([dotsBoth, dotsApart]);
    both.clear();
    apart.clear();
    expect(tf.memory().numTensors).toBe(before);
    table.dispose();
  });

  it('a selection of host indices holds no tensor, and a pass over it leaves none behind', async () => {
    const table = new DeviceExpertTable({ rows: N, dim: D, seed: 9 });
    const grad = table.createGradient();
    const idx = occurrences(T * R);
    const x = tf.tensor2d(normals(T * D), [T, D]);
    const w = tf.tensor2d(normals(T * R), [T, R]);
    await expectNoLeaks(async () => {
      const sel = table.select(idx, R);
      const out = table.weightedRowSum(sel, w);
      table.accumulateRowGradients(sel, w, x, grad);
      grad.summedRows();
      await out.data();
      out.dispose();
      grad.clear();
    });
    tf.dispose([x, w]);
    table.dispose();
  });

  it('a forward and backward pass leaves no tensors behind', async () => {
    const table = new DeviceExpertTable({ rows: N, dim: D, seed: 9 });
    const grad = table.createGradient();
    const idx = tf.tensor1d(occurrences(T * R), 'int32');
    const x = tf.tensor2d(normals(T * D), [T, D]);
    const w = tf.tensor2d(normals(T * R), [T, R]);
    await expectNoLeaks(async () => {
      const sel = table.select(idx, R);
      const out = tf.tidy(() => tf.add(table.weightedRowSum(sel, w), tf.sum(table.rowDots(sel, x))));
      table.accumulateRowGradients(sel, w, x, grad);
      grad.summedRows();
      await out.data();
      out.dispose();
      grad.clear();
    });
    tf.dispose([idx, x, w]);
    table.dispose();
  });

  it('refuses half storage, host sinks and synchronous gradient reads with one clear error each', () => {
    expect(() => new DeviceExpertTable({ rows: N, dim: D, storage: 'float16', name: 'u' })).toThrow(/DeviceExpertTable 'u': storage must be 'float32' on the device, got "float16"/);
    const table = new DeviceExpertTable({ rows: N, dim: D, name: 'v' });
    const sel = table.select(Int32Array.from({ length: R }, (_, i) => i), R);
    const sink = new RowSparseGrad(table);
    expect(() => tf.tidy(() => table.accumulateRowGradients(sel, tf.ones([1, R]), tf.ones([1, D]), sink))).toThrow(/DeviceExpertTable 'v'.accumulateRowGradients: the gradient must be this table's createGradient\(\)/);
    expect(() => table.select(Int32Array.from([0, N]), 1)).toThrow(`DeviceExpertTable 'v'.select: indices[1] = ${N} is out of range [0, ${N})`);
    const grad = table.createGradient();
    expect(() => grad.sumOfSquares()).toThrow(/DeviceRowGradient.sumOfSquares: on a device table it would need a synchronous read/);
    expect(() => grad.size).toThrow(/DeviceRowGradient.size/);
    expect(() => new DeviceRowGradient({ rows: 2 ** 24, dim: 4 })).toThrow('DeviceRowGradient: a table of 16777216 rows is too large; row ids are sorted as float32, exact below 16777216');
    // Once its rows were used on the device, the host copy is gone until prepareState.
    table.gather(Int32Array.from([0])).dispose();
    expect(() => table.stateEntries()).toThrow(/await prepareState\(\) first/);
    table.dispose();
    const host = new HostExpertTable({ rows: N, dim: D, name: 'h' });
    const idx = tf.tensor1d([0, 1], 'int32');
    expect(() => host.select(idx, 1)).toThrow(/h.select: a host table cannot read an index tensor on the webgpu engine .*createExpertTable/);
    idx.dispose();
    host.dispose();
  });
});
