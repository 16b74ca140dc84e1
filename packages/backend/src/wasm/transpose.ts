// Transpose for wasm. tfjs-core's own gradients transpose with permutations that move no data
// (gather's gradient does two, each copying the whole tensor), and the built-in kernel swaps the last
// two axes slower than a blocked copy. Size-1 axes are ignored, as the built-in kernel does:
// - a permutation that keeps the order of the other axes shares the input's data (like Reshape);
// - one that swaps two adjacent blocks of them (4-byte elements: the last two axes, or attention's
//   [B, T, H, Dh] -> [B, H, T, Dh]) runs the pooled SIMD swap of blocked-transpose.ts;
// - anything else goes to the built-in kernel.
import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, TensorInfo, TransposeAttrs } from '@tensorflow/tfjs-core';
import { swapAxisBlocks, type AxisBlockSwap } from './blocked-transpose.js';
import type { KernelArgs, WasmKernelFix } from './wasm-backend.js';

/**
 * The permutation as a swap of two adjacent blocks of axes (x [Bt, M, P, C] -> [Bt, P, M, C]), if it
 * is one. `moved` lists x's axes that are not size 1 in output order; `kept` is their sizes in x's order.
 */
export function asBlockSwap(moved: readonly number[], shape: readonly number[], kept: readonly number[]): AxisBlockSwap | undefined {
  // Each moved axis's position among the kept ones.
  const rank = new Map([...shape.keys()].filter((a) => shape[a] !== 1).map((a, i) => [a, i]));
  const order = moved.map((a) => rank.get(a)!);
  const k = order.length;
  // order = [0 .. a-1] [b .. c-1] [a .. b-1] [c .. k-1]
  const a = order.findIndex((v, i) => v !== i);
  if (a < 0) return undefined;
  const b = order[a]!;
  let n = a;
  while (n < k && order[n] === b + (n - a)) n++;
  const c = b + (n - a);
  for (let i = 0; i < b - a; i++) if (order[n + i] !== a + i) return undefined;
  for (let i = c; i < k; i++) if (order[i] !== i) return undefined;
  const prod = (from: number, to: number) => kept.slice(from, to).reduce((p, d) => p * d, 1);
  return { batch: prod(0, a), rows: prod(a, b), cols: prod(b, c), chunk: prod(c, k) };
}

function transpose(original: KernelFunc | undefined): (args: KernelArgs) => TensorInfo {
  if (!original) throw new Error('wasm has no built-in Transpose kernel to delegate to');
  return ({ inputs, backend, attrs }) => {
    const x = inputs.x!;
    const { perm } = attrs as unknown as TransposeAttrs;
    const outShape = perm.map((p) => x.shape[p]!);
    // The axes that are not size 1, in output order; their relative order decides the data layout.
    const moved = perm.filter((p) => x.shape[p] !== 1);
    const inOrder = moved.every((p, i) => i === 0 || p > moved[i - 1]!);
    if (x.dtype !== 'string' && inOrder) {
      backend.incRef(x.dataId);
      return { dataId: x.dataId, shape: outShape, dtype: x.dtype };
    }
    const kept = x.shape.filter((d) => d !== 1);
    const swap = x.dtype === 'float32' || x.dtype === 'int32' ? asBlockSwap(moved, x.shape, kept) : undefined;
    if (swap) return swapAxisBlocks({ dataId: x.dataId, shape: kept, dtype: x.dtype }, backend, swap, outShape);
    return original({ inputs, backend, attrs }) as TensorInfo;
  };
}

export const transposeFix: WasmKernelFix = {
  name: 'Transpose (no-op shares data, pooled block swap)',
  kernelName: tf.Transpose,
  kernelFunc: transpose,
};
