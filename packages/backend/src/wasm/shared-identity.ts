// Identity for wasm that shares the input's data, as the cpu engine's Identity does, instead of
// copying it. tfjs runs Identity for tf.clone and for every tensor its gradient tape saves (each
// saved input of every kernel is cloned), so the built-in kernel copied every matMul operand and
// activation once more per training step, on one thread (a CPU profile of the dense LM on 2 threads:
// 3.6 % of the main thread). Sharing is safe because nothing writes into a tensor's memory after it
// is made: tfjs kernels and ours write only fresh outputs, and variables take new data on `assign`.
// The data is freed with its last tensor (the engine counts references, as for Reshape).
import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import type { KernelArgs, WasmKernelFix } from './wasm-backend.js';

export const sharedIdentityFix: WasmKernelFix = {
  name: 'Identity (shares the data)',
  kernelName: tf.Identity,
  kernelFunc: (original) => (args: KernelArgs) => {
    const x = args.inputs.x!;
    // Strings live outside the heap: the built-in kernel handles them.
    if (x.dtype === 'string' && original) return original(args) as TensorInfo;
    args.backend.incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  },
};
