import { afterAll, describe, expect, it, vi } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testRng, type TestRng } from '@peer/test-utils';
import { HostExpertTable } from './host-expert-table.js';
import { RowSparseGrad } from './row-sparse-grad.js';
import { SparseAdam } from './sparse-adam.js';
import { loadCheckpoint, saveCheckpoint } from './checkpoint.js';

const N = 60;
const D = 12;
// Rows touched by every step, by some steps, and by none.
const ALWAYS = [0, 1, 2, 3, 4, 5, 6, 7];
const SOMETIMES = Array.from({ length: 30 }, (_, i) => 10 + i);
const NEVER = Array.from({ length: N - 40 }, (_, i) => 40 + i);

/** One step's lookups: every ALWAYS row (some twice), a random part of SOMETIMES, with repeats. */
function stepLookups(rng: TestRng): { indices: Int32Array; grads: Float32Array } {
  const idx: number[] = [...ALWAYS, ...ALWAYS.filter(() => rng.float() < 0.5)];
  for (const r of SOMETIMES) if (rng.float() < 0.3) idx.push(r, ...(rng.float() < 0.3 ? [r] : []));
  const indices = Int32Array.from(idx);
  return { indices, grads: Float32Array.from(rng.normals(indices.length * D, 0.5)) };
}

/** Unit roundoff of float32. */
const U = 2 ** -24;

/**
 * Float32 `got` against the float64 `want`, element by element: within 1e-5 relative, or `k` u of the
 * element's rounding mass. A float32 error accumulates over every step that touched the element in
 * proportion to the magnitudes it passed through (the weight, the moment's terms), not to its final
 * value, which may lie near 0 (a fixed atol there fails at some seeds).
 */
function expectWithinRounding(got: ArrayLike<number>, want: ArrayLike<number>, mass: ArrayLike<number>, k: number, label: string): void {
  expect(got.length, label).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const tol = Math.max(1e-5 * Math.abs(want[i]!), k * U * mass[i]!);
    if (!(Math.abs(got[i]! - want[i]!) <= tol)) throw new Error(`${label}: [${i}] is ${got[i]}, expected ${want[i]} (tolerance ${tol})`);
  }
}

/**
 * Lazy Adam written plainly in float64: per-row step counts, decoupled decay on touched rows. The
 * masses sum, per element and step, the magnitudes a float32 implementation rounds: the two terms
 * of each moment; for w, |w|, the update and the update's share of m's rounding.
 */
class ReferenceLazyAdam {
  w: Float64Array;
  m = new Float64Array(N * D);
  v = new Float64Array(N * D);
  t = new Int32Array(N);
  wMass = new Float64Array(N * D);
  mMass = new Float64Array(N * D);
  vMass = new Float64Array(N * D);
  constructor(
    w0: Float32Array,
    private readonly o: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; clipNorm?: number },
  ) {
    this.w = Float64Array.from(w0);
  }
  step(indices: Int32Array, grads: Float32Array, lrScale = 1): number {
    const g = new Map<number, Float64Array>();
    indices.forEach((r, k) => {
      const row = g.get(r) ?? new Float64Array(D);
      for (let j = 0; j < D; j++) row[j]! += grads[k * D + j]!;
      g.set(r, row);
    });
    let norm = 0;
    for (const row of g.values()) for (const x of row) norm += x * x;
    norm = Math.sqrt(norm);
    const scale = this.o.clipNorm !== undefined && norm > this.o.clipNorm ? this.o.clipNorm / norm : 1;
    const lr = this.o.lr * lrScale;
    for (const [r, row] of g) {
      const t = ++this.t[r]!;
      for (let j = 0; j < D; j++) {
        const i = r * D + j;
        const gj = row[j]! * scale;
        this.w[i] = this.w[i]! * (1 - lr * this.o.weightDecay);
        this.mMass[i]! += Math.abs(this.o.beta1 * this.m[i]!) + Math.abs((1 - this.o.beta1) * gj);
        this.vMass[i]! += this.o.beta2 * this.v[i]! + (1 - this.o.beta2) * gj * gj;
        this.m[i] = this.o.beta1 * this.m[i]! + (1 - this.o.beta1) * gj;
        this.v[i] = this.o.beta2 * this.v[i]! + (1 - this.o.beta2) * gj * gj;
        const mHat = this.m[i]! / (1 - this.o.beta1 ** t);
        const vHat = this.v[i]! / (1 - this.o.beta2 ** t);
        const update = (lr * mHat) / (Math.sqrt(vHat) + this.o.eps);
        // The update carries m's rounding (relative to m's mass, large where m cancels) scaled by lr / sqrt(vHat).
        const mError = (lr * this.mMass[i]!) / (1 - this.o.beta1 ** t) / (Math.sqrt(vHat) + this.o.eps);
        this.wMass[i]! += Math.abs(this.w[i]!) + Math.abs(update) + mError;
        this.w[i] = this.w[i]! - update;
      }
    }
    return norm;
  }
}

const rowsOf = (a: ArrayLike<number>, rows: number[]) => rows.flatMap((r) => Array.from({ length: D }, (_, j) => a[r * D + j]!));

const bytesOf = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

for (const backing of ['arena', 'plain'] as const)
describe(`SparseAdam (${backing} tables)`, () => {
  it('equals dense tf.train.adam on rows touched every step, leaves untouched rows and state alone, and matches lazy float64 Adam everywhere', () => {
    const rng = testRng();
    // tfjs keeps beta and its powers in float32: with beta2 = 0.999 the float32 1 - beta2^t is off by
    // 1.3e-5 relative (0.999 is not a float32). Betas whose first six powers are exact in float32
    // (0.875 = 1 - 2^-3, 0.9375 = 1 - 2^-4) leave only rounding of the arithmetic itself.
    const opts = { lr: 0.01, beta1: 0.875, beta2: 0.9375, eps: 1e-7 };
    const table = new HostExpertTable({ rows: N, dim: D, init: { kind: 'normal', std: 0.3 }, seed: rng.int(1 << 20), name: 'u', backing });
    expect(table.backingKind).toBe(backing);
    const kernel = backing === 'arena' ? vi.spyOn(table.optimizerKernels()!, 'adam') : undefined;
    const w0 = Float32Array.from(table.data);
    const sparse = new SparseAdam(opts);
    const grad = new RowSparseGrad(table);
    const reference = new ReferenceLazyAdam(w0, { ...opts, weightDecay: 0 });
    const init = tf.tensor2d(w0, [N, D]);
    const dense = tf.variable(init, true, 'dense_table');
    init.dispose();
    const denseAdam = tf.train.adam(opts.lr, opts.beta1, opts.beta2, opts.eps);

    for (let step = 0; step < 6; step++) {
      const { indices, grads } = stepLookups(rng);
      // Dense side: scatter-add into a full [N, D] gradient, as autodiff through gather would.
      const full = new Float32Array(N * D);
      indices.forEach((r, k) => {
        for (let j = 0; j < D; j++) full[r * D + j]! += grads[k * D + j]!;
      });
      tf.tidy(() => denseAdam.applyGradients([{ name: 'dense_table', tensor: tf.tensor2d(full, [N, D]) }]));
      grad.accumulate(indices.subarray(0, 5), grads.subarray(0, 5 * D));
      grad.accumulate(indices.subarray(5), grads.subarray(5 * D));
      const result = sparse.step(table, grad);
      reference.step(indices, grads);
      expect(result.rows).toBe(new Set(indices).size);
      expect(grad.size).toBe(0); // step clears the gradient
    }

    const denseW = dense.dataSync();
    // A few roundings per step each (decay, update, subtraction; a moment's two products and sum);
    // two float32 implementations apart by up to twice that.
    expectWithinRounding(rowsOf(table.data, ALWAYS), rowsOf(denseW, ALWAYS), rowsOf(reference.wMass, ALWAYS), 8, `seed ${rng.seed} always-touched rows vs tf.train.adam`);
    const state = sparse.stateOf(table)!;
    expectWithinRounding(table.data, reference.w, reference.wMass, 4, `seed ${rng.seed} weights vs lazy reference`);
    expectWithinRounding(state.m, reference.m, reference.mMass, 4, `seed ${rng.seed} m`);
    expectWithinRounding(state.v, reference.v, reference.vMass, 4, `seed ${rng.seed} v`);
    expect(Array.from(state.steps)).toEqual(Array.from(reference.t));
    expect(ALWAYS.every((r) => state.steps[r] === 6)).toBe(true);
    // Untouched rows: weights bit-identical, moments and counts zero.
    expect(rowsOf(table.data, NEVER)).toEqual(rowsOf(w0, NEVER));
    expect(rowsOf(state.m, NEVER).every((x) => x === 0) && rowsOf(state.v, NEVER).every((x) => x === 0)).toBe(true);
    expect(NEVER.every((r) => state.steps[r] === 0)).toBe(true);
    // Rows touched only sometimes differ from dense Adam (which keeps decaying their moments): the lazy semantics.
    const some = SOMETIMES.filter((r) => state.steps[r]! > 0 && state.steps[r]! < 6);
    expect(some.length).toBeGreaterThan(0);
    if (kernel) expect(kernel).toHaveBeenCalledTimes(6);
    dense.dispose();
    denseAdam.dispose();
  });

  it('applies decoupled weight decay (AdamW) to touched rows only, with lrScale and clipping', () => {
    const rng = testRng();
    const opts = { lr: 0.05, beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 0.1, clipNorm: 1.5 };
    const table = new HostExpertTable({ rows: N, dim: D, init: { kind: 'uniform', limit: 1 }, seed: rng.int(1 << 20), backing });
    const w0 = Float32Array.from(table.data);
    const adamw = new SparseAdam(opts);
    const grad = new RowSparseGrad(table);
    const reference = new ReferenceLazyAdam(w0, opts);
    let clipped = 0;
    for (let step = 0; step < 5; step++) {
      const { indices, grads } = stepLookups(rng);
      const lrScale = 0.5 + step / 4;
      grad.accumulate(indices, grads);
      const result = adamw.step(table, grad, lrScale);
      const norm = reference.step(indices, grads, lrScale);
      expect(result.gradNorm).toBeCloseTo(norm, 4);
      expect(result.clipScale).toBeCloseTo(norm > 1.5 ? 1.5 / norm : 1, 6);
      if (result.clipScale < 1) clipped++;
    }
    expect(clipped).toBeGreaterThan(0);
    expectWithinRounding(table.data, reference.w, reference.wMass, 4, `seed ${rng.seed} AdamW weights`);
    expect(rowsOf(table.data, NEVER)).toEqual(rowsOf(w0, NEVER));
  });

  it('checkpoints its state: a restored optimizer continues bit-identically', () => {
    const rng = testRng();
    const dir = mkdtempSync(join(tmpdir(), 'adam-ckpt-'));
    try {
      const make = () => {
        const u = new HostExpertTable({ rows: N, dim: D, seed: 4, name: 'u', backing });
        const v = new HostExpertTable({ rows: N, dim: D, seed: 5, name: 'v', backing });
        return { u, v, adam: new SparseAdam({ lr: 0.02, weightDecay: 0.01 }, [u, v]), gu: new RowSparseGrad(u), gv: new RowSparseGrad(v) };
      };
      const a = make();
      const steps = Array.from({ length: 5 }, () => [stepLookups(rng), stepLookups(rng)] as const);
      const run = (m: ReturnType<typeof make>, from: number, to: number) => {
        for (let s = from; s < to; s++) {
          m.gu.accumulate(steps[s]![0].indices, steps[s]![0].grads);
          m.gv.accumulate(steps[s]![1].indices, steps[s]![1].grads);
          m.adam.step(m.u, m.gu);
          m.adam.step(m.v, m.gv);
        }
      };
      run(a, 0, 3);
      const entries = [...a.u.stateEntries('ffn.'), ...a.v.stateEntries('ffn.'), ...a.adam.stateEntries('ffn.opt.')];
      expect(entries.map((e) => e.name).sort()).toEqual(
        ['ffn.u', 'ffn.v', 'ffn.opt.u.adam.m', 'ffn.opt.u.adam.v', 'ffn.opt.u.adam.steps', 'ffn.opt.v.adam.m', 'ffn.opt.v.adam.v', 'ffn.opt.v.adam.steps'].sort(),
      );
      saveCheckpoint(dir, entries);
      const stepsAt3 = Array.from(a.adam.stateOf(a.u)!.steps);
      for (const lazy of [false, true]) {
        const ckpt = loadCheckpoint(dir, { lazy });
        const b = make();
        b.u.loadStateEntries('ffn.', ckpt.get);
        b.v.loadStateEntries('ffn.', ckpt.get);
        b.adam.loadStateEntries('ffn.opt.', ckpt.get);
        ckpt.close();
        expect(Array.from(b.adam.stateOf(b.u)!.steps)).toEqual(stepsAt3);
        run(b, 3, 5);
        if (!lazy) run(a, 3, 5);
        expect(bytesOf(b.u.data).equals(bytesOf(a.u.data))).toBe(true);
        expect(bytesOf(b.v.data).equals(bytesOf(a.v.data))).toBe(true);
        expect(bytesOf(b.adam.stateOf(b.v)!.v).equals(bytesOf(a.adam.stateOf(a.v)!.v))).toBe(true);
      }
      const fresh = new SparseAdam({ lr: 0.1 });
      expect(() => fresh.loadStateEntries('ffn.opt.', () => undefined)).toThrow(/no tables are tracked/);
      const c = make();
      expect(() => c.adam.loadStateEntries('other.', () => undefined)).toThrow(/state entry 'other.u.adam.m' is missing/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses bad options and mismatched gradients with one clear error', () => {
    expect(() => new SparseAdam({ lr: -1 })).toThrow(/SparseAdam: lr must be a finite number >= 0, got -1/);
    expect(() => new SparseAdam({ lr: 1, beta2: 1 })).toThrow(/SparseAdam: beta2 must be in \[0, 1\), got 1/);
    expect(() => new SparseAdam({ lr: 1, clipNorm: 0 })).toThrow(/clipNorm must be a finite number > 0, got 0/);
    const t = new HostExpertTable({ rows: 10, dim: 4 });
    const adam = new SparseAdam({ lr: 0.1 });
    expect(() => adam.step(t, new RowSparseGrad({ rows: 10, dim: 5 }))).toThrow(/gradient is \[10, 5\] but table 'table' is \[10, 4\]/);
    expect(() => adam.step(t, new RowSparseGrad(t), NaN)).toThrow(/lrScale must be a finite number >= 0, got NaN/);
    const twin = new HostExpertTable({ rows: 10, dim: 4 });
    adam.track(t);
    expect(() => adam.step(twin, new RowSparseGrad(twin))).toThrow(/two tables are named 'table'/);
    const half = new HostExpertTable({ rows: 10, dim: 4, storage: 'float16', name: 'h' });
    expect(() => adam.step(half, new RowSparseGrad(half))).toThrow(/table 'h' is stored as float16; training needs float32 storage/);
  });
});

afterAll(() => expect(tf.memory().numTensors).toBe(0));
