// Swapping two adjacent blocks of axes of a tensor of 4-byte elements: x [Bt, M, P, C] becomes
// out [Bt, P, M, C]. Swapping the last two axes is C = 1 (the transpose-first matMuls' copies, a
// weight gradient's [T, D] -> [D, T]); moving the heads axis of attention ([B, T, H, Dh] ->
// [B, H, T, Dh], or a rotation such as [3, B, T, H, Dh] -> [B, T, 3, H, Dh]) is C = Dh. The engine's
// own Transpose is an unblocked scalar loop on one thread; this is a WebAssembly SIMD kernel (4 x 4
// tiles transposed in registers for C = 1, f32x4 copies of each C-element chunk otherwise) split over
// the kernel pool's threads by strips of rows. It only moves bits (an i32/v128 copy never touches a
// NaN's payload), so every split gives the same output. Where the kernels cannot run on the heap, a
// blocked JS copy does the same.
// Axes: Bt batch (product of the leading axes), M rows, P columns, C words per element (the
// trailing axes that move together): out[b, p, m, c] = x[b, m, p, c].
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { FunctionBuilder, I32, V128 } from '../wasm-emitter/wasm-emitter.js';
import { engineMemory, kernelsOnHeap } from '../wasm-memory/engine-heap.js';
import { splitRange } from '../wasm-memory/kernel-pool.js';
import { passParts, runCalls } from '../wasm-memory/pooled-pass.js';
import { byteOffset, wordOffset, type WasmBackend } from './wasm-backend.js';

/**
 * A swap goes to the pool only with at least this many words per thread (handing a pass out costs
 * a worker's wake-up; measured in the README, "Transpose").
 */
export const POOLED_TRANSPOSE_MIN_SIZE = 2 ** 19;

let minSizeOverride: number | undefined;

/**
 * Overrides POOLED_TRANSPOSE_MIN_SIZE (0: every swap goes to the pool while it runs; Infinity: none
 * does); undefined restores it. For benchmarks and tests.
 */
export function setPooledTransposeMinSize(size: number | undefined): void {
  if (size !== undefined && !(size >= 0)) throw new Error(`setPooledTransposeMinSize: size must be >= 0, got ${size}`);
  minSizeOverride = size;
}

let kernelsDisabled = false;

/** Test hook: `true` sends every swap to the JS copy (the path taken where the kernels cannot run). */
export function disableTransposeKernels(disabled: boolean): void {
  kernelsDisabled = disabled;
}

/** The four dimensions of a swap: x [batch, rows, cols, chunk] -> [batch, cols, rows, chunk]. */
export interface AxisBlockSwap {
  batch: number;
  rows: number;
  cols: number;
  chunk: number;
}

// Rows per strip: the unit of work split over threads, and the height of the square blocks the C = 1
// kernel walks (16 rows x 16 columns of 4-byte words keep the lines read and written in L1).
const STRIP = 16;

// Opcodes the emitter has no helper for (WebAssembly core spec, binary format; SIMD opcode table).
const I32_SUB = 0x6b;
const I32_AND = 0x71;
const I32_LT_U = 0x49;
const SELECT = 0x1b;
const I32_STORE = 0x36;
const I8X16_SHUFFLE = 0x0d;

/** i8x16.shuffle immediates picking the 32-bit lanes `lanes` (0-3 of the first operand, 4-7 of the second). */
const words = (...lanes: number[]) => lanes.flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3]);

/** One i32 local of `f` per name. */
function i32Locals<K extends string>(f: FunctionBuilder, names: readonly K[]): Record<K, number> {
  return Object.fromEntries(names.map((n) => [n, f.local(I32)])) as Record<K, number>;
}

const HEADER_LOCALS = ['strips', 'batchBytes', 'b', 'i0', 'i1', 'from', 'to'] as const;

/**
 * Shared head of both kernels: decodes strip `item` (strips of STRIP rows in every batch) into the
 * batch's source and destination byte offsets and the strip's rows [i0, i1).
 */
function stripHeader(f: FunctionBuilder, p: { src: number; dst: number; m: number; item: number }, l: Record<(typeof HEADER_LOCALS)[number], number>) {
  f.get(p.item).get(l.strips).divU().set(l.b);
  f.get(p.item).get(l.b).get(l.strips).mul().op(I32_SUB).i32(STRIP).mul().set(l.i0);
  // i1 = min(i0 + STRIP, m)
  f.get(l.i0).i32(STRIP).add().get(p.m).get(l.i0).i32(STRIP).add().get(p.m).op(I32_LT_U).op(SELECT).set(l.i1);
  f.get(p.src).get(l.b).get(l.batchBytes).mul().add().set(l.from);
  f.get(p.dst).get(l.b).get(l.batchBytes).mul().add().set(l.to);
}

/**
 * swap_words(src, dst, m, p, item0, item1): out[b, j, i] = x[b, i, j] (4-byte words) for the strips
 * [item0, item1) of STRIP rows (strip s of batch b is item b * ceil(m / STRIP) + s).
 */
function buildSwapWords(): FunctionBuilder {
  const [src, dst, m, p, item0, item1] = [0, 1, 2, 3, 4, 5];
  const f = new FunctionBuilder(6);
  const h = i32Locals(f, HEADER_LOCALS);
  const { strips, batchBytes, i0, i1, from, to } = h;
  const { item, iFull, pFull, j0, j1, i, j, at, rowIn, rowOut } = i32Locals(f, ['item', 'iFull', 'pFull', 'j0', 'j1', 'i', 'j', 'at', 'rowIn', 'rowOut']);
  const v = [f.local(V128), f.local(V128), f.local(V128), f.local(V128)] as const;
  const t = [f.local(V128), f.local(V128), f.local(V128), f.local(V128)] as const;
  f.get(m).i32(STRIP - 1).add().i32(STRIP).divU().set(strips);
  f.get(m).get(p).mul().i32(4).mul().set(batchBytes);
  f.get(p).i32(4).mul().set(rowIn);
  f.get(m).i32(4).mul().set(rowOut);
  f.get(p).i32(-4).op(I32_AND).set(pFull);
  /** Copies the word x[b, i, j] to out[b, j, i]. */
  const copyWord = () => {
    f.get(to).get(j).get(rowOut).mul().add().get(i).i32(4).mul().add();
    f.get(from).get(i).get(rowIn).mul().add().get(j).i32(4).mul().add().i32Load();
    f.op(I32_STORE, 0x02, 0x00);
  };
  f.get(item0).set(item);
  f.whileBelow(item, item1, 1, () => {
    stripHeader(f, { src, dst, m, item }, h);
    f.get(i1).get(i0).op(I32_SUB).i32(-4).op(I32_AND).get(i0).add().set(iFull);
    // 4 x 4 tiles, in blocks of STRIP columns: load 4 rows of 4 words, transpose in registers, store 4 rows.
    f.i32(0).set(j0);
    f.whileBelow(j0, pFull, STRIP, () => {
      f.get(j0).i32(STRIP).add().get(pFull).get(j0).i32(STRIP).add().get(pFull).op(I32_LT_U).op(SELECT).set(j1);
      f.get(i0).set(i);
      f.whileBelow(i, iFull, 4, () => {
        f.get(j0).set(j);
        f.whileBelow(j, j1, 4, () => {
          f.get(from).get(i).get(rowIn).mul().add().get(j).i32(4).mul().add().set(at);
          for (let r = 0; r < 4; r++) {
            f.get(at).v128Load().set(v[r as 0]);
            if (r < 3) f.increment(at, () => f.get(rowIn));
          }
          f.get(v[0]!).get(v[1]!).simd(I8X16_SHUFFLE, ...words(0, 4, 1, 5)).set(t[0]!);
          f.get(v[2]!).get(v[3]!).simd(I8X16_SHUFFLE, ...words(0, 4, 1, 5)).set(t[1]!);
          f.get(v[0]!).get(v[1]!).simd(I8X16_SHUFFLE, ...words(2, 6, 3, 7)).set(t[2]!);
          f.get(v[2]!).get(v[3]!).simd(I8X16_SHUFFLE, ...words(2, 6, 3, 7)).set(t[3]!);
          f.get(to).get(j).get(rowOut).mul().add().get(i).i32(4).mul().add().set(at);
          for (let c = 0; c < 4; c++) {
            const [lo, hi] = c < 2 ? [t[0]!, t[1]!] : [t[2]!, t[3]!];
            f.get(at).get(lo).get(hi).simd(I8X16_SHUFFLE, ...(c % 2 === 0 ? words(0, 1, 4, 5) : words(2, 3, 6, 7))).v128Store();
            if (c < 3) f.increment(at, () => f.get(rowOut));
          }
        });
      });
    });
    // The columns past the last whole 4 (rows of whole tiles), then the rows past them (all columns).
    f.get(i0).set(i);
    f.whileBelow(i, iFull, 1, () => {
      f.get(pFull).set(j);
      f.whileBelow(j, p, 1, copyWord);
    });
    f.whileBelow(i, i1, 1, () => {
      f.forLoop(j, p, 1, copyWord);
    });
  });
  return f;
}

/**
 * swap_chunks(src, dst, m, p, chunkBytes, item0, item1): out[b, j, i, :] = x[b, i, j, :], each
 * chunk chunkBytes / 4 words, for the strips [item0, item1) (as in swap_words).
 */
function buildSwapChunks(): FunctionBuilder {
  const [src, dst, m, p, chunkBytes, item0, item1] = [0, 1, 2, 3, 4, 5, 6];
  const f = new FunctionBuilder(7);
  const h = i32Locals(f, HEADER_LOCALS);
  const { strips, batchBytes, i0, i1, from, to } = h;
  const { item, i, j, w, vectorEnd, inAt, outAt, rowIn } = i32Locals(f, ['item', 'i', 'j', 'w', 'vectorEnd', 'inAt', 'outAt', 'rowIn']);
  f.get(m).i32(STRIP - 1).add().i32(STRIP).divU().set(strips);
  f.get(m).get(p).mul().get(chunkBytes).mul().set(batchBytes);
  f.get(p).get(chunkBytes).mul().set(rowIn);
  f.get(chunkBytes).i32(-16).op(I32_AND).set(vectorEnd);
  f.get(item0).set(item);
  f.whileBelow(item, item1, 1, () => {
    stripHeader(f, { src, dst, m, item }, h);
    // For each column j, the strip's chunks land next to each other in out's row j.
    f.forLoop(j, p, 1, () => {
      f.get(i0).set(i);
      f.whileBelow(i, i1, 1, () => {
        f.get(from).get(i).get(rowIn).mul().add().get(j).get(chunkBytes).mul().add().set(inAt);
        f.get(to).get(j).get(m).mul().get(i).add().get(chunkBytes).mul().add().set(outAt);
        f.forLoop(w, vectorEnd, 16, () => {
          f.get(outAt).get(w).add().get(inAt).get(w).add().v128Load().v128Store();
        });
        f.whileBelow(w, chunkBytes, 4, () => {
          f.get(outAt).get(w).add().get(inAt).get(w).add().i32Load().op(I32_STORE, 0x02, 0x00);
        });
      });
    });
  });
  return f;
}

export const TRANSPOSE_MODULE = {
  key: 'blocked-transpose',
  functions: () => [
    { name: 'swap_words', builder: buildSwapWords() },
    { name: 'swap_chunks', builder: buildSwapChunks() },
  ],
};

/**
 * `x` (4-byte elements) viewed as [batch, rows, cols, chunk] with its two middle blocks swapped, as a
 * new tensor of shape `outShape` on the heap that the caller disposes.
 */
export function swapAxisBlocks(x: TensorInfo, backend: WasmBackend, swap: AxisBlockSwap, outShape: number[]): TensorInfo {
  if (x.dtype !== 'float32' && x.dtype !== 'int32') throw new Error(`swapAxisBlocks: 4-byte dtypes only, got ${x.dtype}`);
  const { batch, rows, cols, chunk } = swap;
  const size = batch * rows * cols * chunk;
  const outSize = outShape.reduce((p, d) => p * d, 1);
  if (outSize !== size || x.shape.reduce((p, d) => p * d, 1) !== size) {
    throw new Error(`swapAxisBlocks: [${batch}, ${rows}, ${cols}, ${chunk}] does not match x [${x.shape}] and out [${outShape}]`);
  }
  const out = backend.makeOutput(outShape, x.dtype);
  if (size === 0) return out;
  const memory = engineMemory(backend);
  const kernels = memory && !kernelsDisabled ? kernelsOnHeap(memory, TRANSPOSE_MODULE.key, TRANSPOSE_MODULE.functions) : null;
  if (!memory || !kernels) {
    swapInJs(x, out, backend, swap);
    return out;
  }
  const src = byteOffset(backend, x);
  const dst = byteOffset(backend, out);
  const items = batch * Math.ceil(rows / STRIP);
  const parts = passParts(memory, size, minSizeOverride ?? POOLED_TRANSPOSE_MIN_SIZE);
  const ranges = splitRange(items, parts);
  if (chunk === 1) runCalls(memory, TRANSPOSE_MODULE, 'swap_words', ranges.map(([a, b]) => [src, dst, rows, cols, a, b]));
  else runCalls(memory, TRANSPOSE_MODULE, 'swap_chunks', ranges.map(([a, b]) => [src, dst, rows, cols, 4 * chunk, a, b]));
  return out;
}

/** The same swap by a blocked JS copy (STRIP x STRIP blocks of chunks). */
function swapInJs(x: TensorInfo, out: TensorInfo, backend: WasmBackend, { batch, rows, cols, chunk }: AxisBlockSwap): void {
  // An int32 view moves every bit pattern exactly (a float32 view would canonicalize NaNs).
  const heap = new Int32Array(backend.wasm.HEAPU8.buffer);
  const src0 = wordOffset(backend, x);
  const dst0 = wordOffset(backend, out);
  const size = rows * cols * chunk;
  for (let b = 0; b < batch; b++) {
    const src = src0 + b * size;
    const dst = dst0 + b * size;
    for (let i0 = 0; i0 < rows; i0 += STRIP) {
      const i1 = Math.min(i0 + STRIP, rows);
      for (let j0 = 0; j0 < cols; j0 += STRIP) {
        const j1 = Math.min(j0 + STRIP, cols);
        for (let i = i0; i < i1; i++) {
          for (let j = j0; j < j1; j++) {
            const from = src + (i * cols + j) * chunk;
            const to = dst + (j * rows + i) * chunk;
            for (let c = 0; c < chunk; c++) heap[to + c] = heap[from + c]!;
          }
        }
      }
    }
  }
}

/**
 * `x` (4-byte elements) with its last two axes swapped, as a new tensor on the heap that the caller
 * disposes. `outShape` overrides the output's shape (same size; e.g. with size-1 axes put back).
 */
export function transposeLastTwo(x: TensorInfo, backend: WasmBackend, outShape?: number[]): TensorInfo {
  const r = x.shape.length;
  const rows = x.shape[r - 2]!;
  const cols = x.shape[r - 1]!;
  const batch = x.shape.slice(0, -2).reduce((p, d) => p * d, 1);
  return swapAxisBlocks(x, backend, { batch, rows, cols, chunk: 1 }, outShape ?? [...x.shape.slice(0, -2), cols, rows]);
}
