// TEMPORARY local stand-in for @peer/expert-store while it is being written: the few pieces of
// ExpertTable / RowSparseGrad / SparseAdam the layer needs. Replaced by the real package.
//
// N rows, D row width, R rows touched.
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '@peer/backend';

export class ExpertTable {
  readonly data: Float32Array;
  constructor(
    readonly rows: number,
    readonly dim: number,
    init?: { std: number; seed: number },
  ) {
    this.data = new Float32Array(rows * dim);
    if (init) new Rng(init.seed).fillNormal(this.data, 0, init.std);
  }

  gather(indices: Int32Array): tf.Tensor2D {
    const out = new Float32Array(indices.length * this.dim);
    const d = this.dim;
    for (let i = 0; i < indices.length; i++) {
      const r = indices[i]!;
      out.set(this.data.subarray(r * d, r * d + d), i * d);
    }
    return tf.tensor2d(out, [indices.length, d]);
  }
}

export class RowSparseGrad {
  private readonly slots = new Map<number, number>();
  private values = new Float32Array(0);
  private count = 0;
  constructor(readonly dim: number) {}

  accumulate(indices: Int32Array, rowGrads: Float32Array): void {
    const d = this.dim;
    for (let i = 0; i < indices.length; i++) {
      const r = indices[i]!;
      let slot = this.slots.get(r);
      if (slot === undefined) {
        slot = this.count++;
        this.slots.set(r, slot);
        if (this.count * d > this.values.length) {
          const grown = new Float32Array(Math.max(this.count * d, this.values.length * 2));
          grown.set(this.values);
          this.values = grown;
        }
      }
      const o = slot * d;
      for (let j = 0; j < d; j++) this.values[o + j]! += rowGrads[i * d + j]!;
    }
  }

  forEachRow(fn: (row: number, grad: Float32Array) => void): void {
    for (const [row, slot] of this.slots) fn(row, this.values.subarray(slot * this.dim, (slot + 1) * this.dim));
  }

  get size(): number {
    return this.count;
  }

  clear(): void {
    this.slots.clear();
    this.count = 0;
    this.values.fill(0);
  }
}

export interface SparseOptimizerOptions {
  kind: 'adam' | 'sgd';
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export class SparseOptimizer {
  private m: Float32Array | undefined;
  private v: Float32Array | undefined;
  private steps: Int32Array | undefined;
  constructor(readonly options: SparseOptimizerOptions) {}

  step(table: ExpertTable, grad: RowSparseGrad, lrScale: number): void {
    const { kind, lr: baseLr, beta1, beta2, eps, weightDecay } = this.options;
    const lr = baseLr * lrScale;
    const d = table.dim;
    const w = table.data;
    if (kind === 'sgd') {
      grad.forEachRow((row, g) => {
        for (let j = 0; j < d; j++) w[row * d + j] = w[row * d + j]! * (1 - lr * weightDecay) - lr * g[j]!;
      });
      return;
    }
    this.m ??= new Float32Array(w.length);
    this.v ??= new Float32Array(w.length);
    this.steps ??= new Int32Array(table.rows);
    const m = this.m;
    const v = this.v;
    const steps = this.steps;
    grad.forEachRow((row, g) => {
      const t = ++steps[row]!;
      const bc1 = 1 - beta1 ** t;
      const bc2 = 1 - beta2 ** t;
      const o = row * d;
      for (let j = 0; j < d; j++) {
        const gj = g[j]!;
        const mj = beta1 * m[o + j]! + (1 - beta1) * gj;
        const vj = beta2 * v[o + j]! + (1 - beta2) * gj * gj;
        m[o + j] = mj;
        v[o + j] = vj;
        w[o + j] = w[o + j]! * (1 - lr * weightDecay) - (lr * (mj / bc1)) / (Math.sqrt(vj / bc2) + eps);
      }
    });
  }
}
