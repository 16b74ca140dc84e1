// Seeded bulk random fills for tables of hundreds of millions of values. `Rng` from @peer/backend
// seeds the stream; the fill itself runs xoshiro128+ inline (no calls, no allocation per value),
// so a 1M x 256 normal fill takes a few seconds instead of a minute.
import type { Rng } from '@peer/backend';

const TWO_POW_MINUS_32 = 2.3283064365386963e-10;
const TWO_POW_MINUS_31 = 4.656612873077393e-10;

/** Four non-zero-in-total 32-bit words from `rng`: the xoshiro128+ state. */
function seedWords(rng: Rng): [number, number, number, number] {
  const w: [number, number, number, number] = [rng.int(2 ** 32) | 0, rng.int(2 ** 32) | 0, rng.int(2 ** 32) | 0, rng.int(2 ** 32) | 0];
  if ((w[0] | w[1] | w[2] | w[3]) === 0) w[0] = 1;
  return w;
}

/**
 * Fills `out` with normal(0, std) samples (Marsaglia's polar method, exact up to float32
 * rounding) drawn from a stream seeded by `rng`. Deterministic for a given rng state.
 */
export function fillNormalSeeded(out: Float32Array, rng: Rng, std: number): Float32Array {
  let [a, b, c, d] = seedWords(rng);
  const n = out.length;
  let i = 0;
  while (i < n) {
    // xoshiro128+ twice, inline: two uniforms in (-1, 1).
    let r = (a + d) | 0;
    let t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = (d << 11) | (d >>> 21);
    const x = r * TWO_POW_MINUS_31;
    r = (a + d) | 0;
    t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = (d << 11) | (d >>> 21);
    const y = r * TWO_POW_MINUS_31;
    const s = x * x + y * y;
    if (s >= 1 || s === 0) continue;
    const f = std * Math.sqrt((-2 * Math.log(s)) / s);
    out[i++] = x * f;
    if (i < n) out[i++] = y * f;
  }
  return out;
}

/** Fills `out` with uniform samples in [lo, hi) from a stream seeded by `rng`. */
export function fillUniformSeeded(out: Float32Array, rng: Rng, lo: number, hi: number): Float32Array {
  let [a, b, c, d] = seedWords(rng);
  const span = hi - lo;
  for (let i = 0; i < out.length; i++) {
    const r = (a + d) >>> 0;
    const t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = (d << 11) | (d >>> 21);
    // float32 rounding of lo + span * u can land on hi itself; keep the interval half-open.
    const v = Math.fround(lo + span * (r * TWO_POW_MINUS_32));
    out[i] = v < hi ? v : lo;
  }
  return out;
}
