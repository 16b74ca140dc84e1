// One AdamW step of a dense float32 variable as a single WebAssembly SIMD pass on the engine's heap,
// split over the kernel pool's threads by ranges of elements. It replays, element by element, the
// float32 operations of the tfjs-op composition in ops/adamw.ts (each multiply, add, divide and
// square root rounded once, in the same order, with the same float32 constants), so it gives the
// same bits on any split; only a NaN's payload is the machine's choice. The composition takes ten
// engine kernels, each a pass over memory on one thread with a temporary tensor.
// Axes: E elements of the variable (flattened).
import { F32, FunctionBuilder, I32, V128 } from '../wasm-emitter/wasm-emitter.js';
import { splitRange } from '../wasm-memory/kernel-pool.js';
import { passParts, runCalls } from '../wasm-memory/pooled-pass.js';
import type { WasmMemory } from '../wasm-emitter/wasm-api.js';

/**
 * A variable goes to the pool only with at least this many elements per thread (handing a pass out
 * costs a worker's wake-up; measured in the README, "AdamW").
 */
export const POOLED_ADAMW_MIN_SIZE = 2 ** 19;

let minSizeOverride: number | undefined;

/** Overrides POOLED_ADAMW_MIN_SIZE (0: always the pool while it runs; Infinity: never); undefined restores it. */
export function setPooledAdamwMinSize(size: number | undefined): void {
  if (size !== undefined && !(size >= 0)) throw new Error(`setPooledAdamwMinSize: size must be >= 0, got ${size}`);
  minSizeOverride = size;
}

/** The float32 constants of one step, as the composition rounds them. */
export interface AdamwConstants {
  beta1: number;
  oneMinusBeta1: number;
  beta2: number;
  oneMinusBeta2: number;
  /** 1 - lr * weightDecay, or undefined for no decay (the composition skips the multiply; p * 1 is p, bit for bit). */
  decay: number | undefined;
  bc2Sqrt: number;
  eps: number;
  /** lr / (1 - beta1^t). */
  stepSize: number;
}

// Opcodes the emitter has no helper for (WebAssembly core spec, binary format; SIMD opcode table).
const I32_AND = 0x71;
const F32_MUL = 0x94;
const F32_ADD = 0x92;
const F32_SUB = 0x93;
const F32_DIV = 0x95;
const F32_SQRT = 0x91;

/**
 * adamw(p, g, m, v, pOut, mOut, vOut, bytes, b1, omb1, b2, omb2, decay, bc2, eps, step):
 * over `bytes` / 4 elements at those byte offsets,
 *   m' = m * b1 + g * omb1;  v' = v * b2 + (g * g) * omb2;  q = p * decay (decay 1 for none);
 *   p' = q - (m' / (sqrt(v') / bc2 + eps)) * step
 * each operation rounded to float32, in this order.
 */
function buildAdamw(): FunctionBuilder {
  const f = new FunctionBuilder([I32, I32, I32, I32, I32, I32, I32, I32, F32, F32, F32, F32, F32, F32, F32, F32]);
  const [p, g, m, v, pOut, mOut, vOut, bytes] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [b1, omb1, b2, omb2, decay, bc2, eps, step] = [8, 9, 10, 11, 12, 13, 14, 15];
  const at = f.local(I32);
  const vectorEnd = f.local(I32);
  /** A v128 local holding the f32 parameter `c` in all four lanes. */
  const splat = (c: number) => {
    const l = f.local(V128);
    f.get(c).f32x4Splat().set(l);
    return l;
  };
  const vec = { b1: splat(b1), omb1: splat(omb1), b2: splat(b2), omb2: splat(omb2), decay: splat(decay), bc2: splat(bc2), eps: splat(eps), step: splat(step) };
  const sM = f.local(F32);
  const sV = f.local(F32);
  const sG = f.local(F32);
  const vM = f.local(V128);
  const vV = f.local(V128);
  const vG = f.local(V128);
  f.get(bytes).i32(-16).op(I32_AND).set(vectorEnd);
  f.forLoop(at, vectorEnd, 16, () => {
    const addr = (base: number) => f.get(base).get(at).add();
    addr(g).v128Load().set(vG);
    // m' = m * b1 + g * omb1
    addr(m).v128Load().get(vec.b1).f32x4Mul().get(vG).get(vec.omb1).f32x4Mul().f32x4Add().set(vM);
    // v' = v * b2 + (g * g) * omb2
    addr(v).v128Load().get(vec.b2).f32x4Mul().get(vG).get(vG).f32x4Mul().get(vec.omb2).f32x4Mul().f32x4Add().set(vV);
    addr(mOut).get(vM).v128Store();
    addr(vOut).get(vV).v128Store();
    addr(pOut);
    addr(p).v128Load().get(vec.decay).f32x4Mul();
    f.get(vM).get(vV).f32x4Sqrt().get(vec.bc2).f32x4Div().get(vec.eps).f32x4Add().f32x4Div();
    f.get(vec.step).f32x4Mul().f32x4Sub();
    f.v128Store();
  });
  f.whileBelow(at, bytes, 4, () => {
    const addr = (base: number) => f.get(base).get(at).add();
    addr(g).f32Load().set(sG);
    addr(m).f32Load().get(b1).op(F32_MUL).get(sG).get(omb1).op(F32_MUL).op(F32_ADD).set(sM);
    addr(v).f32Load().get(b2).op(F32_MUL).get(sG).get(sG).op(F32_MUL).get(omb2).op(F32_MUL).op(F32_ADD).set(sV);
    addr(mOut).get(sM).f32Store();
    addr(vOut).get(sV).f32Store();
    addr(pOut);
    addr(p).f32Load().get(decay).op(F32_MUL);
    f.get(sM).get(sV).op(F32_SQRT).get(bc2).op(F32_DIV).get(eps).op(F32_ADD).op(F32_DIV);
    f.get(step).op(F32_MUL).op(F32_SUB);
    f.f32Store();
  });
  return f;
}

export const ADAMW_MODULE = {
  key: 'fused-adamw',
  functions: () => [{ name: 'adamw', builder: buildAdamw() }],
};

/** Byte offsets on the heap of one variable's tensors: inputs p, g, m, v and outputs pOut, mOut, vOut. */
export interface AdamwOffsets {
  p: number;
  g: number;
  m: number;
  v: number;
  pOut: number;
  mOut: number;
  vOut: number;
}

/** Runs the fused step over `size` elements on `memory` (split over the pool as POOLED_ADAMW_MIN_SIZE says). */
export function runFusedAdamw(memory: WasmMemory, at: AdamwOffsets, size: number, c: AdamwConstants): void {
  const parts = passParts(memory, size, minSizeOverride ?? POOLED_ADAMW_MIN_SIZE);
  const tail = [c.beta1, c.oneMinusBeta1, c.beta2, c.oneMinusBeta2, c.decay ?? 1, c.bc2Sqrt, c.eps, c.stepSize];
  const calls = splitRange(Math.ceil(size / 4), parts).map(([v0, v1]) => {
    const [e0, e1] = [4 * v0, Math.min(size, 4 * v1)];
    const o = 4 * e0;
    return [at.p + o, at.g + o, at.m + o, at.v + o, at.pOut + o, at.mOut + o, at.vOut + o, 4 * (e1 - e0), ...tail];
  });
  runCalls(memory, ADAMW_MODULE, 'adamw', calls);
}
