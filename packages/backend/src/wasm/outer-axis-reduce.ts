// Sum and Max over axes that are not the last ones, for wasm. The built-in kernels first move the
// reduced axes last with the engine's unblocked Transpose, then reduce rows, so a sum over axis 0
// costs many times one over the last axis (bias gradients are such sums; README). When the
// reduced axes are consecutive and followed by kept ones, one sweep over x in memory order does it:
// Axes: O kept axes before the block, J the reduced block, I kept axes after it; x is [O, J, I] and
// out[o, i] = reduce over j of x[o, j, i]. Sums accumulate in float64 (like the cpu engine, whose
// running sum is a JS number); max propagates NaN (like the cpu engine).
// JS loops are fast enough for this memory-bound sweep.
// Other reductions (last axes, scattered axes, non-float32, empty) go to the built-in kernels.
import * as tf from '@tensorflow/tfjs-core';
import { backend_util, util } from '@tensorflow/tfjs-core';
import type { KernelFunc, MaxAttrs, SumAttrs, TensorInfo } from '@tensorflow/tfjs-core';
import { heapF32, wordOffset, type KernelArgs, type WasmBackend, type WasmKernelFix } from './wasm-backend.js';

interface Block {
  outer: number;
  reduced: number;
  inner: number;
  outShape: number[];
}

/** x as [O, J, I] if the reduced axes form one block with kept axes after it; otherwise undefined. */
function asBlock(shape: number[], axis: number | number[], keepDims: boolean): Block | undefined {
  const axes = [...new Set(util.parseAxisParam(axis, shape))].sort((p, q) => p - q);
  if (axes.length === 0) return undefined;
  const lo = axes[0]!;
  const hi = axes[axes.length - 1]!;
  if (hi - lo + 1 !== axes.length) return undefined;
  const inner = util.sizeFromShape(shape.slice(hi + 1));
  const outer = util.sizeFromShape(shape.slice(0, lo));
  const reduced = util.sizeFromShape(shape.slice(lo, hi + 1));
  // Reducing the innermost elements is the built-in kernels' fast case.
  if (inner <= 1 || outer * reduced * inner === 0) return undefined;
  const [kept] = backend_util.computeOutAndReduceShapes(shape, axes);
  return { outer, reduced, inner, outShape: keepDims ? backend_util.expandShapeToKeepDim(kept, axes) : kept };
}

/** Runs `sweep` over x's [O, J, I] view into a new float32 output of the reduced shape. */
function reduceBlock(
  x: TensorInfo,
  block: Block,
  backend: WasmBackend,
  sweep: (heap: Float32Array, src: number, dst: number, block: Block) => void,
): TensorInfo {
  const out = backend.makeOutput(block.outShape, 'float32');
  // View only after the allocation above (it may grow the heap and detach older views).
  const heap = heapF32(backend);
  const src = wordOffset(backend, x);
  const dst = wordOffset(backend, out);
  for (let o = 0; o < block.outer; o++) {
    sweep(heap, src + o * block.reduced * block.inner, dst + o * block.inner, block);
  }
  return out;
}

// Both sweeps take four rows per pass over the accumulator: a quarter of the accumulator traffic,
// and measurably faster than one row per pass (README).

function sumRows(heap: Float32Array, src: number, dst: number, { reduced, inner }: Block): void {
  const acc = new Float64Array(inner);
  let r = 0;
  let r0 = src;
  for (; r + 4 <= reduced; r += 4, r0 += 4 * inner) {
    const r1 = r0 + inner;
    const r2 = r1 + inner;
    const r3 = r2 + inner;
    for (let i = 0; i < inner; i++) acc[i]! += heap[r0 + i]! + heap[r1 + i]! + (heap[r2 + i]! + heap[r3 + i]!);
  }
  for (; r < reduced; r++, r0 += inner) for (let i = 0; i < inner; i++) acc[i]! += heap[r0 + i]!;
  heap.set(acc, dst);
}

function maxRows(heap: Float32Array, src: number, dst: number, { reduced, inner }: Block): void {
  // Math.max returns NaN when any argument is NaN, as the cpu engine's max does.
  const acc = heap.slice(src, src + inner);
  let r = 1;
  let r0 = src + inner;
  for (; r + 4 <= reduced; r += 4, r0 += 4 * inner) {
    const r1 = r0 + inner;
    const r2 = r1 + inner;
    const r3 = r2 + inner;
    for (let i = 0; i < inner; i++) acc[i] = Math.max(acc[i]!, heap[r0 + i]!, heap[r1 + i]!, heap[r2 + i]!, heap[r3 + i]!);
  }
  for (; r < reduced; r++, r0 += inner) for (let i = 0; i < inner; i++) acc[i] = Math.max(acc[i]!, heap[r0 + i]!);
  heap.set(acc, dst);
}

function reduceFix(
  kernelName: string,
  axisOf: (attrs: KernelArgs['attrs']) => { axis: number | number[]; keepDims: boolean },
  sweep: (heap: Float32Array, src: number, dst: number, block: Block) => void,
): (original: KernelFunc | undefined) => (args: KernelArgs) => TensorInfo {
  return (original) => {
    if (!original) throw new Error(`wasm has no built-in ${kernelName} kernel to delegate to`);
    return ({ inputs, backend, attrs }) => {
      const x = inputs.x!;
      const { axis, keepDims } = axisOf(attrs);
      const block = x.dtype === 'float32' ? asBlock(x.shape, axis, keepDims) : undefined;
      if (!block) return original({ inputs, backend, attrs }) as TensorInfo;
      return reduceBlock(x, block, backend, sweep);
    };
  };
}

export const sumFix: WasmKernelFix = {
  name: 'Sum (outer axes in one sweep)',
  kernelName: tf.Sum,
  kernelFunc: reduceFix(tf.Sum, (attrs) => attrs as unknown as SumAttrs, sumRows),
};

export const maxFix: WasmKernelFix = {
  name: 'Max (outer axes in one sweep)',
  kernelName: tf.Max,
  kernelFunc: reduceFix(
    tf.Max,
    (attrs) => {
      const { reductionIndices, keepDims } = attrs as unknown as MaxAttrs;
      return { axis: reductionIndices, keepDims };
    },
    maxRows,
  ),
};
