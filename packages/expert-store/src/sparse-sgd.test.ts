import { describe, expect, it, vi } from 'vitest';
import { expectClose, testRng } from '@peer/test-utils';
import { HostExpertTable } from './host-expert-table.js';
import { RowSparseGrad } from './row-sparse-grad.js';
import { SparseSgd } from './sparse-sgd.js';

const N = 40;

describe('SparseSgd', () => {
  for (const [momentum, backing, D] of [[0, 'arena', 8], [0.9, 'arena', 8], [0.9, 'arena', 6], [0, 'plain', 6], [0.9, 'plain', 8]] as const) {
    it(`matches plain float64 lazy SGD (momentum ${momentum}, ${backing} table, d = ${D}, weight decay, clipping, lrScale)`, () => {
      const rng = testRng();
      const table = new HostExpertTable({ rows: N, dim: D, init: { kind: 'normal', std: 1 }, seed: rng.int(1000), backing });
      // The SIMD kernel runs on arena tables whose width is a multiple of 4; others take the JS loop.
      const kernel = backing === 'arena' ? vi.spyOn(table.optimizerKernels()!, 'sgd') : undefined;
      const w0 = Float32Array.from(table.data);
      const opts = { lr: 0.1, momentum, weightDecay: 0.05, clipNorm: 2 };
      const sgd = new SparseSgd(opts);
      const grad = new RowSparseGrad(table);
      const w = Float64Array.from(w0);
      const buf = new Float64Array(N * D);
      for (let step = 0; step < 5; step++) {
        const indices = Int32Array.from({ length: 12 }, () => rng.int(N / 2)); // rows >= N/2 never touched
        const grads = Float32Array.from(rng.normals(indices.length * D));
        const lrScale = step === 2 ? 0.25 : 1;
        grad.accumulate(indices, grads);
        const result = sgd.step(table, grad, lrScale);
        // Reference: sum duplicates, clip by the global norm, update touched rows.
        const sum = new Map<number, Float64Array>();
        indices.forEach((r, k) => {
          const row = sum.get(r) ?? new Float64Array(D);
          for (let j = 0; j < D; j++) row[j]! += grads[k * D + j]!;
          sum.set(r, row);
        });
        let norm = 0;
        for (const row of sum.values()) for (const x of row) norm += x * x;
        norm = Math.sqrt(norm);
        const scale = norm > 2 ? 2 / norm : 1;
        expect(result.gradNorm).toBeCloseTo(norm, 4);
        const lr = opts.lr * lrScale;
        for (const [r, row] of sum) {
          for (let j = 0; j < D; j++) {
            const i = r * D + j;
            const g = row[j]! * scale;
            w[i] = w[i]! * (1 - lr * opts.weightDecay);
            if (momentum > 0) {
              buf[i] = momentum * buf[i]! + g;
              w[i] = w[i]! - lr * buf[i]!;
            } else w[i] = w[i]! - lr * g;
          }
        }
      }
      if (kernel) expect(kernel).toHaveBeenCalledTimes(D % 4 === 0 ? 5 : 0);
      expectClose(table.data, w, { rtol: 1e-5, atol: 1e-6, label: `seed ${rng.seed}` });
      expect(Array.from(table.data.subarray((N / 2) * D))).toEqual(Array.from(w0.subarray((N / 2) * D)));
      if (momentum > 0) {
        expectClose(sgd.stateOf(table)!.momentum, buf, { rtol: 1e-5, atol: 1e-6, label: `seed ${rng.seed} momentum` });
        expect(sgd.stateEntries('p.').map((e) => [e.name, e.shape])).toEqual([['p.table.sgd.momentum', [N, D]]]);
      } else {
        expect(sgd.stateEntries('p.')).toEqual([]);
      }
    });
  }

  it('refuses a bad momentum', () => {
    expect(() => new SparseSgd({ lr: 0.1, momentum: 1 })).toThrow(/SparseSgd: momentum must be in \[0, 1\), got 1/);
  });
});
