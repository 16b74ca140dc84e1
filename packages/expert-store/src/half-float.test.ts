import { describe, expect, it } from 'vitest';
import { testRng } from '@peer/test-utils';
import {
  bfloat16ToFloat32,
  float16ToFloat32,
  float32ToBFloat16,
  float32ToFloat16,
  fromBFloat16Bits,
  fromFloat16Bits,
  toBFloat16Bits,
  toFloat16Bits,
} from './half-float.js';

// Plain float64 decoders, written from the IEEE definitions.
function decodeF16(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m === 0 ? s * Infinity : NaN;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
function decodeBF16(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 7) & 0xff;
  const m = h & 0x7f;
  if (e === 0) return s * m * 2 ** -133;
  if (e === 255) return m === 0 ? s * Infinity : NaN;
  return s * (1 + m / 128) * 2 ** (e - 127);
}

/**
 * Nearest-even rounding by brute force: the finite non-negative codes sorted by value, plus the
 * value one step past the largest (where rounding lands on infinity, as if the exponent went on).
 */
function referenceRounder(decode: (h: number) => number, infCode: number, pastMax: number) {
  const codes: number[] = [];
  for (let h = 0; h < infCode; h++) codes.push(h);
  const values = codes.map(decode);
  return (x: number): number => {
    if (Number.isNaN(x)) return NaN;
    const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
    const a = Math.abs(x);
    // largest code with value <= a
    let lo = 0;
    let hi = values.length - 1;
    if (a >= values[hi]!) lo = hi;
    else {
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (values[mid]! <= a) lo = mid;
        else hi = mid;
      }
    }
    const below = values[lo]!;
    const aboveCode = lo + 1;
    const above = aboveCode < values.length ? values[aboveCode]! : pastMax;
    if (a === below) return sign | lo;
    const dBelow = a - below;
    const dAbove = above - a;
    const pick = dBelow < dAbove ? lo : dAbove < dBelow ? aboveCode : lo % 2 === 0 ? lo : aboveCode;
    return sign | pick;
  };
}

const roundF16 = referenceRounder(decodeF16, 0x7c00, 65536);
const roundBF16 = referenceRounder(decodeBF16, 0x7f80, 2 ** 128);

function f32(x: number): number {
  return Math.fround(x);
}

/** Random float32 values spread over every binade of interest, plus exact midpoints (ties). */
function samples(seed: number, decode: (h: number) => number, infCode: number): Float32Array {
  const rng = testRng(seed);
  const out: number[] = [0, -0, Infinity, -Infinity, 65504, 65519.99, 65520, 65536, 2 ** -24, 2 ** -25, 1.5 * 2 ** -25, 2 ** -26];
  for (let i = 0; i < 20000; i++) {
    const exp = rng.uniform(-30, 20);
    out.push(f32((rng.float() < 0.5 ? -1 : 1) * 2 ** exp * (1 + rng.float())));
  }
  for (let i = 0; i < 4000; i++) {
    const h = rng.int(infCode - 1);
    const mid = (decode(h) + decode(h + 1)) / 2;
    if (Math.fround(mid) === mid) out.push(rng.float() < 0.5 ? mid : -mid);
  }
  return Float32Array.from(out);
}

describe('float16', () => {
  it('rounds float32 to the nearest float16, ties to even, like a brute-force reference', () => {
    const rng = testRng();
    const xs = samples(rng.seed, decodeF16, 0x7c00);
    const got = float32ToFloat16(xs);
    for (let i = 0; i < xs.length; i++) {
      const want = roundF16(xs[i]!);
      if (got[i] !== want) throw new Error(`seed ${rng.seed}: x=${xs[i]} got 0x${got[i]!.toString(16)} want 0x${want.toString(16)}`);
      expect(toFloat16Bits(xs[i]!)).toBe(want);
    }
  });

  it('widens every float16 pattern exactly', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const wide = float16ToFloat32(all);
    for (let h = 0; h < 65536; h++) {
      const want = decodeF16(h);
      if (Number.isNaN(want)) expect(Number.isNaN(wide[h]!)).toBe(true);
      else expect(Object.is(wide[h], want) || wide[h] === want).toBe(true);
      expect(fromFloat16Bits(h)).toBe(wide[h]);
    }
    // Round trip through float32 is the identity on non-NaN patterns.
    const back = float32ToFloat16(wide);
    for (let h = 0; h < 65536; h++) if (!Number.isNaN(decodeF16(h))) expect(back[h]).toBe(h);
  });

  it('keeps NaN a NaN', () => {
    const bits = float32ToFloat16(Float32Array.of(NaN, -NaN));
    for (const b of bits) expect(Number.isNaN(decodeF16(b))).toBe(true);
  });
});

describe('bfloat16', () => {
  it('rounds float32 to the nearest bfloat16, ties to even, like a brute-force reference', () => {
    const rng = testRng();
    const xs = samples(rng.seed, decodeBF16, 0x7f80);
    const extra = Float32Array.of(3.3895313892515355e38, 3.4028234663852886e38, 1e-40, -1e-45);
    const all = new Float32Array(xs.length + extra.length);
    all.set(xs);
    all.set(extra, xs.length);
    const got = float32ToBFloat16(all);
    for (let i = 0; i < all.length; i++) {
      const want = roundBF16(all[i]!);
      if (got[i] !== want) throw new Error(`seed ${rng.seed}: x=${all[i]} got 0x${got[i]!.toString(16)} want 0x${want.toString(16)}`);
      expect(toBFloat16Bits(all[i]!)).toBe(want);
    }
  });

  it('widens every bfloat16 pattern exactly and keeps NaN a NaN', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const wide = bfloat16ToFloat32(all);
    for (let h = 0; h < 65536; h++) {
      const want = decodeBF16(h);
      if (Number.isNaN(want)) expect(Number.isNaN(wide[h]!)).toBe(true);
      else expect(wide[h]).toBe(want);
      if (!Number.isNaN(want)) expect(fromBFloat16Bits(h)).toBe(want);
    }
    expect(Number.isNaN(decodeBF16(float32ToBFloat16(Float32Array.of(NaN))[0]!))).toBe(true);
  });

  it('rejects an output of the wrong length', () => {
    expect(() => float32ToBFloat16(new Float32Array(3), new Uint16Array(2))).toThrow(/out has length 2, expected 3/);
  });
});
