import { describe, expect, it } from 'vitest';
import { expectClose, testRng } from '@peer/test-utils';
import { RowKernels } from './row-kernels.js';

// Plain float64 references of the three products.
function dot64(rows: Float64Array, x: Float64Array, t: number, r: number, d: number): Float64Array {
  const out = new Float64Array(t * r);
  for (let a = 0; a < t; a++) for (let b = 0; b < r; b++) for (let j = 0; j < d; j++) out[a * r + b]! += rows[(a * r + b) * d + j]! * x[a * d + j]!;
  return out;
}
function wsum64(rows: Float64Array, w: Float64Array, t: number, r: number, d: number): Float64Array {
  const y = new Float64Array(t * d);
  for (let a = 0; a < t; a++) for (let b = 0; b < r; b++) for (let j = 0; j < d; j++) y[a * d + j]! += w[a * r + b]! * rows[(a * r + b) * d + j]!;
  return y;
}
function outer64(s: Float64Array, x: Float64Array, t: number, r: number, d: number): Float64Array {
  const out = new Float64Array(t * r * d);
  for (let a = 0; a < t; a++) for (let b = 0; b < r; b++) for (let j = 0; j < d; j++) out[(a * r + b) * d + j] = s[a * r + b]! * x[a * d + j]!;
  return out;
}

describe('RowKernels', () => {
  it('builds the SIMD module on this host', () => {
    expect(new RowKernels().simd).toBe(true);
  });
  for (const [label, forceFallback, d] of [
    ['wasm SIMD', false, 24],
    ['wasm SIMD, wide rows', false, 256],
    ['JS fallback', true, 24],
    ['width not a multiple of 8 (JS loops)', false, 10],
  ] as const) {
    it(`${label}: dot, wsum and outer equal float64 references (d = ${d})`, () => {
      const rng = testRng();
      const k = new RowKernels({ forceFallback });
      const [t, r] = [5, 7];
      const rows64 = rng.normals(t * r * d);
      const x64 = rng.normals(t * d);
      const w64 = rng.normals(t * r);
      k.reset();
      // Allocate a region first so that offsets are not all zero.
      k.alloc(3);
      const rows = k.alloc(t * r * d);
      const x = k.alloc(t * d);
      const w = k.alloc(t * r);
      const out = k.alloc(t * r);
      const y = k.alloc(t * d);
      const o = k.alloc(t * r * d);
      k.view(rows).set(rows64);
      k.view(x).set(x64);
      k.view(w).set(w64);
      // Garbage in the outputs: the kernels must overwrite, not accumulate.
      k.view(y).fill(7);
      k.view(o).fill(7);
      k.dot(rows, x, out, t, r, d);
      k.wsum(rows, w, y, t, r, d);
      k.outer(w, x, o, t, r, d);
      const label2 = `${label} seed ${rng.seed}`;
      expectClose(k.view(out), dot64(rows64, x64, t, r, d), { rtol: 1e-4, atol: 1e-5, label: `dot ${label2}` });
      expectClose(k.view(y), wsum64(rows64, w64, t, r, d), { rtol: 1e-4, atol: 1e-5, label: `wsum ${label2}` });
      expectClose(k.view(o), outer64(w64, x64, t, r, d), { rtol: 1e-6, atol: 1e-7, label: `outer ${label2}` });
    });
  }
  it('grows its memory across allocations and keeps earlier regions', () => {
    const k = new RowKernels();
    k.reset();
    const a = k.alloc(10);
    k.view(a).set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const before = k.capacityBytes;
    const big = k.alloc(4 * 1024 * 1024);
    expect(k.capacityBytes).toBeGreaterThan(before);
    expect(big.offset % 16).toBe(0);
    expect(Array.from(k.view(a))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });
});
