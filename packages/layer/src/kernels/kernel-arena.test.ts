import { describe, expect, it } from 'vitest';
import { expectClose, testRng } from '@peer/test-utils';
import { KernelArena } from './kernel-arena.js';

// Plain float64 references of the products (rows indexed through slots).
function dot64(rows: Float64Array, slot: number[], x: Float64Array, t: number, r: number, d: number): Float64Array {
  const out = new Float64Array(t * r);
  for (let a = 0; a < t; a++) for (let b = 0; b < r; b++) for (let j = 0; j < d; j++) out[a * r + b]! += rows[slot[a * r + b]! * d + j]! * x[a * d + j]!;
  return out;
}
function wsum64(rows: Float64Array, slot: number[], w: Float64Array, t: number, r: number, d: number): Float64Array {
  const y = new Float64Array(t * d);
  for (let a = 0; a < t; a++) for (let b = 0; b < r; b++) for (let j = 0; j < d; j++) y[a * d + j]! += w[a * r + b]! * rows[slot[a * r + b]! * d + j]!;
  return y;
}

describe('KernelArena', () => {
  it('builds the SIMD module on this host', () => {
    expect(new KernelArena().simd).toBe(true);
  });
  for (const [label, forceFallback, d] of [
    ['wasm SIMD', false, 24],
    ['wasm SIMD, wide rows', false, 256],
    ['JS fallback', true, 24],
    ['width not a multiple of 8 (JS loops)', false, 10],
  ] as const) {
    it(`${label}: dot and wsum equal float64 references (d = ${d})`, () => {
      const rng = testRng();
      const k = new KernelArena({ forceFallback });
      const [t, r, u] = [5, 7, 9];
      // u distinct rows, referenced by random slots (with repeats).
      const rows64 = rng.normals(u * d);
      const slots = Array.from({ length: t * r }, () => rng.int(u));
      const x64 = rng.normals(t * d);
      const w64 = rng.normals(t * r);
      k.reset();
      // Allocate a region first so that offsets are not all zero.
      k.alloc(3);
      const rows = k.alloc(u * d);
      const slot = k.alloc(t * r);
      const x = k.alloc(t * d);
      const w = k.alloc(t * r);
      const out = k.alloc(t * r);
      const y = k.alloc(t * d);
      k.view(rows).set(rows64);
      k.viewInt(slot).set(slots);
      k.view(x).set(x64);
      k.view(w).set(w64);
      // Garbage in the outputs: the kernels must overwrite, not accumulate.
      k.view(y).fill(7);
      k.dot(rows, slot, x, out, t, r, d);
      k.wsum(rows, slot, w, y, t, r, d);
      const label2 = `${label} seed ${rng.seed}`;
      expectClose(k.view(out), dot64(rows64, slots, x64, t, r, d), { rtol: 1e-4, atol: 1e-5, label: `dot ${label2}` });
      expectClose(k.view(y), wsum64(rows64, slots, w64, t, r, d), { rtol: 1e-4, atol: 1e-5, label: `wsum ${label2}` });
    });
  }
  it('grows its memory across allocations and keeps earlier regions', () => {
    const k = new KernelArena();
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

describe('KernelArena.groupSum', () => {
  for (const [label, forceFallback, d] of [
    ['wasm SIMD', false, 24],
    ['JS fallback', true, 24],
  ] as const) {
    it(`${label}: sums c[o] x[o / r] over each group (float64 reference)`, () => {
      const rng = testRng();
      const k = new KernelArena({ forceFallback });
      const [t, r] = [4, 5];
      const n = t * r;
      // Random groups over the n occurrences: a random permutation cut at random ends.
      const order = Array.from({ length: n }, (_, i) => i);
      for (let i = n - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      const ends: number[] = [];
      for (let i = 1; i <= n; i++) if (i === n || rng.float() < 0.4) ends.push(i);
      const x64 = rng.normals(t * d);
      const c64 = rng.normals(n);
      const expected = new Float64Array(ends.length * d);
      let i = 0;
      ends.forEach((end, g) => {
        for (; i < end; i++) {
          const o = order[i]!;
          for (let j = 0; j < d; j++) expected[g * d + j]! += c64[o]! * x64[Math.floor(o / r) * d + j]!;
        }
      });
      k.reset();
      const ord = k.alloc(n);
      const endR = k.alloc(ends.length);
      const c = k.alloc(n);
      const x = k.alloc(t * d);
      const out = k.alloc(ends.length * d);
      k.viewInt(ord).set(order);
      k.viewInt(endR).set(ends);
      k.view(c).set(c64);
      k.view(x).set(x64);
      k.view(out).fill(3);
      k.groupSum(ord, endR, c, x, out, ends.length, r, d);
      expectClose(k.view(out), expected, { rtol: 1e-4, atol: 1e-5, label: `${label} seed ${rng.seed}` });
    });
  }
});
