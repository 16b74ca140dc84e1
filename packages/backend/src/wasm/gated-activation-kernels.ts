// The element-wise part of PEER's expert mixture on the wasm heap, split over the kernel pool:
//   forward   z = sigma(a), w = g * z
//   backward  da = g * s * sigma'(a), dg = z * s
// for gelu and relu, each element in float64 exactly as ops/activation.ts's array loops
// (`activateArray`, `activationDerivativeArray`) and the mixture's products compute it in JS, so the
// bits are the loops' bits on any thread count. Wasm has no exp instruction, and a kernel on a worker
// cannot call Math.exp, so `emitExp` is V8's exp (fdlibm's e_exp.c as V8 keeps it in
// src/base/ieee754.cc) rewritten operation for operation: every branch, constant and rounding the
// same, which makes it equal to Math.exp to the last bit (tested on the whole range).
// Axes: T tokens, R retrieved experts per token; a kernel sees elements [start, end) of T * R.
import { F64, FunctionBuilder, I32, I64 } from '../wasm-emitter/wasm-emitter.js';

// Opcodes the emitter has no helper for (WebAssembly core spec, binary format).
const IF = [0x04, 0x40];
const ELSE = 0x05;
const END = 0x0b;
const SELECT = 0x1b;
const F32_CONST = 0x43;
const F32_LOAD = 0x2a;
const F32_STORE = 0x38;
const F64_LOAD = 0x2b;
const F64_STORE = 0x39;
const I64_CONST = 0x42;
const I32_EQZ = 0x45;
const I32_EQ = 0x46;
const I32_LT_U = 0x49;
const I32_GT_U = 0x4b;
const I32_GE_S = 0x4e;
const I32_GE_U = 0x4f;
const F32_GT = 0x5e;
const F64_EQ = 0x61;
const F64_LT = 0x63;
const F64_GT = 0x64;
const F64_GE = 0x66;
const I32_SUB = 0x6b;
const I32_AND = 0x71;
const I32_OR = 0x72;
const I32_SHL = 0x74;
const I32_SHR_U = 0x76;
const I64_SHL = 0x86;
const I64_SHR_U = 0x88;
const F32_MUL = 0x94;
const F64_ABS = 0x99;
const F64_NEG = 0x9a;
const F64_ADD = 0xa0;
const F64_SUB = 0xa1;
const F64_MUL = 0xa2;
const F64_DIV = 0xa3;
const I32_WRAP_I64 = 0xa7;
const I32_TRUNC_F64_S = 0xaa;
const I64_EXTEND_I32_U = 0xad;
const F32_DEMOTE_F64 = 0xb6;
const F64_CONVERT_I32_S = 0xb7;
const F64_PROMOTE_F32 = 0xbb;
const I64_REINTERPRET_F64 = 0xbd;
const F64_REINTERPRET_I64 = 0xbf;

// exp's constants (fdlibm; the decimal forms give the bit patterns noted there).
const LN2_HI = 6.93147180369123816490e-1;
const LN2_LO = 1.90821492927058770002e-10;
const INV_LN2 = 1.442695040888963387e0;
const O_THRESHOLD = 7.09782712893383973096e2;
const U_THRESHOLD = -7.4513321910194110842e2;
const HUGE = 1.0e300;
const TWO_M1000 = 9.33263618503218878990e-302;
const TWO_1023 = 8.988465674311579539e307;
const EXP_P = [1.66666666666666019037e-1, -2.77777777770155933842e-3, 6.61375632143793436117e-5, -1.6533902205465251539e-6, 4.13813679705723846039e-8];
// erfc's Chebyshev fit and gelu's constants: activation.ts's, in its order of operations.
const ERFC_C = [1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277];
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** Scratch locals of one function, declared once and shared by the emitted expressions (exp's, then erfc's own). */
class Scratch {
  readonly bits: number;
  readonly hx: number;
  readonly sign: number;
  readonly k: number;
  readonly x: number;
  readonly hi: number;
  readonly lo: number;
  readonly t: number;
  readonly c: number;
  readonly y: number;
  readonly twopk: number;
  readonly erfcZ: number;
  readonly erfcT: number;
  readonly erfcR: number;
  constructor(f: FunctionBuilder) {
    this.bits = f.local(I64);
    [this.hx, this.sign, this.k] = [f.local(I32), f.local(I32), f.local(I32)];
    [this.x, this.hi, this.lo, this.t, this.c, this.y, this.twopk] = [f.local(F64), f.local(F64), f.local(F64), f.local(F64), f.local(F64), f.local(F64), f.local(F64)];
    [this.erfcZ, this.erfcT, this.erfcR] = [f.local(F64), f.local(F64), f.local(F64)];
  }
}

/** out = exp(x) (f64 locals), V8's algorithm (see the header). */
function emitExp(f: FunctionBuilder, s: Scratch, x: number, out: number): void {
  const { bits, hx, sign, k, hi, lo, t, c, y, twopk } = s;
  const xr = s.x;
  f.get(x).op(I64_REINTERPRET_F64).set(bits);
  f.get(bits).op(I64_CONST, 32).op(I64_SHR_U, I32_WRAP_I64).set(hx);
  f.get(hx).i32(31).op(I32_SHR_U).set(sign);
  f.get(hx).i32(0x7fffffff).op(I32_AND).set(hx);
  // Non-finite: NaN stays NaN, exp(+inf) = inf, exp(-inf) = 0.
  f.get(hx).i32(0x7ff00000).op(I32_GE_U, ...IF);
  {
    f.get(hx).i32(0xfffff).op(I32_AND).get(bits).op(I32_WRAP_I64, I32_OR).op(I32_EQZ, ...IF);
    f.get(x).f64(0).get(sign).op(I32_EQZ, SELECT).set(out);
    f.op(ELSE);
    f.get(x).get(x).op(F64_ADD).set(out);
    f.op(END);
  }
  f.op(ELSE);
  // Overflow and underflow.
  f.get(hx).i32(0x40862e42).op(I32_GE_U).get(x).f64(O_THRESHOLD).op(F64_GT, I32_AND, ...IF);
  f.f64(HUGE).f64(HUGE).op(F64_MUL).set(out);
  f.op(ELSE);
  f.get(hx).i32(0x40862e42).op(I32_GE_U).get(x).f64(U_THRESHOLD).op(F64_LT, I32_AND, ...IF);
  f.f64(TWO_M1000).f64(TWO_M1000).op(F64_MUL).set(out);
  f.op(ELSE);
  // V8 answers exp(1) with Math.E.
  f.get(hx).i32(0x3fd62e42).op(I32_GT_U).get(hx).i32(0x3ff0a2b2).op(I32_LT_U, I32_AND).get(x).f64(1).op(F64_EQ, I32_AND, ...IF);
  f.f64(Math.E).set(out);
  f.op(ELSE);
  // |x| < 2^-28: 1 + x.
  f.get(hx).i32(0x3e300000).op(I32_LT_U, ...IF);
  f.f64(1).get(x).op(F64_ADD).set(out);
  f.op(ELSE);
  // Argument reduction: x = k ln2 + r, r = hi - lo, |r| <= 0.5 ln2.
  f.i32(0).set(k).get(x).set(xr);
  f.get(hx).i32(0x3fd62e42).op(I32_GT_U, ...IF);
  {
    f.get(hx).i32(0x3ff0a2b2).op(I32_LT_U, ...IF);
    f.get(x).f64(-LN2_HI).f64(LN2_HI).get(sign).op(SELECT, F64_SUB).set(hi);
    f.f64(-LN2_LO).f64(LN2_LO).get(sign).op(SELECT).set(lo);
    f.i32(1).get(sign).op(I32_SUB).get(sign).op(I32_SUB).set(k);
    f.op(ELSE);
    f.f64(INV_LN2).get(x).op(F64_MUL).f64(-0.5).f64(0.5).get(sign).op(SELECT, F64_ADD, I32_TRUNC_F64_S).set(k);
    f.get(k).op(F64_CONVERT_I32_S).set(t);
    f.get(x).get(t).f64(LN2_HI).op(F64_MUL, F64_SUB).set(hi);
    f.get(t).f64(LN2_LO).op(F64_MUL).set(lo);
    f.op(END);
    f.get(hi).get(lo).op(F64_SUB).set(xr);
  }
  f.op(END);
  f.get(xr).get(xr).op(F64_MUL).set(t);
  // twopk = 2^k, or 2^(k + 1000) where 2^k is below the normal range.
  f.get(k).get(k).i32(1000).add().get(k).i32(-1021).op(I32_GE_S, SELECT).i32(20).op(I32_SHL).i32(0x3ff00000).add();
  f.op(I64_EXTEND_I32_U, I64_CONST, 32, I64_SHL, F64_REINTERPRET_I64).set(twopk);
  // c = r - t (P1 + t (P2 + t (P3 + t (P4 + t P5))))
  f.get(xr).get(t);
  for (let i = 0; i < 4; i++) f.f64(EXP_P[i]!).get(t);
  f.f64(EXP_P[4]!);
  for (let i = 0; i < 4; i++) f.op(F64_MUL, F64_ADD);
  f.op(F64_MUL, F64_SUB).set(c);
  f.get(k).op(I32_EQZ, ...IF);
  // 1 - ((r c) / (c - 2) - r)
  f.f64(1).get(xr).get(c).op(F64_MUL).get(c).f64(2).op(F64_SUB, F64_DIV).get(xr).op(F64_SUB, F64_SUB).set(out);
  f.op(ELSE);
  // y = 1 - ((lo - (r c) / (2 - c)) - hi), scaled by 2^k
  f.f64(1).get(lo).get(xr).get(c).op(F64_MUL).f64(2).get(c).op(F64_SUB, F64_DIV, F64_SUB).get(hi).op(F64_SUB, F64_SUB).set(y);
  f.get(k).i32(-1021).op(I32_GE_S, ...IF);
  {
    f.get(k).i32(1024).op(I32_EQ, ...IF);
    f.get(y).f64(2).op(F64_MUL).f64(TWO_1023).op(F64_MUL).set(out);
    f.op(ELSE);
    f.get(y).get(twopk).op(F64_MUL).set(out);
    f.op(END);
  }
  f.op(ELSE);
  f.get(y).get(twopk).op(F64_MUL).f64(TWO_M1000).op(F64_MUL).set(out);
  f.op(END);
  f.op(END); // k == 0
  f.op(END, END, END, END); // |x| < 2^-28, exp(1), underflow, overflow
  f.op(END); // non-finite
}

/** out = erfc(x) (f64 locals), activation.ts's `erfc`. */
function emitErfc(f: FunctionBuilder, s: Scratch, x: number, out: number): void {
  const [z, t, r] = [s.erfcZ, s.erfcT, s.erfcR];
  f.get(x).op(F64_ABS).set(z);
  f.f64(1).f64(1).f64(0.5).get(z).op(F64_MUL, F64_ADD, F64_DIV).set(t);
  // -z z - 1.26551223 + t (c0 + t (c1 + ... + t c8))
  f.get(z).op(F64_NEG).get(z).op(F64_MUL).f64(1.26551223).op(F64_SUB).get(t);
  for (let i = 0; i < ERFC_C.length - 1; i++) f.f64(ERFC_C[i]!).get(t);
  f.f64(ERFC_C[ERFC_C.length - 1]!);
  for (let i = 0; i < ERFC_C.length - 1; i++) f.op(F64_MUL, F64_ADD);
  f.op(F64_MUL, F64_ADD).set(r);
  emitExp(f, s, r, r);
  f.get(t).get(r).op(F64_MUL).set(r);
  f.get(r).f64(2).get(r).op(F64_SUB).get(x).f64(0).op(F64_GE, SELECT).set(out);
}

type KernelActivation = 'gelu' | 'relu';

/** A loop over elements [start, end): `body(at)` with `at` the byte offset of the element. */
function elementLoop(f: FunctionBuilder, start: number, end: number, body: (at: number) => void): void {
  const at = f.local(I32);
  const last = f.local(I32);
  f.get(start).i32(2).op(I32_SHL).set(at);
  f.get(end).i32(2).op(I32_SHL).set(last);
  f.whileBelow(at, last, 4, () => body(at));
}

/** `${activation}_forward(a, g, z, w, start, end)`: z = sigma(a), w = g z (float32 arrays). */
function buildForward(activation: KernelActivation): FunctionBuilder {
  const [a, g, z, w, start, end] = [0, 1, 2, 3, 4, 5];
  const f = new FunctionBuilder(6);
  const s = new Scratch(f);
  const v = f.local(F64);
  const e = f.local(F64);
  elementLoop(f, start, end, (at) => {
    f.get(z).get(at).add();
    if (activation === 'relu') {
      // a > 0 ? a : 0 (NaN and -0 give +0, as the JS loop)
      f.get(a).get(at).add().op(F32_LOAD, 2, 0).op(F32_CONST, 0, 0, 0, 0).get(a).get(at).add().op(F32_LOAD, 2, 0).op(F32_CONST, 0, 0, 0, 0).op(F32_GT, SELECT);
    } else {
      // 0.5 a erfc(-a / sqrt 2)
      f.get(a).get(at).add().op(F32_LOAD, 2, 0, F64_PROMOTE_F32).set(v);
      f.get(v).op(F64_NEG).f64(Math.SQRT1_2).op(F64_MUL).set(e);
      emitErfc(f, s, e, e);
      f.f64(0.5).get(v).op(F64_MUL).get(e).op(F64_MUL, F32_DEMOTE_F64);
    }
    f.op(F32_STORE, 2, 0);
    f.get(w).get(at).add().get(g).get(at).add().op(F32_LOAD, 2, 0).get(z).get(at).add().op(F32_LOAD, 2, 0, F32_MUL, F32_STORE, 2, 0);
  });
  return f;
}

/** `${activation}_backward(a, g, z, s, da, dg, start, end)`: da = g s sigma'(a), dg = z s. */
function buildBackward(activation: KernelActivation): FunctionBuilder {
  const [a, g, z, sv, da, dg, start, end] = [0, 1, 2, 3, 4, 5, 6, 7];
  const f = new FunctionBuilder(8);
  const s = new Scratch(f);
  const v = f.local(F64);
  const e = f.local(F64);
  const p = f.local(F64);
  elementLoop(f, start, end, (at) => {
    f.get(da).get(at).add();
    // g s, exact in float64
    f.get(g).get(at).add().op(F32_LOAD, 2, 0, F64_PROMOTE_F32).get(sv).get(at).add().op(F32_LOAD, 2, 0, F64_PROMOTE_F32, F64_MUL);
    if (activation === 'relu') {
      // a > 0 ? 1 : 0
      f.f64(1).f64(0).get(a).get(at).add().op(F32_LOAD, 2, 0).op(F32_CONST, 0, 0, 0, 0).op(F32_GT, SELECT);
    } else {
      // Phi(a) + a phi(a) = 0.5 erfc(-a / sqrt 2) + a / sqrt(2 pi) exp(-a^2 / 2), rounded to float32
      f.get(a).get(at).add().op(F32_LOAD, 2, 0, F64_PROMOTE_F32).set(v);
      f.get(v).op(F64_NEG).f64(Math.SQRT1_2).op(F64_MUL).set(e);
      emitErfc(f, s, e, e);
      f.f64(-0.5).get(v).op(F64_MUL).get(v).op(F64_MUL).set(p);
      emitExp(f, s, p, p);
      f.f64(0.5).get(e).op(F64_MUL).get(v).f64(INV_SQRT_2PI).op(F64_MUL).get(p).op(F64_MUL, F64_ADD, F32_DEMOTE_F64, F64_PROMOTE_F32);
    }
    f.op(F64_MUL, F32_DEMOTE_F64, F32_STORE, 2, 0);
    f.get(dg).get(at).add().get(z).get(at).add().op(F32_LOAD, 2, 0).get(sv).get(at).add().op(F32_LOAD, 2, 0, F32_MUL, F32_STORE, 2, 0);
  });
  return f;
}

/** `exp_f64(x, out, n)`: out[i] = exp(x[i]) over float64 arrays (for tests of `emitExp`). */
function buildExpArray(): FunctionBuilder {
  const [x, out, n] = [0, 1, 2];
  const f = new FunctionBuilder(3);
  const s = new Scratch(f);
  const v = f.local(F64);
  const at = f.local(I32);
  const last = f.local(I32);
  f.get(n).i32(3).op(I32_SHL).set(last);
  f.forLoop(at, last, 8, () => {
    f.get(x).get(at).add().op(F64_LOAD, 3, 0).set(v);
    emitExp(f, s, v, v);
    f.get(out).get(at).add().get(v).op(F64_STORE, 3, 0);
  });
  return f;
}

export const GATED_ACTIVATION_MODULE = {
  key: 'gated-activation',
  functions: () => [
    { name: 'gelu_forward', builder: buildForward('gelu') },
    { name: 'gelu_backward', builder: buildBackward('gelu') },
    { name: 'relu_forward', builder: buildForward('relu') },
    { name: 'relu_backward', builder: buildBackward('relu') },
    { name: 'exp_f64', builder: buildExpArray() },
  ],
};

/** The activations the kernels cover (gelu-tanh, which needs tanh, stays in JS). */
export function hasGatedActivationKernel(activation: string): activation is KernelActivation {
  return activation === 'gelu' || activation === 'relu';
}
