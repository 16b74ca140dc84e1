// Column sums of a float32 [T, D] matrix in place on the wasm engine's heap, on the calling thread.
// Each column is summed over its rows in order in float64 and rounded once to float32, exactly as
// ops/column-sums.ts does on the host (f64x2 lanes round each add as a JS number does), so the bits
// do not depend on the route; only a NaN's payload is the machine's choice. Saves the host copy
// (`dataSync`) and the JS loop: about 25x faster. Split over the kernel pool by ranges of columns
// (rows cannot be split without changing the order of the adds) it was slower at every size
// measured, so it stays on one thread (README, "Column sums").
// Axes: T rows (tokens), D features (columns).
import type * as tf from '@tensorflow/tfjs-core';
import { FunctionBuilder, I32, V128 } from '../wasm-emitter/wasm-emitter.js';
import { engineHeap, kernelsOnHeap } from '../wasm-memory/engine-heap.js';
import { runCalls } from '../wasm-memory/pooled-pass.js';

// Opcodes the emitter has no helper for (WebAssembly core spec, binary format; SIMD opcode table).
const F64_LOAD = 0x2b;
const F64_STORE = 0x39;
const F64_ADD = 0xa0;
const F64_PROMOTE_F32 = 0xbb;
const F32_DEMOTE_F64 = 0xb6;
const I32_AND = 0x71;
const I8X16_SHUFFLE = 0x0d;
const F64X2_PROMOTE_LOW_F32X4 = 0x5f;
const F32X4_DEMOTE_F64X2_ZERO = 0x5e;
const F64X2_ADD = 0xf0;
const HIGH_TWO_LANES = [8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15];

/**
 * column_sums(x, out, rows, rowBytes, scratch): out[c] = sum over r of x[r, c], in float64 in row
 * order, with 2 * rowBytes bytes of scratch for the accumulators.
 */
function buildColumnSums(): FunctionBuilder {
  const [x, out, rows, rowBytes, scratch] = [0, 1, 2, 3, 4];
  const f = new FunctionBuilder(5);
  const r = f.local(I32);
  const c = f.local(I32);
  const vectorEnd = f.local(I32);
  const rowAt = f.local(I32);
  const accAt = f.local(I32);
  const v = f.local(V128);
  f.get(rowBytes).i32(-16).op(I32_AND).set(vectorEnd);
  /** accAt = scratch + 2 * c: the float64 accumulator of the column at byte c of a row. */
  const accOf = () => f.get(scratch).get(c).i32(1).shl().add().set(accAt);
  // Zero the accumulators.
  f.i32(0).set(c);
  f.whileBelow(c, vectorEnd, 16, () => {
    accOf();
    f.get(accAt).v128Zero().v128Store();
    f.get(accAt).v128Zero().v128Store(16);
  });
  f.whileBelow(c, rowBytes, 4, () => {
    accOf();
    f.get(accAt).op(0x44, 0, 0, 0, 0, 0, 0, 0, 0).op(F64_STORE, 0x03, 0x00); // f64.const +0
  });
  f.get(x).set(rowAt);
  f.forLoop(r, rows, 1, () => {
    f.i32(0).set(c);
    f.whileBelow(c, vectorEnd, 16, () => {
      accOf();
      f.get(rowAt).get(c).add().v128Load().set(v);
      f.get(accAt).get(accAt).v128Load().get(v).simd(F64X2_PROMOTE_LOW_F32X4).simd(F64X2_ADD).v128Store();
      f.get(accAt).get(accAt).v128Load(16).get(v).get(v).simd(I8X16_SHUFFLE, ...HIGH_TWO_LANES).simd(F64X2_PROMOTE_LOW_F32X4).simd(F64X2_ADD).v128Store(16);
    });
    f.whileBelow(c, rowBytes, 4, () => {
      accOf();
      f.get(accAt).get(accAt).op(F64_LOAD, 0x03, 0x00).get(rowAt).get(c).add().f32Load().op(F64_PROMOTE_F32).op(F64_ADD).op(F64_STORE, 0x03, 0x00);
    });
    f.increment(rowAt, () => f.get(rowBytes));
  });
  // Round each sum once to float32.
  f.i32(0).set(c);
  f.whileBelow(c, vectorEnd, 16, () => {
    accOf();
    f.get(out).get(c).add();
    f.get(accAt).v128Load().simd(F32X4_DEMOTE_F64X2_ZERO).get(accAt).v128Load(16).simd(F32X4_DEMOTE_F64X2_ZERO);
    f.simd(I8X16_SHUFFLE, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23).v128Store();
  });
  f.whileBelow(c, rowBytes, 4, () => {
    accOf();
    f.get(out).get(c).add().get(accAt).op(F64_LOAD, 0x03, 0x00).op(F32_DEMOTE_F64).f32Store();
  });
  return f;
}

export const COLUMN_SUMS_MODULE = {
  key: 'column-sums',
  functions: () => [{ name: 'column_sums', builder: buildColumnSums() }],
};

/**
 * Column sums of x [T, D] computed on the wasm heap (see the header), or undefined where the engine
 * is not wasm or the kernels cannot run on its heap (the caller then sums on the host).
 */
export function columnSumsOnHeap(x: tf.Tensor2D): tf.Tensor1D | undefined {
  const heap = engineHeap();
  if (!heap || x.dtype !== 'float32') return undefined;
  if (!kernelsOnHeap(heap.memory, COLUMN_SUMS_MODULE.key, COLUMN_SUMS_MODULE.functions)) return undefined;
  const [rows, cols] = x.shape;
  const out = heap.output([cols], 'float32') as tf.Tensor1D;
  if (cols === 0) return out;
  const scratch = heap.output([2 * 4 * Math.ceil(cols / 4)], 'float32');
  try {
    // Offsets only after both allocations (either may grow the heap).
    const [xAt, outAt, scratchAt] = [heap.offsetOf(x), heap.offsetOf(out), heap.offsetOf(scratch)];
    runCalls(heap.memory, COLUMN_SUMS_MODULE, 'column_sums', [[xAt, outAt, rows, 4 * cols, scratchAt]]);
  } finally {
    scratch.dispose();
  }
  return out;
}
