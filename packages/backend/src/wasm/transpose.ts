// Transpose for wasm. tfjs-core's own gradients transpose with permutations that move no data
// (gather's gradient does two, each copying the whole tensor), and the built-in kernel swaps the last
// two axes slower than a blocked copy. Size-1 axes are ignored, as the built-in kernel does:
// - a permutation that keeps the order of the other axes shares the input's data (like Reshape);
// - one that swaps the last two of them (4-byte elements) runs the blocked copy;
// - anything else goes to the built-in kernel.
import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, TensorInfo, TransposeAttrs } from '@tensorflow/tfjs-core';
import { transposeLastTwo } from './blocked-transpose.js';
import type { KernelArgs, WasmKernelFix } from './wasm-backend.js';

function transpose(original: KernelFunc | undefined): (args: KernelArgs) => TensorInfo {
  if (!original) throw new Error('wasm has no built-in Transpose kernel to delegate to');
  return ({ inputs, backend, attrs }) => {
    const x = inputs.x!;
    const { perm } = attrs as unknown as TransposeAttrs;
    const outShape = perm.map((p) => x.shape[p]!);
    // The axes that are not size 1, in output order; their relative order decides the data layout.
    const moved = perm.filter((p) => x.shape[p] !== 1);
    const k = moved.length;
    const inOrder = (upTo: number) => moved.slice(0, upTo).every((p, i) => i === 0 || p > moved[i - 1]!);
    if (x.dtype !== 'string' && inOrder(k)) {
      backend.incRef(x.dataId);
      return { dataId: x.dataId, shape: outShape, dtype: x.dtype };
    }
    const swapsLastTwo = k >= 2 && inOrder(k - 2) && moved[k - 1]! < moved[k - 2]! && (k < 3 || moved[k - 3]! < moved[k - 1]!);
    if (swapsLastTwo && (x.dtype === 'float32' || x.dtype === 'int32')) {
      const kept = x.shape.filter((d) => d !== 1);
      return transposeLastTwo({ dataId: x.dataId, shape: kept, dtype: x.dtype }, backend, outShape);
    }
    return original({ inputs, backend, attrs }) as TensorInfo;
  };
}

export const transposeFix: WasmKernelFix = {
  name: 'Transpose (no-op shares data, blocked last-two swap)',
  kernelName: tf.Transpose,
  kernelFunc: transpose,
};
