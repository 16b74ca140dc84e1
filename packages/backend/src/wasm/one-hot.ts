// OneHot for wasm. The built-in C kernel writes int32 values whatever the requested dtype, so
// `tf.oneHot(indices, depth, 1, 0, 'float32')` came back as float32-labelled int32 bit patterns
// (1 read as 1.4e-45), and a fractional on/off value was truncated. This one fills the output in JS
// with typed-array stores of the output's own type, which convert on/off values as the cpu engine
// does (float32 rounding, int32 truncation, bool as a byte).
// I indices (indices.size), D depth: out[i, d] = onValue if indices[i] = d else offValue; an index
// outside [0, D) gives an all-off row (as on the cpu engine).
import * as tf from '@tensorflow/tfjs-core';
import { util } from '@tensorflow/tfjs-core';
import type { OneHotAttrs, TensorInfo } from '@tensorflow/tfjs-core';
import type { KernelArgs, WasmBackend, WasmKernelFix } from './wasm-backend.js';

type HeapArray = Float32Array | Int32Array | Uint8Array;

function heapArray(backend: WasmBackend, info: TensorInfo): HeapArray {
  const data = backend.dataIdMap.get(info.dataId);
  if (!data) throw new Error('OneHot: tensor data is not on the wasm engine');
  const size = util.sizeFromShape(info.shape);
  const { buffer } = backend.wasm.HEAPU8;
  switch (info.dtype) {
    case 'float32':
      return new Float32Array(buffer, data.memoryOffset, size);
    case 'int32':
      return new Int32Array(buffer, data.memoryOffset, size);
    case 'bool':
      return new Uint8Array(buffer, data.memoryOffset, size);
    default:
      throw new Error(`OneHot: unsupported dtype ${info.dtype}`);
  }
}

function oneHot({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const indices = inputs.indices!;
  const { depth, onValue, offValue, dtype } = attrs as unknown as OneHotAttrs;
  if (dtype !== 'float32' && dtype !== 'int32' && dtype !== 'bool') {
    throw new Error(`oneHot on wasm: dtype must be float32, int32 or bool, got ${dtype}`);
  }
  if (indices.dtype !== 'int32' && indices.dtype !== 'float32') {
    throw new Error(`oneHot on wasm: indices must be int32 or float32, got ${indices.dtype}`);
  }
  if (!Number.isInteger(depth) || depth < 0) throw new Error(`oneHot: depth must be a non-negative integer, got ${depth}`);
  const out = backend.makeOutput([...indices.shape, depth], dtype);
  // Views only after the allocation above (it may grow the heap and detach older views).
  const values = heapArray(backend, out);
  if (values.length === 0) return out;
  const ids = heapArray(backend, indices);
  // makeOutput memory is not zeroed: every element is written.
  values.fill(offValue);
  for (let i = 0; i < ids.length; i++) {
    const d = ids[i]!;
    // A float index counts only when it is a whole number (the cpu engine's store at a fractional
    // position lands nowhere).
    if (d >= 0 && d < depth && Number.isInteger(d)) values[i * depth + d] = onValue;
  }
  return out;
}

export const oneHotFix: WasmKernelFix = {
  name: 'OneHot (output in the requested dtype)',
  kernelName: tf.OneHot,
  kernelFunc: () => oneHot,
};
