// Slice, Unpack, SplitV and StridedSlice for wasm as region copies (slice-region.ts). The built-in
// Slice reads the whole input into JS before cutting, and the built-in Unpack, SplitV and
// StridedSlice call that function directly (not through the kernel registry), so each needs its
// own override: unstacking n rows of a tensor cost n full copies of it.
// The built-in StridedSlice with non-unit strides also labels every output float32 (an int32 input
// came back as float32 bit patterns); the strided copy keeps the input's dtype.
// Strings (and any dtype other than float32, int32 and bool) go to the built-in kernels.
import * as tf from '@tensorflow/tfjs-core';
import { backend_util, slice_util, util } from '@tensorflow/tfjs-core';
import type { KernelFunc, SliceAttrs, SplitVAttrs, StridedSliceAttrs, TensorInfo, UnpackAttrs } from '@tensorflow/tfjs-core';
import { copyRegion, copyStrided, isCopyable } from './slice-region.js';
import type { KernelArgs, WasmBackend, WasmKernelFix } from './wasm-backend.js';

function requireOriginal(kernelName: string, original: KernelFunc | undefined): KernelFunc {
  if (!original) throw new Error(`wasm has no built-in ${kernelName} kernel to delegate to`);
  return original;
}

/** The same data under another shape (like Reshape): the caller gets one more reference. */
function share(x: TensorInfo, shape: number[], backend: WasmBackend): TensorInfo {
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape, dtype: x.dtype };
}

/** Runs `make` for each output; if one throws, the ones already made are disposed. */
function allOrNone(count: number, make: (i: number) => TensorInfo, backend: WasmBackend): TensorInfo[] {
  const outs: TensorInfo[] = [];
  try {
    for (let i = 0; i < count; i++) outs.push(make(i));
    return outs;
  } catch (err) {
    for (const o of outs) backend.disposeData(o.dataId);
    throw err;
  }
}

function slice(original: KernelFunc | undefined): (args: KernelArgs) => TensorInfo {
  const builtIn = requireOriginal(tf.Slice, original);
  return ({ inputs, backend, attrs }) => {
    const x = inputs.x!;
    if (!isCopyable(x.dtype)) return builtIn({ inputs, backend, attrs }) as TensorInfo;
    const { begin, size } = attrs as unknown as SliceAttrs;
    // Resolves a number begin and -1 sizes ("to the end of the axis"), then checks the bounds.
    const [begin_, size_] = slice_util.parseSliceParams(x, begin, size) as [number[], number[]];
    slice_util.assertParamsValid(x, begin_, size_);
    if (util.arraysEqual(size_, x.shape)) return share(x, size_, backend);
    return copyRegion(x, begin_, size_, backend);
  };
}

function unpack(original: KernelFunc | undefined): (args: KernelArgs) => TensorInfo[] {
  const builtIn = requireOriginal(tf.Unpack, original);
  return ({ inputs, backend, attrs }) => {
    const value = inputs.value!;
    if (!isCopyable(value.dtype)) return builtIn({ inputs, backend, attrs }) as TensorInfo[];
    const rank = value.shape.length;
    const { axis } = attrs as unknown as UnpackAttrs;
    if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
      throw new Error(`unstack: axis ${axis} is out of range for a tensor of rank ${rank}`);
    }
    const a = axis < 0 ? axis + rank : axis;
    const outShape = value.shape.filter((_, d) => d !== a);
    const size = [...value.shape];
    size[a] = 1;
    return allOrNone(
      value.shape[a]!,
      (i) => copyRegion(value, value.shape.map((_, d) => (d === a ? i : 0)), size, backend, outShape),
      backend,
    );
  };
}

function splitV(original: KernelFunc | undefined): (args: KernelArgs) => TensorInfo[] {
  const builtIn = requireOriginal(tf.SplitV, original);
  return ({ inputs, backend, attrs }) => {
    const x = inputs.x!;
    if (!isCopyable(x.dtype)) return builtIn({ inputs, backend, attrs }) as TensorInfo[];
    const { numOrSizeSplits, axis } = attrs as unknown as SplitVAttrs;
    const a = util.parseAxisParam(axis, x.shape)[0]!;
    const sizes = backend_util.prepareSplitSize(x, numOrSizeSplits, a);
    const begin = new Array<number>(x.shape.length).fill(0);
    return allOrNone(
      sizes.length,
      (i) => {
        const size = [...x.shape];
        size[a] = sizes[i]!;
        begin[a] = sizes.slice(0, i).reduce((p, s) => p + s, 0);
        return copyRegion(x, begin, size, backend);
      },
      backend,
    );
  };
}

function stridedSlice(original: KernelFunc | undefined): (args: KernelArgs) => TensorInfo {
  const builtIn = requireOriginal(tf.StridedSlice, original);
  return ({ inputs, backend, attrs }) => {
    const x = inputs.x!;
    if (!isCopyable(x.dtype) || x.shape.length === 0) return builtIn({ inputs, backend, attrs }) as TensorInfo;
    const { begin, end, strides, beginMask, endMask, ellipsisMask, newAxisMask, shrinkAxisMask } =
      attrs as unknown as StridedSliceAttrs;
    const info = slice_util.sliceInfo(x.shape, begin, end, strides, beginMask, endMask, ellipsisMask, newAxisMask, shrinkAxisMask);
    if (info.isIdentity) return share(x, info.finalShape, backend);
    if (info.sliceDim0 || info.isSimpleSlice) {
      // Unit strides: a box. An empty range (begin past end) has size 0, not a negative size.
      const size = slice_util.computeOutShape(info.begin, info.end, info.strides).map((s) => Math.max(0, s));
      return copyRegion(x, info.begin, size, backend, info.finalShape);
    }
    return copyStrided(x, info.begin, info.strides, info.finalShapeSparse, backend, info.finalShape);
  };
}

export const sliceFix: WasmKernelFix = {
  name: 'Slice (region copy)',
  kernelName: tf.Slice,
  kernelFunc: slice,
};

export const unpackFix: WasmKernelFix = {
  name: 'Unpack (region copies)',
  kernelName: tf.Unpack,
  kernelFunc: unpack,
};

export const splitVFix: WasmKernelFix = {
  name: 'SplitV (region copies)',
  kernelName: tf.SplitV,
  kernelFunc: splitV,
};

export const stridedSliceFix: WasmKernelFix = {
  name: 'StridedSlice (region and strided copies, dtype kept)',
  kernelName: tf.StridedSlice,
  kernelFunc: stridedSlice,
};
