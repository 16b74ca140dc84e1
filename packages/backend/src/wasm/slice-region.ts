// Copies a box or a strided lattice out of a tensor on the wasm heap, touching only the elements
// copied. The built-in Slice kernel first reads the whole input into JS (readSync copies the
// tensor's heap bytes), so n slices of a big tensor cost n full copies.
// Axes: x [s_0, ..., s_{r-1}] (r axes); the region starts at `begin` and spans `size` (or, strided, `shape`
// elements `strides` apart). A run is the longest stretch of the region that is contiguous in x.
import { util } from '@tensorflow/tfjs-core';
import type { DataType, TensorInfo } from '@tensorflow/tfjs-core';
import type { WasmBackend } from './wasm-backend.js';

/** Runs shorter than this are copied by a JS loop; copyWithin's call overhead wins above it. */
const SHORT_RUN = 32;

/** Dtypes whose elements these copies move: 4-byte words and 1-byte bools. */
export function isCopyable(dtype: DataType): boolean {
  return dtype === 'float32' || dtype === 'int32' || dtype === 'bool';
}

/** A heap view whose elements are `info`'s elements, and the element offset of its data. */
function elementView(backend: WasmBackend, info: TensorInfo): { heap: Int32Array | Uint8Array; offset: number } {
  const data = backend.dataIdMap.get(info.dataId);
  if (!data) throw new Error('slice: tensor data is not on the wasm engine');
  const buffer = backend.wasm.HEAPU8.buffer;
  // An int32 view moves float32 words too, bit for bit (a float32 view would canonicalize NaNs).
  return info.dtype === 'bool'
    ? { heap: new Uint8Array(buffer), offset: data.memoryOffset }
    : { heap: new Int32Array(buffer), offset: data.memoryOffset >>> 2 };
}

/** Element strides of a row-major shape, including the last axis's 1. */
function stridesOf(shape: number[]): number[] {
  return [...util.computeStrides(shape), 1].slice(-shape.length);
}

/**
 * `x[begin : begin + size]` as a new tensor the caller owns, with shape `outShape` (default `size`;
 * same element count). `begin` and `size` must be resolved (no -1) and inside `x`.
 */
export function copyRegion(x: TensorInfo, begin: number[], size: number[], backend: WasmBackend, outShape: number[] = size): TensorInfo {
  const rank = x.shape.length;
  const out = backend.makeOutput(outShape, x.dtype);
  const total = util.sizeFromShape(size);
  if (total === 0) return out;
  // Views only after the allocation above: it may have grown (and detached) the heap.
  const { heap, offset: xBase } = elementView(backend, x);
  let dst = elementView(backend, out).offset;
  if (rank === 0) {
    heap[dst] = heap[xBase]!;
    return out;
  }
  const strides = stridesOf(x.shape);
  // Axes after `p` are taken whole, so each step along axes 0..p copies one contiguous run.
  let p = rank - 1;
  while (p > 0 && size[p] === x.shape[p]) p--;
  const run = size[p]! * strides[p]!;
  let src = xBase;
  for (let d = 0; d < rank; d++) src += begin[d]! * strides[d]!;
  const runs = total / run;
  const index = new Array<number>(p).fill(0);
  for (let i = 0; i < runs; i++) {
    if (run < SHORT_RUN) for (let j = 0; j < run; j++) heap[dst + j] = heap[src + j]!;
    else heap.copyWithin(dst, src, src + run);
    dst += run;
    for (let d = p - 1; d >= 0; d--) {
      src += strides[d]!;
      if (++index[d]! < size[d]!) break;
      src -= strides[d]! * size[d]!;
      index[d] = 0;
    }
  }
  return out;
}

/**
 * The strided lattice out[i] = x[begin + i * strides] for i over `shape` (same rank as x; strides
 * may be negative, every index inside x), as a new tensor with shape `outShape` (same element count).
 */
export function copyStrided(
  x: TensorInfo,
  begin: number[],
  strides: number[],
  shape: number[],
  backend: WasmBackend,
  outShape: number[] = shape,
): TensorInfo {
  const rank = x.shape.length;
  const out = backend.makeOutput(outShape, x.dtype);
  const total = util.sizeFromShape(shape);
  if (total === 0) return out;
  const { heap, offset: xBase } = elementView(backend, x);
  let dst = elementView(backend, out).offset;
  if (rank === 0) {
    heap[dst] = heap[xBase]!;
    return out;
  }
  const xStrides = stridesOf(x.shape);
  // Element steps in x along each axis of the lattice.
  const step = xStrides.map((s, d) => s * strides[d]!);
  let src = xBase;
  for (let d = 0; d < rank; d++) src += begin[d]! * xStrides[d]!;
  const last = rank - 1;
  const inner = shape[last]!;
  const innerStep = step[last]!;
  const rows = total / inner;
  const index = new Array<number>(last).fill(0);
  for (let i = 0; i < rows; i++) {
    if (innerStep === 1 && inner >= SHORT_RUN) heap.copyWithin(dst, src, src + inner);
    else for (let j = 0, s = src; j < inner; j++, s += innerStep) heap[dst + j] = heap[s]!;
    dst += inner;
    for (let d = last - 1; d >= 0; d--) {
      src += step[d]!;
      if (++index[d]! < shape[d]!) break;
      src -= step[d]! * shape[d]!;
      index[d] = 0;
    }
  }
  return out;
}
