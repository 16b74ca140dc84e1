// Axes: t tokens (rows), f query features (columns).
import { describe, expect, it } from 'vitest';
import { expectClose, testRng } from '@peer/test-utils';
import { QueryNormKernels } from './query-norm-kernels.js';

describe('QueryNormKernels module', () => {
  it('builds the SIMD module on this host', () => {
    expect(new QueryNormKernels().simd).toBe(true);
  });
});

describe('QueryNormKernels', () => {
  for (const [label, forceFallback, f] of [
    ['wasm SIMD', false, 24],
    ['JS fallback', true, 24],
    ['width not a multiple of 8', false, 10],
  ] as const) {
    it(`${label}: colSum, colSumProd, affine, bnGrad equal float64 loops (f = ${f})`, () => {
      const rng = testRng();
      const k = new QueryNormKernels({ forceFallback });
      const t = 6;
      const [a64, b64] = [rng.normals(t * f), rng.normals(t * f)];
      const [s64, m64, d64, p64, q64, c64] = [0, 1, 2, 3, 4, 5].map(() => rng.normals(f)) as [Float64Array, Float64Array, Float64Array, Float64Array, Float64Array, Float64Array];
      k.reset();
      k.alloc(1);
      const [a, b, aff, grad] = [0, 1, 2, 3].map(() => k.alloc(t * f));
      const [sum, sumProd, s, m, d, p, q, c] = [0, 1, 2, 3, 4, 5, 6, 7].map(() => k.alloc(f));
      k.view(a!).set(a64);
      k.view(b!).set(b64);
      [s, m, d, p, q, c].forEach((r, i) => k.view(r!).set([s64, m64, d64, p64, q64, c64][i]!));
      k.view(sum!).fill(9);
      k.colSum(a!, sum!, t, f);
      k.colSumProd(a!, b!, sumProd!, t, f);
      k.affine(a!, s!, m!, d!, aff!, t, f);
      k.bnGrad(a!, b!, p!, q!, c!, grad!, t, f);
      const e = { sum: new Float64Array(f), prod: new Float64Array(f), aff: new Float64Array(t * f), grad: new Float64Array(t * f) };
      for (let i = 0; i < t; i++) {
        for (let j = 0; j < f; j++) {
          const x = a64[i * f + j]!;
          const y = b64[i * f + j]!;
          e.sum[j]! += x;
          e.prod[j]! += x * y;
          e.aff[i * f + j] = (x - s64[j]!) * m64[j]! + d64[j]!;
          e.grad[i * f + j] = (x - p64[j]! - y * q64[j]!) * c64[j]!;
        }
      }
      const opts = { rtol: 1e-4, atol: 1e-5, label: `${label} seed ${rng.seed}` };
      expectClose(k.view(sum!), e.sum, opts);
      expectClose(k.view(sumProd!), e.prod, opts);
      expectClose(k.view(aff!), e.aff, opts);
      expectClose(k.view(grad!), e.grad, opts);
      // affine in place
      k.affine(a!, s!, m!, d!, a!, t, f);
      expectClose(k.view(a!), e.aff, opts);
    });
  }
});
