// float32 <-> IEEE float16 and bfloat16, as raw uint16 bit patterns (what safetensors F16/BF16 hold).
// Narrowing rounds to nearest, ties to even; overflow gives infinity; NaN stays NaN (quiet).

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** float16 bits of the float32 bit pattern `bits` (round to nearest even). */
function f32BitsToF16(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // float16 subnormal: value = q * 2^-24 with q = m * 2^(exp - 126), m the 24-bit significand.
    const shift = 14 - e;
    if (shift > 24) return sign;
    const m = mant | 0x800000;
    let q = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (q & 1) === 1)) q++;
    return sign | q;
  }
  let q = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (and 65520 and up become infinity).
  if (rem > 0x1000 || (rem === 0x1000 && (q & 1) === 1)) q++;
  return sign | q;
}

/** float32 value of the float16 bit pattern `h` (exact). */
function f16ToF32Value(h: number): number {
  const sign = h & 0x8000 ? 1 : 0;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  let bits: number;
  if (exp === 0) {
    if (mant === 0) bits = sign << 31;
    else return (sign ? -1 : 1) * mant * 2 ** -24;
  } else if (exp === 31) {
    bits = (sign << 31) | 0x7f800000 | (mant << 13);
  } else {
    bits = (sign << 31) | ((exp + 112) << 23) | (mant << 13);
  }
  scratchU32[0] = bits >>> 0;
  return scratchF32[0]!;
}

let f16Table: Float32Array | undefined;

/** All 65536 float16 values as float32, built once: widening is then one load per element. */
function float16Table(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16ToF32Value(h);
  }
  return f16Table;
}

/** float16 bit pattern of `x` (round to nearest even). */
export function toFloat16Bits(x: number): number {
  scratchF32[0] = x;
  return f32BitsToF16(scratchU32[0]!);
}

/** The number a float16 bit pattern stands for. */
export function fromFloat16Bits(h: number): number {
  return float16Table()[h & 0xffff]!;
}

/** bfloat16 bit pattern of `x` (round to nearest even). */
export function toBFloat16Bits(x: number): number {
  scratchF32[0] = x;
  const bits = scratchU32[0]!;
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) return (bits >>> 16) | 0x40;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The number a bfloat16 bit pattern stands for. */
export function fromBFloat16Bits(h: number): number {
  scratchU32[0] = (h & 0xffff) << 16;
  return scratchF32[0]!;
}

function checkOut<T extends { length: number }>(fn: string, src: { length: number }, out: T): T {
  if (out.length !== src.length) throw new Error(`${fn}: out has length ${out.length}, expected ${src.length} (the input length)`);
  return out;
}

/** float32 -> float16 bit patterns, round to nearest even. */
export function float32ToFloat16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  checkOut('float32ToFloat16', src, out);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16(bits[i]!);
  return out;
}

/** float16 bit patterns -> float32 (exact). */
export function float16ToFloat32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  checkOut('float16ToFloat32', src, out);
  const table = float16Table();
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]!]!;
  return out;
}

/** float32 -> bfloat16 bit patterns, round to nearest even. */
export function float32ToBFloat16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  checkOut('float32ToBFloat16', src, out);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i]!;
    out[i] = (b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0 ? (b >>> 16) | 0x40 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** bfloat16 bit patterns -> float32 (exact: a bfloat16 is the top half of a float32). */
export function bfloat16ToFloat32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  checkOut('bfloat16ToFloat32', src, out);
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
  return out;
}
