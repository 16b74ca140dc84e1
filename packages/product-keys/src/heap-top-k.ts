// Row-wise top-k in a WebAssembly SIMD kernel that runs on the wasm engine's own heap, in place on
// the sub-key score tensor (no copy). Same results as `rowTopK`, bit for bit: the k largest,
// descending, equal values in increasing column order.
// Axes: Q rows (queries: token, head), W row width (n = sqrt(N) sub-keys), k results per row.
//
// Per row, the kernel first takes the maximum of each of k disjoint blocks of the row (f32x4.max);
// the smallest of those k maxima, t0, is at most the row's k-th largest value, because k distinct
// entries reach it. Then one f32x4 sweep compares four scores at a time with t0 and hands only the
// lanes >= t0 (a small fraction of a random row; product-keys README) to the scalar insertion of `rowTopK`,
// in column order. An entry below t0 can never be in the top k, so skipping it changes nothing.
//
// Why: the JS `rowTopK` was a sizeable share of the retrieval forward (timings in the product-keys
// README); the JS loop pays for every element it reads, the kernel's sweep four at a time. Rows are
// independent: a large pass is split into row ranges over the kernel pool's threads (@peer/backend/wasm's runPass),
// each row computed by one thread exactly as on one.
import type * as tf from '@tensorflow/tfjs-core';
import { F32, FunctionBuilder, I32, Op, V128, engineHeap, kernelsOnHeap, runPass, type KernelModule } from '@peer/backend/wasm';
import { offerDescending } from './descending-insert.js';

interface TopKExports {
  row_topk(scores: number, rows: number, width: number, k: number, blockBytes: number, outValues: number, outIndices: number): void;
}

// Opcodes the emitter has no helper for (WebAssembly core spec, binary format; SIMD proposal).
const F32_MIN = 0x96;
const F32_MAX = 0x97;
const F32_REINTERPRET_I32 = 0xbe;
const F32X4_GE = 0x46;
const F32X4_MAX = 0xe9;
const V128_ANY_TRUE = 0x53;

/** (scores, rows, width, k, blockBytes, outValues, outIndices): byte offsets; see the file comment. */
function buildRowTopK(): FunctionBuilder {
  const [scores, rows, width, k, blockBytes, outValues, outIndices] = [0, 1, 2, 3, 4, 5, 6];
  const f = new FunctionBuilder(7);
  const r = f.local(I32);
  const b = f.local(I32);
  const off = f.local(I32);
  const block = f.local(I32);
  const rowBytes = f.local(I32);
  const count = f.local(I32);
  const pos = f.local(I32);
  const ok = f.local(I32);
  const at = f.local(I32);
  const t0 = f.local(F32);
  const x = f.local(F32);
  const vmax = f.local(V128);
  const v = f.local(V128);
  const vt = f.local(V128);

  const valueAt = (slot: number) => f.get(outValues).get(slot).i32(2).shl().add();
  const indexAt = (slot: number) => f.get(outIndices).get(slot).i32(2).shl().add();

  const list = { count, k, pos, ok, at, valueAt, indexAt };
  /** Offers (x, column (off >> 2) + lane) to the row's descending list, if x reaches t0. */
  const offer = (lane: number) => {
    f.get(x).get(t0).op(Op.f32Ge).op(Op.if, Op.void);
    offerDescending(f, list, x, () => f.get(off).i32(2).op(Op.i32ShrU).i32(lane).add());
    f.op(Op.end);
  };

  f.get(width).i32(2).shl().set(rowBytes);
  f.forLoop(r, rows, 1, () => {
    // A row with a NaN gets no entries (NaN compares false with everything): it keeps NaN scores at
    // columns 0..k-1, in range, where uninitialized memory would be garbage.
    f.forLoop(b, k, 1, () => {
      valueAt(b).i32(0x7fc00000).op(F32_REINTERPRET_I32).f32Store();
      indexAt(b).get(b).i32Store();
    });
    // t0 = the smallest of the k block maxima.
    f.i32(0x7f800000).op(F32_REINTERPRET_I32).set(t0);
    f.forLoop(b, k, 1, () => {
      f.get(scores).get(b).get(blockBytes).mul().add().set(block);
      f.get(block).v128Load().set(vmax);
      f.i32(16).set(off);
      f.whileBelow(off, blockBytes, 16, () => {
        f.get(vmax).get(block).get(off).add().v128Load().simd(F32X4_MAX).set(vmax);
      });
      f.get(vmax).f32x4ExtractLane(0).get(vmax).f32x4ExtractLane(1).op(F32_MAX);
      f.get(vmax).f32x4ExtractLane(2).get(vmax).f32x4ExtractLane(3).op(F32_MAX).op(F32_MAX);
      f.get(t0).op(F32_MIN).set(t0);
    });
    f.get(t0).f32x4Splat().set(vt);
    f.i32(0).set(count);
    f.forLoop(off, rowBytes, 16, () => {
      f.get(scores).get(off).add().v128Load().set(v);
      f.get(v).get(vt).simd(F32X4_GE).simd(V128_ANY_TRUE).op(Op.if, Op.void);
      for (let lane = 0; lane < 4; lane++) {
        f.get(v).f32x4ExtractLane(lane).set(x);
        offer(lane);
      }
      f.op(Op.end);
    });
    f.increment(scores, () => f.get(rowBytes));
    f.increment(outValues, () => f.get(k).i32(2).shl());
    f.increment(outIndices, () => f.get(k).i32(2).shl());
  });
  return f;
}

const TOP_K_MODULE: KernelModule = { key: 'row_topk', functions: () => [{ name: 'row_topk', builder: buildRowTopK() }] };
/** Passes of fewer rows than this per thread run on one thread (product-keys README, "Threads"). */
export const TOP_K_MIN_ROWS_PER_THREAD = 16;

let disabled = false;

/** Tests only: make `heapRowTopK` decline, so that callers take the JS path. */
export function disableHeapTopK(value: boolean): void {
  disabled = value;
}

/** Whether `heapRowTopKOnHeap` runs for rows of `width` and top `k` on the current engine. */
export function heapTopKRuns(width: number, k: number): boolean {
  if (disabled || width % 4 !== 0 || width < 4 * k) return false;
  const heap = engineHeap();
  return heap !== undefined && kernelsOnHeap<TopKExports>(heap.memory, TOP_K_MODULE.key, TOP_K_MODULE.functions) !== null;
}

/**
 * `rowTopK` of the float32 [rows, width] tensor `scores` in place on the wasm engine's heap, into a
 * new heap tensor [2, rows, k]: the values, then the column indices as int32 bits (the caller
 * disposes it). Undefined, doing nothing, where `heapTopKRuns` says no (then call `rowTopK`).
 */
export function heapRowTopKOnHeap(scores: tf.Tensor, rows: number, width: number, k: number): tf.Tensor | undefined {
  if (rows === 0 || scores.dtype !== 'float32' || !heapTopKRuns(width, k)) return undefined;
  const heap = engineHeap()!;
  // k blocks of a multiple of 4 columns each (the last columns may fall outside every block).
  const blockBytes = Math.floor(width / (4 * k)) * 16;
  const out = heap.output([2, rows, k], 'float32');
  const outAt = heap.offsetOf(out);
  const scoresAt = heap.offsetOf(scores);
  const [rowBytes, outRowBytes] = [width * 4, k * 4];
  try {
    runPass(heap.memory, TOP_K_MODULE, 'row_topk', rows, TOP_K_MIN_ROWS_PER_THREAD, (r0, r1) => [
      scoresAt + r0 * rowBytes, r1 - r0, width, k, blockBytes, outAt + r0 * outRowBytes, outAt + rows * outRowBytes + r0 * outRowBytes,
    ]);
  } catch (err) {
    out.dispose();
    throw err;
  }
  return out;
}

/**
 * `rowTopK` of the float32 [rows, width] tensor `scores` in place on the wasm engine's heap, into
 * outValues / outIndices [rows, k]. Returns false, doing nothing, where it cannot run: another
 * engine, no wasm SIMD, or width not a multiple of 4 or below 4k (then call `rowTopK`).
 */
export function heapRowTopK(scores: tf.Tensor, rows: number, width: number, k: number, outValues: Float32Array, outIndices: Int32Array): boolean {
  const out = heapRowTopKOnHeap(scores, rows, width, k);
  if (!out) return false;
  try {
    const heap = engineHeap()!;
    const outAt = heap.offsetOf(out);
    outValues.set(new Float32Array(heap.memory.buffer, outAt, rows * k));
    outIndices.set(new Int32Array(heap.memory.buffer, outAt + rows * k * 4, rows * k));
  } finally {
    out.dispose();
  }
  return true;
}
