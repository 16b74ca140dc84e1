// The per-element loops of the sparse optimizers as WebAssembly SIMD (f32x4), and the row gather,
// run in place on a table's arena (its rows, moments and gradient slots share one WebAssembly.Memory). One core does
// the lazy Adam update of 65,536 rows x 256 in a few ms of arithmetic; the rest is memory traffic.
//
// Axes: U touched rows, D row width. Pointers are byte offsets into the arena; row offsets wrap
// through i32 arithmetic, which is exact for addresses below 4 GiB (wasm addresses are unsigned).
import { F32, FunctionBuilder, I32, kernelsOnHeap, runPass, V128, type Arena, type WasmMemory } from '@peer/backend/wasm';

export interface OptimizerKernelExports {
  /**
   * Lazy Adam over U rows, visited in the order of the slots order[s] (i32 at orderPtr): slot
   * order[s] holds row rows[order[s]] (i32 at rowsPtr) and its gradient [D] at gradPtr +
   * order[s] * dBytes; coef[s] = (lr / (1 - beta1^t), 1 / sqrt(1 - beta2^t)) (two f32 at coefPtr,
   * in visiting order); w, m, v are [N, D] at wPtr, mPtr, vPtr.
   */
  adam(
    count: number,
    orderPtr: number,
    rowsPtr: number,
    coefPtr: number,
    gradPtr: number,
    wPtr: number,
    mPtr: number,
    vPtr: number,
    dBytes: number,
    beta1: number,
    oneMinusBeta1: number,
    beta2: number,
    oneMinusBeta2: number,
    eps: number,
    decay: number,
    gradScale: number,
  ): void;
  /** Copies rows idx[s] (i32 at idxPtr) of the [N, D] array at srcPtr to [count, D] at dstPtr. */
  gather(count: number, idxPtr: number, srcPtr: number, dstPtr: number, dBytes: number): void;
  /** SGD with heavy-ball momentum (bPtr) or without (momentum = 0 and bPtr unused); slots visited as in `adam`. */
  sgd(count: number, orderPtr: number, rowsPtr: number, gradPtr: number, wPtr: number, bPtr: number, dBytes: number, lr: number, momentum: number, decay: number, gradScale: number, useMomentum: number): void;
}

function buildAdam(): FunctionBuilder {
  const f = new FunctionBuilder([I32, I32, I32, I32, I32, I32, I32, I32, I32, F32, F32, F32, F32, F32, F32, F32]);
  const [count, orderPtr, rowsPtr, coefPtr, gradPtr, wPtr, mPtr, vPtr, dBytes, b1, c1, b2, c2, eps, decay, gs] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
  const s = f.local(I32);
  const slot = f.local(I32);
  const j = f.local(I32);
  const row = f.local(I32);
  const gp = f.local(I32);
  const vb1 = f.local(V128);
  const vc1 = f.local(V128);
  const vb2 = f.local(V128);
  const vc2 = f.local(V128);
  const veps = f.local(V128);
  const vdecay = f.local(V128);
  const vgs = f.local(V128);
  const stepSize = f.local(V128);
  const invSqrtBc2 = f.local(V128);
  const g = f.local(V128);
  const m = f.local(V128);
  const v = f.local(V128);
  for (const [scalar, vector] of [[b1, vb1], [c1, vc1], [b2, vb2], [c2, vc2], [eps, veps], [decay, vdecay], [gs, vgs]] as const) {
    f.get(scalar).f32x4Splat().set(vector);
  }
  f.forLoop(s, count, 1, () => {
    // slot = order[s]; row = rows[slot] * dBytes (byte offset of the row in each [N, D] array)
    f.get(orderPtr).get(s).i32(4).mul().add().i32Load().set(slot);
    f.get(rowsPtr).get(slot).i32(4).mul().add().i32Load().get(dBytes).mul().set(row);
    f.get(gradPtr).get(slot).get(dBytes).mul().add().set(gp);
    f.get(coefPtr).get(s).i32(8).mul().add().f32Load(0).f32x4Splat().set(stepSize);
    f.get(coefPtr).get(s).i32(8).mul().add().f32Load(4).f32x4Splat().set(invSqrtBc2);
    f.forLoop(j, dBytes, 16, () => {
      // g = grad * gradScale
      f.get(gp).get(j).add().v128Load().get(vgs).f32x4Mul().set(g);
      // m = beta1 * m + (1 - beta1) * g
      f.get(mPtr).get(row).add().get(j).add();
      f.get(vb1).get(mPtr).get(row).add().get(j).add().v128Load().f32x4Mul();
      f.get(vc1).get(g).f32x4Mul().f32x4Add();
      f.op(0x22, m); // local.tee m
      f.v128Store();
      // v = beta2 * v + (1 - beta2) * g * g
      f.get(vPtr).get(row).add().get(j).add();
      f.get(vb2).get(vPtr).get(row).add().get(j).add().v128Load().f32x4Mul();
      f.get(vc2).get(g).f32x4Mul().get(g).f32x4Mul().f32x4Add();
      f.op(0x22, v);
      f.v128Store();
      // w = decay * w - stepSize * m / (sqrt(v) * invSqrtBc2 + eps)
      f.get(wPtr).get(row).add().get(j).add();
      f.get(vdecay).get(wPtr).get(row).add().get(j).add().v128Load().f32x4Mul();
      f.get(stepSize).get(m).f32x4Mul();
      f.get(v).f32x4Sqrt().get(invSqrtBc2).f32x4Mul().get(veps).f32x4Add();
      f.f32x4Div().f32x4Sub();
      f.v128Store();
    });
  });
  return f;
}

function buildSgd(): FunctionBuilder {
  const f = new FunctionBuilder([I32, I32, I32, I32, I32, I32, I32, F32, F32, F32, F32, I32]);
  const [count, orderPtr, rowsPtr, gradPtr, wPtr, bPtr, dBytes, lr, momentum, decay, gs, useMomentum] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
  const s = f.local(I32);
  const slot = f.local(I32);
  const j = f.local(I32);
  const row = f.local(I32);
  const gp = f.local(I32);
  const vlr = f.local(V128);
  const vmu = f.local(V128);
  const vdecay = f.local(V128);
  const vgs = f.local(V128);
  const g = f.local(V128);
  for (const [scalar, vector] of [[lr, vlr], [momentum, vmu], [decay, vdecay], [gs, vgs]] as const) f.get(scalar).f32x4Splat().set(vector);
  f.forLoop(s, count, 1, () => {
    f.get(orderPtr).get(s).i32(4).mul().add().i32Load().set(slot);
    f.get(rowsPtr).get(slot).i32(4).mul().add().i32Load().get(dBytes).mul().set(row);
    f.get(gradPtr).get(slot).get(dBytes).mul().add().set(gp);
    f.forLoop(j, dBytes, 16, () => {
      f.get(gp).get(j).add().v128Load().get(vgs).f32x4Mul().set(g);
      f.get(useMomentum).op(0x04, 0x40); // if
      // b = momentum * b + g; g = b
      f.get(bPtr).get(row).add().get(j).add();
      f.get(vmu).get(bPtr).get(row).add().get(j).add().v128Load().f32x4Mul().get(g).f32x4Add();
      f.op(0x22, g);
      f.v128Store();
      f.op(0x0b); // end if
      // w = decay * w - lr * g
      f.get(wPtr).get(row).add().get(j).add();
      f.get(vdecay).get(wPtr).get(row).add().get(j).add().v128Load().f32x4Mul();
      f.get(vlr).get(g).f32x4Mul().f32x4Sub();
      f.v128Store();
    });
  });
  return f;
}

function buildGather(): FunctionBuilder {
  const [count, idxPtr, srcPtr, dstPtr, dBytes] = [0, 1, 2, 3, 4];
  const f = new FunctionBuilder(5);
  const s = f.local(I32);
  f.forLoop(s, count, 1, () => {
    // memory.copy(dst, src + idx[s] * dBytes, dBytes): the engine's memmove, one call per row.
    f.get(dstPtr);
    f.get(srcPtr).get(idxPtr).get(s).i32(4).mul().add().i32Load().get(dBytes).mul().add();
    f.get(dBytes);
    f.op(0xfc, 0x0a, 0x00, 0x00);
    f.increment(dstPtr, () => f.get(dBytes));
  });
  return f;
}

const OPTIMIZER_KEY = 'expert-store/optimizer';
const optimizerFunctions = () => [
  { name: 'adam', builder: buildAdam() },
  { name: 'sgd', builder: buildSgd() },
  { name: 'gather', builder: buildGather() },
];
/** The fewest rows in a part of a pass split over threads (handing a part out costs a few µs). */
export const MIN_ROWS_PER_PART = 64;

/** The optimizer kernels bound to `memory` (an arena's), or undefined where WebAssembly SIMD is unavailable. */
export function optimizerKernels(memory: WasmMemory): OptimizerKernelExports | undefined {
  return kernelsOnHeap<OptimizerKernelExports>(memory, OPTIMIZER_KEY, optimizerFunctions) ?? undefined;
}

/**
 * Runs optimizer kernel `fn` over `count` rows (slots), split into contiguous parts over the kernel
 * pool's threads when `memory` is shared and the pass is big enough, else in one call; `args(start,
 * end)` are the kernel's arguments for rows [start, end). Every row is updated by one thread, in the
 * same arithmetic as on one: the result does not depend on the thread count.
 */
export function runOptimizerPass(memory: WasmMemory, fn: keyof OptimizerKernelExports, count: number, args: (start: number, end: number) => number[]): void {
  runPass(memory, { key: OPTIMIZER_KEY, functions: optimizerFunctions }, fn, count, MIN_ROWS_PER_PART, args);
}

/**
 * Copies `count` rows of `rowBytes` from `rowsAt` + indices[s] * rowBytes (the int32 indices at
 * `indicesAt`) to `outAt` + s * rowBytes, split over the kernel pool's threads like the optimizer passes.
 */
export function gatherRows(arena: Arena, count: number, indicesAt: number, rowsAt: number, outAt: number, rowBytes: number): void {
  runOptimizerPass(arena.memory, 'gather', count, (s0, s1) => [s1 - s0, indicesAt + s0 * 4, rowsAt, outAt + s0 * rowBytes, rowBytes]);
}
